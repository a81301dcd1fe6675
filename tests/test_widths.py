"""The width probe: which channel multiple a target computes in, and a generated space that rounds to
the primary profile's multiple."""

from __future__ import annotations

import pandas as pd
import pytest

from autoprune.commands.profile import profile_probe
from autoprune.core.errors import AutopruneError
from autoprune.latency.profiles import HardwareProfile
from autoprune.latency.widths import MULTIPLES, channel_multiple, recommend
from autoprune.study.workload import load_workload
from tests.conftest import TINY_SINGLE
from tests.helpers import cli


def _stairs(step: int, *, base: float = 1.0, rise: float = 0.1, remainder: float = 0.0) -> dict[int, float]:
    """ms of a kernel that computes in blocks of ``step``: flat within a block (a remainder path costs
    ``remainder`` more), a rise per block."""
    return {w: base + rise * -(-w // step) + (remainder if w % step else 0.0) for w in range(64, 129)}


@pytest.mark.parametrize("step", [8, 16, 32])
def test_the_recommended_multiple_is_the_step_of_the_stairs(step):
    ratios, multiple = recommend(_stairs(step))
    assert multiple == step
    assert all(ratios[m] <= 1.0 for m in MULTIPLES if m <= step)
    assert all(ratios[m] > 1.0 for m in MULTIPLES if m > step)


def test_a_remainder_path_makes_the_multiple_faster_than_its_neighbours():
    ratios, multiple = recommend(_stairs(16, remainder=0.3))  # 47 slower than 48, as ONNX Runtime on AVX-512
    assert multiple == 16 and ratios[16] < 0.9


def test_widths_that_cost_their_macs_recommend_no_block():
    # rounding up 1-2 channels of ~100 costs about 1-2 %, within the timing's noise: not a block
    ratios, multiple = recommend({w: 0.01 * w for w in range(64, 129)})
    assert multiple <= 4 and all(r > 1.0 for r in ratios.values()) and ratios[16] > 1.05


def test_an_unbroken_run_of_multiples_decides():
    ms = _stairs(8)
    ms[112] = 2.0  # a noisy 112 would make 32 look free; 16 is not, so the multiple stays 8
    assert recommend(ms)[1] == 8


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own: what a probe keeps for the machine does not reach other tests."""
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_real_probe_times_every_width_and_writes_its_plot(tmp_path, own_cache):
    report = profile_probe(profile=str(TINY_SINGLE), layers="conv", out=tmp_path)
    (probe,) = report.probes
    assert probe.layer == "conv" and sorted(probe.ms) == list(range(64, 129))
    assert all(ms > 0 for ms in probe.ms.values())
    assert report.multiple in (1, *MULTIPLES) and set(probe.up_ratio) == set(MULTIPLES)
    table = pd.read_csv(report.csv)
    assert len(table) == 65 and set(table["layer"]) == {"conv"}
    assert report.plot.read_bytes()[:4] == b"\x89PNG"
    # kept for this machine: a search on the profile now rounds its generated space to the multiple
    assert report.stored.is_relative_to(own_cache)
    assert channel_multiple(HardwareProfile.load(TINY_SINGLE)) == report.multiple
    work = load_workload(model="builtin:demo", data="builtin:digits", space=None, profiles=[HardwareProfile.load(TINY_SINGLE)])
    assert work.space.round_to == report.multiple
    # ...unless the profile says otherwise
    assert channel_multiple(HardwareProfile.load(TINY_SINGLE).model_copy(update={"channel_block": 4})) == 4


def test_probe_refuses_an_unknown_layer_kind_in_one_line(own_cache):
    with pytest.raises(AutopruneError, match="layers 'conv,lstm': lstm not known; use conv, linear or both"):
        profile_probe(profile=str(TINY_SINGLE), layers="conv,lstm")
    done = cli("profile", "probe", "--profile", str(TINY_SINGLE), "--layers", "attention")
    assert done.returncode != 0 and "attention not known" in done.stderr


def test_a_generated_space_rounds_to_the_primary_profiles_channel_block(tmp_path, own_cache):
    profile = HardwareProfile.load(TINY_SINGLE)
    plain = load_workload(model="builtin:demo", data="builtin:digits", space=None, profiles=[profile])
    blocked = load_workload(model="builtin:demo", data="builtin:digits", space=None,
                            profiles=[profile.model_copy(update={"channel_block": 16})])
    assert plain.space.round_to == 8 and blocked.space.round_to == 16
    done = cli("space", "init", "--model", "builtin:demo", "--round-to", "16")
    assert done.returncode == 0 and "round_to: 16" in done.stdout
    bad = cli("space", "init", "--model", "builtin:demo", "--round-to", "0")
    assert bad.returncode != 0 and "round_to 0 is not valid" in bad.stderr
