"""Where MACs fall and latency does not: each trial's speedup against its MAC cut per target, the
plans not faster than a heavier plan, and apply's line when a target gains under half the cut."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from autoprune.commands.apply import _little_gain
from autoprune.report.frames import mac_efficiency, trials_frame

BASE = {"macs": 200.0, "profiles": {"cpu": {"latency_p50_ms": 20.0}, "gpu": {"latency_p50_ms": 4.0}}}


def _table() -> pd.DataFrame:
    return pd.DataFrame({"trial": ["t0", "t1", "t2", "t3"], "macs": [100.0, 50.0, 40.0, float("nan")],
                         "latency_p50_ms@cpu": [10.0, 6.0, 7.0, 5.0],
                         "latency_p50_ms@gpu": [3.0, 3.0, 3.05, float("nan")]})


def test_speedup_and_its_share_of_the_mac_cut_per_profile():
    t = mac_efficiency(_table(), baseline=BASE, profiles=["cpu", "gpu"])
    assert t["mac_cut"].tolist()[:3] == [2.0, 4.0, 5.0] and math.isnan(t["mac_cut"].iloc[3])
    assert t["speedup@cpu"].tolist() == pytest.approx([2.0, 20 / 6, 20 / 7, 4.0])
    assert t["speedup_per_mac_cut@cpu"].tolist()[:3] == pytest.approx([1.0, 20 / 6 / 4, 20 / 7 / 5])
    assert t["speedup@gpu"].tolist()[:3] == pytest.approx([4 / 3, 4 / 3, 4 / 3.05])


def test_a_plan_with_fewer_macs_that_is_not_faster_is_flagged_on_that_target_only():
    t = mac_efficiency(_table(), baseline=BASE, profiles=["cpu", "gpu"]).set_index("trial")
    # on cpu t2 (40 M) is slower than t1 (50 M); t3 has no MAC count and is judged by nothing
    assert t.loc["t2", "not_faster_than@cpu"] == "t1"
    assert t.loc[["t0", "t1", "t3"], "not_faster_than@cpu"].tolist() == ["", "", ""]
    # on gpu all three take about 3 ms: the lighter plans bought nothing against t0 (within 3 %: equal)
    assert t.loc["t1", "not_faster_than@gpu"] == "t0" and t.loc["t2", "not_faster_than@gpu"] == "t0"
    assert t.loc["t0", "not_faster_than@gpu"] == ""


def test_trials_frame_adds_them_only_with_a_baseline():
    rows = _table().to_dict("records")
    assert "mac_cut" not in trials_frame(rows)
    framed = trials_frame(rows, baseline=BASE, profiles=["cpu"])
    assert {"mac_cut", "speedup@cpu", "speedup_per_mac_cut@cpu", "not_faster_than@cpu"} <= set(framed)
    assert "speedup@gpu" not in framed


@pytest.mark.parametrize(("speedup", "cut", "said"), [(1.3, 3.0, True), (1.0, 1.2, True), (2.2, 3.0, False),
                                                      (0.9, 1.01, False), (float("nan"), 2.0, False)])
def test_apply_says_when_a_target_gains_under_half_the_cut(speedup, cut, said):
    line = _little_gain("cpu-1thread-b1", speedup=speedup, mac_cut=cut)
    assert (line is not None) == said
    if said:
        assert f"{speedup:.2f}x as fast" in line and f"{cut:.2f}x MAC cut" in line
        assert "profile probe --profile cpu-1thread-b1" in line
