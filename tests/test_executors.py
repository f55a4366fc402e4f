"""Executors: the in-process default, name lookup, and Ray == in-process."""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepglass.errors import DeepglassError
from deepglass.executors import InProcessExecutor, RayExecutor, get_executor
from deepglass.experiments.frustration import frustration_vs_nulls


def _square_plus(shared, unit):
    return unit * unit + shared


def test_in_process_map_and_lookup():
    ex = get_executor()
    assert isinstance(ex, InProcessExecutor) and get_executor(ex) is ex
    assert list(ex.map(_square_plus, [1, 2, 3], shared=10)) == [(1, 11), (2, 14), (3, 19)]
    assert list(ex.map(_square_plus, [], shared=0)) == []
    with pytest.raises(DeepglassError, match="unknown executor 'spark'"):
        get_executor("spark")
    with pytest.raises(DeepglassError, match="ray executor only"):
        get_executor("inprocess", address="127.0.0.1:6379")


@pytest.mark.parametrize("argv", [
    ["rap", "student", "--N", "4", "--trials", "1", "--epochs", "1"],
    ["criticality", "meanfield", "digits_cnn", "--out", "{tmp}/mf"],   # (its units: --out)
    ["frustration", "digits_cnn", "--nulls", "N1"],
])
def test_address_alone_picks_ray(cli, monkeypatch, argv, tmp_path):
    # --address implies --executor ray (as its help says) on every command
    import deepglass.executors as executors

    class Reached(executors.RayExecutor):
        def __init__(self, address=None, **kwargs):
            raise DeepglassError(f"ray executor at {address}")

    monkeypatch.setattr(executors, "RayExecutor", Reached)
    code, _, err = cli([a.replace("{tmp}", str(tmp_path)) for a in argv]
                       + ["--address", "10.0.0.1:6379"])
    assert code == 2 and "error: ray executor at 10.0.0.1:6379" in err, err


def test_ray_address_is_probed_up_front():
    """A malformed or unreachable --address is one error at once (ray.init
    would wait minutes on a closed port)."""
    import socket

    pytest.importorskip("ray")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert RayExecutor(address=f"127.0.0.1:{port}").address == f"127.0.0.1:{port}"
    # the port is closed now
    with pytest.raises(DeepglassError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        get_executor("ray", address=f"127.0.0.1:{port}")
    for bad in ("notanaddress", "host:", ":6379", "host:70000", "host:port"):
        with pytest.raises(DeepglassError, match="must look like HOST:PORT"):
            RayExecutor(address=bad)


def test_a_local_ray_under_an_address_space_limit_is_refused_up_front(monkeypatch, cli):
    """Under ``ulimit -v`` a local Ray's processes died with a native stack dump
    (or the command hung, Ctrl-C ignored, and they outlived it): refused in
    one line before anything starts; a cluster address is not concerned."""
    import resource

    pytest.importorskip("ray")
    limit = 8 * 2**30
    monkeypatch.setattr(resource, "getrlimit", lambda which: (
        (limit, resource.RLIM_INFINITY) if which == resource.RLIMIT_AS
        else (resource.RLIM_INFINITY, resource.RLIM_INFINITY)))
    with pytest.raises(DeepglassError, match=r"^a local Ray cannot start under an address-space "
                                             r"limit \(ulimit -v: 8\.0 GiB\).*without "
                                             r"--executor ray$"):
        RayExecutor()
    code, out, err = cli(["frustration", "digits_cnn", "--nulls", "N1", "--executor", "ray"])
    assert code == 2 and err.startswith("error: a local Ray cannot start") and \
        "Traceback" not in err


def test_ray_gives_the_same_numbers_as_in_process(tmp_path, ray_executor):
    import ray

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(27, 4)).eval()
    kw = dict(replicas=4, replicas_per_unit=2, null_instances=2, starts_per_null=2,
              nulls="N1,N2,N3-he", seed=3, input_shape=(1, 6, 6))
    local = frustration_vs_nulls(net, **kw)
    ex = ray_executor
    # the generic map: every unit comes back once, with its own result (the
    # function must be importable on the workers: not one of this test file)
    assert sorted(ex.map(operator.add, range(5), shared=10)) == [(u, u + 10) for u in range(5)]
    remote = frustration_vs_nulls(net, executor=ex, run=tmp_path / "ray", **kw)
    assert ray.is_initialized()  # an executor passed in (and a Ray it did not start) stays up
    cols = [c for c in local.runs.columns if c not in ("seconds", "build_seconds")]
    pd.testing.assert_frame_equal(local.runs[cols], remote.runs[cols])
    pd.testing.assert_frame_equal(local.stats, remote.stats)
    for k in ("sigma", "sigma_in", "sigma_out", "energy"):
        np.testing.assert_array_equal(local.gauge[k], remote.gauge[k])
