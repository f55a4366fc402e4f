"""Test-wide settings."""

import os

import pytest
import torch

# One intra-op thread: the tests run many tiny kernels, which lose far more to
# thread synchronization than they gain (badly so on a busy 2-core machine).
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(params=["real", "emulated"])
def cuda(request):
    """A CUDA device for a device check: the real one (skipped where torch sees
    none) or the CPU emulation of ``tests/fake_cuda.py`` (everywhere: device
    placement checked in CI)."""
    if request.param == "real":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        yield "real"
        return
    from fake_cuda import fake_cuda

    with fake_cuda():
        yield "emulated"


@pytest.fixture
def cli(capsys):
    """Run the ``deepglass`` command in-process: ``cli(argv) -> (exit code, stdout, stderr)``."""
    from deepglass.cli.app import main

    def run(argv):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def ray_executor():
    """One private local Ray for the whole test session (starting Ray takes
    seconds): a :class:`deepglass.executors.RayExecutor` on it.  Tests compare
    each experiment's tables under Ray with the in-process ones."""
    ray = pytest.importorskip("ray")
    from deepglass.executors import RayExecutor

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield RayExecutor()
    if started:
        ray.shutdown()
