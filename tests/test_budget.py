import pytest

from autoprune.core.errors import AutopruneError
from autoprune.latency.budget import Budget


@pytest.mark.parametrize(("text", "ms"), [("50ms", 50.0), ("0.05s", 50.0), ("500us", 0.5), (" 12.5 ms ", 12.5),
                                          ("2s", 2000.0)])
def test_absolute_budgets_in_ms(text, ms):
    b = Budget.parse(text)
    assert not b.relative
    assert b.resolve_ms(baseline_ms=999.0) == pytest.approx(ms)


def test_relative_budget_is_a_fraction_of_the_baseline():
    b = Budget.parse("0.5x")
    assert b.relative
    assert b.resolve_ms(baseline_ms=80.0) == pytest.approx(40.0)


@pytest.mark.parametrize("text", ["50", "50 parsecs", "fast", "-5ms", "0ms", "1.5x", "ms", ""])
def test_bad_budgets_name_the_input_and_the_fix(text):
    with pytest.raises(AutopruneError) as info:
        Budget.parse(text)
    msg = str(info.value)
    assert repr(text) in msg and ("50ms" in msg or "0.5x" in msg or "fraction" in msg)
    assert "\n" not in msg
