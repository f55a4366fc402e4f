"""deepglass.memory: the budget (explicit, process-wide, share of the available
memory) and the one-line refusal before an allocation."""

import pytest

from deepglass import memory
from deepglass.errors import DeepglassError, TooLargeError


def test_explicit_limit_and_message():
    memory.check_fits(1_999_999_999, "x", "lower y", max_memory_gb=2)     # just fits
    with pytest.raises(TooLargeError) as exc:
        memory.check_fits(2_000_000_001, "80 start gauges", "lower --replicas", max_memory_gb=2)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("80 start gauges would need ~2 GB")
    assert "limit of 2 GB (--max-memory-gb); lower --replicas" in msg


def test_process_limit_is_scoped_and_default_is_share_of_available(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
    assert memory.budget_bytes() == (8_000, memory.budget_bytes()[1])
    memory.check_fits(8_000, "a", "b")
    with pytest.raises(TooLargeError, match="80% of the 10 kB available"):
        memory.check_fits(8_001, "a", "b")
    with memory.limit(1e-6):                     # 1,000 bytes, whatever is available
        assert memory.get_limit() == 1e-6
        with pytest.raises(TooLargeError, match="limit of 1e-06 GB"):
            memory.check_fits(1_001, "a", "b")
        memory.check_fits(5_000, "a", "b", max_memory_gb=1e-5)   # an explicit one wins
    assert memory.get_limit() is None


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_limits(bad):
    with pytest.raises(DeepglassError, match="--max-memory-gb must be"):
        memory.check_fits(1, "a", "b", max_memory_gb=bad)


def test_available_bytes_is_positive_and_used_by_greedy():
    from deepglass.solve.greedy import available_memory_bytes

    assert memory.available_bytes() > 0
    assert abs(available_memory_bytes() - memory.available_bytes()) < 2**28


def test_cli_limit_reaches_the_greedy_fallback(cli):
    # the explicit greedy solver's check honours the command's --max-memory-gb
    code, _, err = cli(["frustration", "digits_cnn", "--method", "greedy", "--replicas", "2",
                        "--max-memory-gb", "5e-5"])     # 50 kB: the gauges fit (19 kB)
    assert code == 2 and err.count("\n") == 1 and "error: the explicit greedy solver" in err


def test_an_address_space_limit_caps_the_available_memory(monkeypatch):
    """``ulimit -v``: the budget was MemAvailable's share, and a run under the
    limit died in a traceback allocating; now what the limit leaves counts."""
    import os
    import resource

    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    free = memory.available_bytes()
    monkeypatch.setattr(resource, "getrlimit", lambda what: (
        (used + 300_000_000, resource.RLIM_INFINITY) if what == resource.RLIMIT_AS
        else (resource.RLIM_INFINITY, resource.RLIM_INFINITY)))
    capped = memory.available_bytes()
    assert capped <= min(free, 300_000_000) + 50_000_000      # (the process may grow a little)


def test_a_given_draw_batch_is_checked_against_the_budget():
    """--draws-per-unit skipped the check its default passes (a batch of 8
    draws ran past --max-memory-gb)."""
    from deepglass.experiments import frustration_vs_nulls
    from deepglass.graph import SignedGraph
    from deepglass.solve import engines
    from deepglass.zoo import get

    g = SignedGraph.from_module(get("digits_cnn"), (1, 8, 8))
    one, eight = (engines.draw_batch_bytes(g, 2, d) for d in (1, 8))
    limit = (one + eight) / 2e9
    assert engines.draws_per_batch(g, 2, 8, budget_bytes=int(limit * 1e9)) < 8
    with memory.limit(limit), pytest.raises(TooLargeError, match="8 null draws of 2 starts "
                                            r"solved as one batch.*lower --draws-per-unit"):
        frustration_vs_nulls(g, replicas=2, null_instances=8, nulls="N1",
                                       engine="matrix-free", draws_per_unit=8)
