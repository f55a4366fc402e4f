"""Null draws solved as one batch, the engine estimates and choice, --engine
everywhere a solver runs, Ray's GPU request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from deepglass.errors import DeepglassError, TooLargeError
from deepglass.experiments.frustration import frustration_vs_nulls, plan_units
from deepglass.experiments.nulls import null_model
from deepglass.graph import SignedGraph
from deepglass.solve import start_gauges
from deepglass.solve import engines
from deepglass.solve.batched import DrawBatchedGraph, solve_draws


def _net():
    torch.manual_seed(0)
    # strided / grouped / dilated convolutions, a batch norm folded onto the
    # next layer's sources (a scaled source), average pooling, a dense head
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 6, 3, dilation=2, groups=2), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(24, 5))
    with torch.no_grad():
        net[2].running_var.uniform_(0.5, 2.0)
        net[2].weight.uniform_(-1.0, 2.0)
    return net.eval()


def _graph():
    return SignedGraph.from_module(_net(), (3, 15, 15), dtype=torch.float64)


KINDS = ["N1", "N2", "N3-he"]


@pytest.fixture(params=[True, False], ids=["grouped", "conv-by-conv"])
def stack_convs(request, monkeypatch):
    """Both ways of running the draws' convolutions: one grouped convolution
    (what a device does) and one convolution per draw (the CPU's default)."""
    import deepglass.solve.batched as batched

    monkeypatch.setitem(batched.STACK_CONVS, "cpu", request.param)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
def test_batched_operator_is_each_draws_operator(kind, stack_convs):
    g = _graph()
    draws = [null_model(g, kind, seed=s) for s in range(3)]
    B = DrawBatchedGraph(draws)
    if kind != "N2":   # stacked as one grouped convolution / one batched matmul
        assert {b.mode for b in B.edge_blocks} == (
            {"conv", "shared", "dense"} if stack_convs else {"loop", "shared", "dense"})
    starts = [torch.from_numpy(start_gauges(g.n_nodes, 2, seed=s)).double() for s in range(3)]
    S = torch.cat(starts)
    want = torch.cat([d.sym_matvec(s) for d, s in zip(draws, starts)])
    torch.testing.assert_close(B.sym_matvec(S), want, rtol=1e-13, atol=1e-12)
    want_abs = torch.cat([d.sym_matvec(s, absolute=True) for d, s in zip(draws, starts)])
    torch.testing.assert_close(B.sym_matvec(S, absolute=True), want_abs, rtol=1e-13, atol=1e-12)
    # per-draw normalizers and tolerances
    torch.testing.assert_close(B.energy(S), torch.cat([d.energy(s) for d, s in zip(draws, starts)]),
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(B.abs_row_sums(), torch.stack([d.abs_row_sums() for d in draws]),
                               rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_a_draw_ends_where_it_ends_alone(kind, stack_convs):
    """Same draw, same starts: the same local minimum whatever shares its batch
    (float64, so no field sits within rounding of a threshold)."""
    g = _graph()
    draws = [null_model(g, kind, seed=s) for s in range(4)]
    starts = [start_gauges(g.n_nodes, 2, seed=10 + s) for s in range(4)]
    together = solve_draws(draws, starts)
    pairs = solve_draws(draws[:2], starts[:2]) + solve_draws(draws[2:], starts[2:])
    for d, (a, b) in enumerate(zip(together, pairs)):
        alone = solve_draws([draws[d]], [starts[d]])[0]
        for other in (b, alone):
            np.testing.assert_array_equal(a["sigmas"], other["sigmas"])
            np.testing.assert_allclose(a["energies"], other["energies"], rtol=0, atol=1e-13)
            np.testing.assert_array_equal(a["flips"], other["flips"])
        assert a["local_min"].all()
        # the reported energies are those of the gauges on the draw's own graph
        e = draws[d].energy(torch.from_numpy(a["sigmas"]).double()).numpy()
        np.testing.assert_allclose(a["energies"], e, rtol=0, atol=1e-13)


def test_solve_draws_checks_its_input():
    g = _graph()
    with pytest.raises(DeepglassError, match="same number"):
        solve_draws([g, g], [start_gauges(g.n_nodes, 2, 0), start_gauges(g.n_nodes, 3, 0)])
    with pytest.raises(DeepglassError, match="matrix-free"):
        solve_draws([g], [start_gauges(g.n_nodes, 2, 0)], engine="compiled")


def test_plan_units_groups_draws():
    units = plan_units(4, ["N1"], 5, 2, draws_per_unit=2)
    nulls = [u for u in units if u.kind == "N1"]
    assert [(u.instance, u.draws) for u in nulls] == [(0, 2), (2, 2), (4, 1)]
    assert nulls[0].id == "N1-00000-00000-x2" and nulls[2].id == "N1-00004-00000"


def test_experiment_numbers_do_not_depend_on_draws_per_unit(stack_convs):
    g = _graph()
    runs = {}
    for dpu in (1, 3):
        r = frustration_vs_nulls(g, replicas=3, null_instances=4, starts_per_null=2,
                                 nulls="N1,N2,N3", draws_per_unit=dpu, engine="matrix-free")
        assert r.info["draws_per_unit"] == dpu
        runs[dpu] = r.runs
    a, b = runs[1], runs[3]
    assert len(a) == 3 + 4 * 4 * 2
    cols = ["kind", "instance", "start", "start_seed", "local_min"]
    assert a[cols].equals(b[cols])
    np.testing.assert_allclose(a["energy"], b["energy"], rtol=0, atol=1e-13)
    assert set(b["unit"][b["kind"] == "N1"]) == {"N1-00000-00000-x3", "N1-00003-00000"}
    assert a["local_min"].all()


@pytest.mark.parametrize("stored, dpu, want", [
    ({"N1-00000-00000-x3", "N1-00003-00000"}, 2, [(0, 3), (3, 1), (4, 2), (6, 2)]),
    ({"N1-00002-00000-x2", "N2-00000-00000-x8"}, 3, [(0, 2), (2, 2), (4, 3), (7, 1)]),
    ({"N1-00006-00000-x4", "real-00000-00000", "N1-00001-00001-x2"}, 8, [(0, 8)])])
def test_plan_units_keeps_the_stored_groups_of_draws(stored, dpu, want):
    """A stored group is kept where it fits the draws (not one past the last,
    not another start's); only the draws between stored groups are grouped anew."""
    units = plan_units(2, ["N1"], 8, 2, draws_per_unit=dpu, stored=stored)
    assert [(u.instance, u.draws) for u in units if u.kind == "N1"] == want


def test_a_run_resumed_with_other_draws_per_unit_recomputes_no_draw(tmp_path):
    """The default batch size follows the free memory, so a resumed run may
    plan other groups: every finished draw is still read, not solved again."""
    g, out = _graph(), tmp_path / "run"
    kw = dict(replicas=2, null_instances=5, starts_per_null=2, nulls="N1,N3-he",
              engine="matrix-free", run=out)
    first = frustration_vs_nulls(g, draws_per_unit=3, **kw)
    gone = out / "units" / "frustration" / "runs" / "N3-he-00003-00000-x2.parquet"
    gone.unlink()       # one unit lost: its two draws are the only ones to solve
    again = frustration_vs_nulls(g, draws_per_unit=1, **kw)
    assert again.info["computed"] == 2 and again.info["resumed"] == 4
    cols = ["kind", "instance", "start", "start_seed", "local_min"]
    assert again.runs[cols].equals(first.runs[cols])
    np.testing.assert_allclose(again.runs["energy"], first.runs["energy"], rtol=0, atol=1e-13)


def test_draws_per_unit_is_checked():
    with pytest.raises(DeepglassError, match="draws_per_unit"):
        frustration_vs_nulls(_graph(), replicas=2, null_instances=2, nulls="N1",
                             draws_per_unit=0)
    with pytest.raises(DeepglassError, match="--engine"):
        frustration_vs_nulls(_graph(), replicas=2, null_instances=2, nulls="N1",
                             engine="bogus")


# ---- engine estimates and choice ----------------------------------------------------
def test_csr_edges_are_what_the_compiled_engine_stores():
    from deepglass.solve.compiled_descent import stencil_kind, stencils

    g = SignedGraph.from_module(_net(), (3, 15, 15))
    kinds = [stencil_kind(g, b) for b in g.edge_blocks]
    # the convolution reading the batch-normed value folds its scale: only the pooling is CSR
    assert kinds == ["conv", "conv", None, "dense"] and g.edge_blocks[1].in_scale is not None
    st = stencils(g)
    assert st.rest.nnz == 2 * engines.csr_edges(g)
    assert engines.csr_edges(g) == g.edge_blocks[2].n_edges()
    # the estimate holds the CSR at its build peak and grows with the replicas
    one = engines.compiled_bytes(g, 1, threads=1)
    assert one >= engines.CSR_BUILD_BYTES * engines.csr_edges(g) + st.weights.nbytes - 64 * 4
    assert engines.compiled_bytes(g, 9, threads=1) - one == 8 * g.n_nodes * (4 + 8 + 2 * 4)


def test_auto_avoids_a_big_csr_fallback():
    torch.manual_seed(0)
    C = 32

    class Tapered(nn.Module):
        # a fixed window over positions scales the second convolution's sources:
        # a scale no shared kernel takes, so that convolution is CSR
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv1d(4, C, 64, stride=4), nn.Conv1d(C, C, 9, padding=4)
            self.fc = nn.Linear(C * 241, 64)
            self.register_buffer("taper", torch.linspace(0.5, 1.5, 241))

        def forward(self, x):
            y = torch.relu(self.c1(x)) * self.taper
            return self.fc((torch.relu(self.c2(y)) * self.taper).flatten(1))

    g = SignedGraph.from_module(Tapered().eval(), (4, 1024))
    assert engines.csr_edges(g) == g.edge_blocks[1].n_edges() > 0.4 * g.n_edges
    est = engines.engine_estimates(g, 1)
    assert est["compiled"].bytes > 5 * est["matrix-free"].bytes
    assert engines.choose_engine(g, 1) == "matrix-free"
    # a small net whose pooling is its only CSR keeps the compiled engine
    lenet = SignedGraph.from_module(nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2),
                                                  nn.Flatten(), nn.Linear(4 * 12 * 12, 10)),
                                    (1, 28, 28))
    assert engines.choose_engine(lenet, 8) == "compiled"


def test_time_model_sums_blocks_and_scales_with_threads_and_replicas():
    g = _graph()
    calls = engines._OP_CALL_S * len(g.edge_blocks)
    for R in (1, 8):
        two = engines.operator_seconds(g, R, threads=2) - calls
        # the per-block work is calibrated on two threads and divides among more
        assert engines.operator_seconds(g, R, threads=4) - calls == pytest.approx(two / 2)
        assert two == pytest.approx(sum(engines._block_seconds(b, R) for b in g.edge_blocks)
                                    + engines._OP_NODE_S * R * g.n_nodes)
    # more replicas cost more in every model; the compiled kernel runs one
    # replica per thread, so two replicas on two threads cost one's kernel
    for f in (engines.operator_seconds, engines.compiled_seconds, engines.matrix_free_seconds):
        assert f(g, 1, threads=2) < f(g, 8, threads=2) < f(g, 64, threads=2)
    ops = [engines.operator_seconds(g, R, 2) for R in (1, 2)]
    kernel = [engines.compiled_seconds(g, R, 2) - engines._FIELD_PASSES * ops[R - 1] for R in (1, 2)]
    assert kernel[0] == pytest.approx(kernel[1])


def test_time_model_charges_an_n2_draws_unshared_convolutions_a_share_of_their_passes():
    """The matrix-free descent's unshared convolutions read only their nonzero
    inputs' weights, so the model charges them a share of their full passes
    that falls with their edges times replicas; the other blocks stay at full
    passes."""
    g = _graph()
    n2 = null_model(g, "N2", 0)
    unshared = [b for b in n2.edge_blocks if engines._is_unshared(b)]
    assert len(unshared) == 2 and not any(engines._is_unshared(b) for b in g.edge_blocks)
    for R in (1, 16, 10**6):
        passes = engines._MF_PASSES * (R * n2.n_nodes) ** engines._MF_PASS_EXP
        full = engines.operator_seconds(n2, R, threads=2)
        cost = sum(engines._block_seconds(b, R) for b in unshared)
        share = engines.matrix_free_seconds(n2, R, threads=2) / passes - (full - cost)
        edges = R * sum(b.n_edges() for b in unshared)
        want = min(1.0, engines._MF_UNSHARED_SHARE * edges ** engines._MF_UNSHARED_EXP)
        assert share == pytest.approx(want * cost)
        # the real weights' estimate is the full passes
        assert engines.matrix_free_seconds(g, R, threads=2) == pytest.approx(
            engines._MF_PASSES * (R * g.n_nodes) ** engines._MF_PASS_EXP
            * engines.operator_seconds(g, R, threads=2))
    assert min(1.0, engines._MF_UNSHARED_SHARE * (10**6 * 400) ** engines._MF_UNSHARED_EXP) < 0.3


def test_memory_model_holds_no_copy_of_an_n2_draws_per_edge_weights():
    """Unshared convolutions take ``|W|`` per element or chunk and sum it chunk
    by chunk, so neither engine's estimate charges a copy of their weights
    (AlexNet N2: 2.4 GB) beyond the graph; the compiled one lays them out twice."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 5), nn.ReLU(), nn.Conv2d(32, 8, 5)).eval()
    g = SignedGraph.from_module(net, (16, 24, 24))
    n2 = null_model(g, "N2", 0)
    stored = 4 * sum(b.n_edges() for b in n2.edge_blocks if engines._is_unshared(b))
    assert stored > 25e6
    assert engines.matrix_free_bytes(n2, 4) < 0.5 * stored
    assert 2 * stored <= engines.compiled_bytes(n2, 4, threads=2) < 2.2 * stored
    # the real weights' |W| are cached: held like the weights themselves
    assert engines._normalizer_bytes(g, 4)[0] >= 4 * g.n_params


def test_time_model_charges_csr_edges():
    """A convolution reading a source scaled per position runs as CSR in the
    compiled engine: its estimate holds the CSR's cost in place of stencil updates."""
    torch.manual_seed(0)

    class Tapered(nn.Module):
        def __init__(self, taper: bool):
            super().__init__()
            self.c1, self.c2 = nn.Conv1d(2, 8, 5), nn.Conv1d(8, 8, 5)
            self.register_buffer("taper", torch.linspace(0.5, 1.5, 60) if taper else torch.ones(60))

        def forward(self, x):
            return self.c2(torch.relu(self.c1(x)) * self.taper)

    nets = [Tapered(t).eval() for t in (False, True)]
    nets[1].load_state_dict(nets[0].state_dict() | {"taper": nets[1].taper})
    plain, tapered = (SignedGraph.from_module(n, (2, 64)) for n in nets)
    assert engines.csr_edges(plain) == 0
    csr = engines.csr_edges(tapered)
    assert csr == tapered.edge_blocks[1].n_edges()
    extra = engines.compiled_seconds(tapered, 1, 1) - engines.compiled_seconds(plain, 1, 1)
    # two entries per edge move from stencil updates to the CSR, whose layout
    # costs more; the second convolution's weights are no longer laid out; the
    # operator costs are the same (the taper is a scale, not an edge block)
    per_entry = engines._LAYOUT_CSR_S - engines._KERNEL_UPDATE_S
    assert extra == pytest.approx(2 * csr * per_entry
                                  - engines._LAYOUT_PARAM_S * nets[0].c2.weight.numel())


def test_a_run_that_would_not_fit_is_refused_up_front():
    g = SignedGraph.from_module(_net(), (3, 15, 15))
    with pytest.raises(TooLargeError, match=r"compiled engine would need ~.* for 4 replicas"
                                            r".*; free memory or set --max-memory-gb$"):
        engines.choose_engine(g, 4, "compiled", budget_bytes=1000)
    with pytest.raises(TooLargeError, match="free memory or set --max-memory-gb"):
        engines.choose_engine(g, 4, "auto", budget_bytes=1000)
    # what to change: the most replicas that fit, the other engine where it fits
    est = {r: engines.engine_estimates(g, r) for r in (1, 2, 4)}
    budget = (est[2]["compiled"].bytes + est[4]["compiled"].bytes) // 2
    assert est[4]["matrix-free"].bytes <= budget < est[4]["compiled"].bytes
    with pytest.raises(TooLargeError, match=r"lower --replicas to [23] or fewer, or use --engine "
                                            r"matrix-free \(~.*\), or free memory"):
        engines.choose_engine(g, 4, "compiled", budget_bytes=budget)
    assert engines.choose_engine(g, 4, "matrix-free", budget_bytes=10**12) == "matrix-free"
    with pytest.raises(DeepglassError, match="engine"):
        engines.choose_engine(g, 4, "gpu")


def test_draws_per_batch_fits_the_budget():
    g = _graph()
    per = engines.draw_batch_bytes(g, 2, 1)
    assert engines.draws_per_batch(g, 2, 80, budget_bytes=10**15) == 16      # CPU cap
    assert engines.draws_per_batch(g, 2, 80, device="cuda", budget_bytes=10**15) == 80
    d = engines.draws_per_batch(g, 2, 80, budget_bytes=3 * per)
    assert 1 <= d <= 3 and engines.draw_batch_bytes(g, 2, d) <= 3 * per
    assert engines.draws_per_batch(g, 2, 80, budget_bytes=1) == 1


# ---- --engine on the command line ---------------------------------------------------
def _cli_error(capsys, argv):
    from deepglass.cli.app import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error:") and "\n" not in err, err
    return err


def test_cli_engine_is_validated_everywhere(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    for argv in (["frustration", "digits_cnn", "--engine", "bogus"],
                 ["frustration", "digits_cnn", "--nulls", "N1", "--engine", "bogus"],
                 ["frustration", "digits_cnn", "--out", str(tmp_path / "r"), "--engine", "x"],
                 ["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy"), "--engine", "x"],
                 ["monotonicity", "digits_cnn", "--inputs", str(tmp_path / "x.npy"),
                  "--engine", "x"]):
        assert "--engine must be one of" in _cli_error(capsys, argv)
    err = _cli_error(capsys, ["frustration", "digits_cnn", "--method", "greedy",
                              "--nulls", "N1", "--engine", "compiled"])
    assert "applies to --method descent" in err


def test_cli_engine_is_honoured_with_nulls_and_in_active(capsys, tmp_path, monkeypatch):
    """With no memory to spare, a named engine is refused by the solver: the
    refusal (one line, with the estimate) shows that the engine got there."""
    monkeypatch.setattr(engines, "_budget", lambda: 1000)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32))
    for argv in (["frustration", "digits_cnn", "--nulls", "N1", "--null-instances", "2",
                  "--replicas", "2", "--engine", "compiled"],
                 ["frustration", "digits_cnn", "--replicas", "2", "--engine", "compiled"],
                 ["active", "digits_cnn", "--inputs", str(tmp_path / "x.npy"),
                  "--replicas", "2", "--method", "descent", "--engine", "compiled"],
                 ["monotonicity", "digits_cnn", "--inputs", str(tmp_path / "x.npy"),
                  "--amplitudes", "2", "--nulls", "", "--replicas", "2",
                  "--engine", "compiled"]):
        err = _cli_error(capsys, argv)
        assert "compiled engine would need ~" in err and "more than the budget of 1 kB" in err, err


def test_cli_nulls_with_matrix_free_engine_batches_draws(tmp_path):
    from typer.testing import CliRunner

    from deepglass.cli.app import app

    res = CliRunner().invoke(app, ["frustration", "digits_cnn", "--nulls", "N1,N3",
                                   "--null-instances", "3", "--replicas", "2",
                                   "--engine", "matrix-free", "--draws-per-unit", "3",
                                   "--out", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert {r["kind"]: r["n"] for r in data["stats"]} == {"real": 2, "N1": 3, "N3-xavier": 3,
                                                          "N3-he": 3}
    units = sorted(p.stem for p in (tmp_path / "run" / "units" / "frustration" / "runs").iterdir())
    assert "N1-00000-00000-x3" in units and len(units) == 4


# ---- Ray asks for GPUs with a CUDA device ---------------------------------------------
def test_ray_units_ask_for_a_gpu_with_cuda():
    from deepglass.executors import RayExecutor, get_executor

    ex = get_executor("ray", device="cuda")
    assert isinstance(ex, RayExecutor)
    assert ex.task_options() == {"num_cpus": 1, "num_gpus": 1.0}
    assert ex._window({"CPU": 16.0, "GPU": 4.0}) == 8
    cpu = get_executor("ray", device="cpu")
    assert cpu.task_options() == {"num_cpus": 1} and cpu._window({"CPU": 16.0}) == 32
    assert get_executor("ray", device="cuda:1", num_gpus=0.5).task_options()["num_gpus"] == 0.5
    with pytest.raises(DeepglassError, match="num_gpus"):
        RayExecutor(num_gpus=-1)


def test_matrix_free_descent_runs_without_tf32():
    """cuDNN's TF32 convolutions (the default on recent GPUs) are off while the
    matrix-free descent runs, and restored after."""
    from deepglass.solve.descent import descent

    g = _graph()
    seen = []
    before = torch.backends.cudnn.allow_tf32
    descent(g, torch.from_numpy(start_gauges(g.n_nodes, 2, 0)), engine="matrix-free",
            callback=lambda k, n: seen.append(torch.backends.cudnn.allow_tf32))
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32 == before


def test_a_batch_of_draws_is_sized_as_its_planner_sized_it():
    """The descent's memory estimate of a stacked batch of draws equals the
    draw planner's (draws_per_batch / draw_batch_bytes) minus the draws' own
    weights, so a batch the planner admits is never refused by the engine
    choice (each replica runs on one draw: no D-fold temporaries)."""
    from deepglass.solve.batched import DrawBatchedGraph
    from deepglass.solve.engines import draw_batch_bytes, matrix_free_bytes

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    g = SignedGraph.from_module(net, (2, 13, 13))
    draws, starts = 5, 3
    stacked = DrawBatchedGraph([null_model(g, "N3-he", seed=s) for s in range(draws)])
    item = 4
    own_weights = draws * 2 * item * g.n_params
    assert matrix_free_bytes(stacked, draws * starts) == \
        draw_batch_bytes(g, starts, draws) - own_weights
    # one draw alone is sized as a plain graph
    assert matrix_free_bytes(DrawBatchedGraph([g]), starts) == matrix_free_bytes(g, starts)
