from __future__ import annotations

import pytest

from autoprune.core.errors import AutopruneError
from autoprune.prune.groups import channels_to_remove
from autoprune.report.channels import (
    MAX_PLANS,
    channels_of,
    kept_channels,
    plot_channels,
)
from autoprune.space.space import GroupRange, SearchSpace

CHANNELS = {"conv1": 64, "layer1.0.conv1": 64, "layer2.0.conv1": 128, "layer2.0.downsample.0": 128,
            "layer3.0.conv1": 256, "layer4.0.conv1": 512, "fc1": 10}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_kept_channels_matches_channels_to_remove():
    ratios = {"conv1": 0.0, "layer1.0.conv1": 0.3, "layer2.0.conv1": 0.55, "layer4.0.conv1": 0.9, "fc1": 0.5}
    for round_to in (1, 8):
        kept = kept_channels(ratios, CHANNELS, round_to=round_to)
        assert list(kept) == list(ratios)
        for name, ratio in ratios.items():
            assert kept[name] == CHANNELS[name] - channels_to_remove(CHANNELS[name], ratio, round_to)


def test_kept_channels_known_values():
    assert kept_channels({"a": 0.0}, {"a": 64}, round_to=8) == {"a": 64}  # ratio 0 keeps everything
    assert kept_channels({"a": 0.0}, {"a": 13}, round_to=8) == {"a": 13}  # never more than the original
    assert kept_channels({"a": 0.3}, {"a": 64}, round_to=1) == {"a": 45}  # round(44.8)
    assert kept_channels({"a": 0.3}, {"a": 64}, round_to=8) == {"a": 48}  # 44.8 -> 45 -> nearest multiple of 8
    assert kept_channels({"a": 0.95}, {"a": 64}, round_to=8) == {"a": 8}  # at least one block of round_to
    assert kept_channels({"a": 0.99}, {"a": 10}, round_to=1) == {"a": 1}  # at least one channel


def test_kept_channels_rejects_unknown_group_and_bad_ratio():
    with pytest.raises(AutopruneError, match="layer9"):
        kept_channels({"layer9.conv": 0.2}, CHANNELS, round_to=1)
    with pytest.raises(AutopruneError, match=r"\[0, 1\)"):
        kept_channels({"conv1": 1.0}, CHANNELS, round_to=1)


def _check_png(path, *, min_width: int):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert width >= min_width and 300 <= height <= width * 2
    assert image.std() > 0.01  # something was drawn, not a blank canvas
    return image


def test_plot_one_plan(tmp_path):
    plans = {"trial-007 · 93.1% · 10.2 ms": {"conv1": 0.25, "layer2.0.conv1": 0.5, "layer4.0.conv1": 0.4}}
    out = plot_channels(plans, channels=CHANNELS, round_to=8, path=tmp_path / "one.png", title="kept channels")
    assert out == tmp_path / "one.png"
    _check_png(out, min_width=600)


def test_plot_eight_plans_draws_the_first_six(tmp_path):
    plans = {f"trial-{i:03d} · {95 - i:.1f}% · {12 - i:.1f} ms": {g: 0.05 * (i + j % 3) for j, g in enumerate(CHANNELS)}
             for i in range(8)}
    out = plot_channels(plans, channels=CHANNELS, round_to=8, path=str(tmp_path / "sub" / "eight.png"))
    assert out == tmp_path / "sub" / "eight.png"
    _check_png(out, min_width=600)
    assert MAX_PLANS == 6


def test_plot_many_groups_is_wider(tmp_path):
    many = {f"blocks.{i // 4}.{i % 4}.conv_pwl": 16 * (1 + i // 8) for i in range(60)}
    plans = {"a": {g: 0.5 for g in many}, "b": {}}  # "b" names no group: every group kept whole
    few = _check_png(plot_channels({"a": {"blocks.0.0.conv_pwl": 0.5}, "b": {}}, channels=dict(list(many.items())[:5]),
                                   round_to=8, path=tmp_path / "few.png"), min_width=600)
    wide = _check_png(plot_channels(plans, channels=many, round_to=8, path=tmp_path / "many.png"), min_width=600)
    assert wide.shape[1] > 2 * few.shape[1]


def test_plot_errors(tmp_path):
    with pytest.raises(AutopruneError, match="no plans"):
        plot_channels({}, channels=CHANNELS, round_to=1, path=tmp_path / "x.png")
    with pytest.raises(AutopruneError, match="layer9.conv"):
        plot_channels({"ok": {"conv1": 0.5}, "bad": {"layer9.conv": 0.5}}, channels=CHANNELS, round_to=1,
                      path=tmp_path / "x.png")
    with pytest.raises(AutopruneError, match="channel count"):
        plot_channels({"p": {}}, channels={}, round_to=1, path=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_channels_of_keeps_known_counts_in_order():
    space = SearchSpace(groups={"conv1": GroupRange(channels=32), "conv2": GroupRange(),
                                "fc1": GroupRange(channels=64)})
    assert channels_of(space) == {"conv1": 32, "fc1": 64}
    assert list(channels_of(space)) == ["conv1", "fc1"]


def test_the_pareto_plot_legend_covers_no_point_and_not_the_unpruned_star():
    import numpy as np
    import pandas as pd

    from autoprune.report.plots import pareto_figure

    rng = np.random.default_rng(0)
    n = 12
    lat = rng.uniform(20, 100, n)
    trials = pd.DataFrame({"trial": [f"trial-{i:03d}" for i in range(n)], "status": ["completed"] * n,
                           "accuracy": 0.80 + 0.15 * lat / 100 + rng.normal(0, 0.01, n),
                           "latency_p50_ms@p": lat, "latency_p50_ms": lat, "meets_budget": lat <= 60,
                           "accuracy_before_finetune": 0.5})
    baseline = {"accuracy": 0.97, "profiles": {"p": {"latency_p50_ms": 110.0}}}  # top right, where legends go
    fig = pareto_figure(trials, budgets_ms={"p": 60.0}, baseline=baseline, profiles=["p"])
    fig.canvas.draw()
    (ax,) = fig.axes
    box = ax.get_legend().get_window_extent()
    points = ax.transData.transform(np.column_stack([[*lat, 110.0], [*(trials["accuracy"] * 100), 97.0]]))
    inside = [(box.x0 <= x <= box.x1) and (box.y0 <= y <= box.y1) for x, y in points]
    assert not any(inside)
    assert not box.overlaps(ax.get_window_extent())  # under the panel, not on it
