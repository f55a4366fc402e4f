"""``deepglass frustration``: the frustration of a network (SPEC §2)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import load_graph, print_json, progress


def frustration_cmd(
    model: str = typer.Argument(..., help="A zoo name or a model file (see `deepglass graph`)."),
    method: str = typer.Option("descent", "--method",
                               help="descent (default), anneal, greedy or exact."),
    replicas: int = typer.Option(80, "--replicas", help="Start gauges."),
    seed: int = typer.Option(0, "--seed"),
    init: str = typer.Option("random", "--init", help="random or paper (10^6 random flips)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="C,H,W per sample."),
    batchnorm: str = typer.Option("fold", "--batchnorm", help="fold or ignore."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Zoo architecture of a state dict."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle"),
    save: Optional[str] = typer.Option(None, "--save", help="Write the result (PATH.npz + PATH.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Compute the frustration of a network's signed graph."""
    import deepglass

    _, _, g = load_graph(model, input_shape, batchnorm, arch, trust_pickle, device="cpu")
    with progress(f"{method} sweeps", None, enabled=not as_json) as advance:
        res = deepglass.frustration(g, method=method, replicas=replicas, seed=seed, init=init,
                                    device=device, callback=lambda k, n: advance())
    if save:
        res.save(save)
    if as_json:
        print_json({"model": model, "nodes": g.n_nodes, "edges": g.n_edges, **res.summary()})
        return
    t = Table(title=f"{model}: frustration ({method}, {replicas if method != 'exact' else 1} "
                    f"replicas, {res.seconds:.2f} s)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("frustration delta (best)", f"{res.frustration:.6f}")
    t.add_row("mean energy", f"{res.energies.mean():.6f}")
    t.add_row("std energy", f"{res.energies.std():.6f}")
    t.add_row("all at local minima", str(bool(res.local_min.all())))
    for k, v in res.info.items():
        t.add_row(k, str(v))
    Console().print(t)


def register(app: typer.Typer) -> None:
    app.command("frustration")(frustration_cmd)
