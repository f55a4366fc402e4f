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
