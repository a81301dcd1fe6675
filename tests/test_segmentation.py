"""Another task end to end: a segmentation model searched and applied with its own metric and loss."""

from __future__ import annotations

import pandas as pd
import torch
import yaml

from autoprune import apply, search
from autoprune.load.models import load_model
from tests.conftest import TINY_SINGLE
from tests.helpers import miou, segmentation_data, tiny_fcn


def test_segmentation_search_and_apply_use_the_given_metric_and_loss(ray_local, tmp_path):
    result = search(budget="1000ms", model="tests.helpers:tiny_fcn", data="tests.helpers:segmentation_data",
                    profile=TINY_SINGLE, trials=3, finetune_steps=10, out=tmp_path, quiet=True, seed_plans="uniform",
                    metric="tests.helpers:miou", loss="tests.helpers:pixel_cross_entropy", val_samples=32)
    conf = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (conf["metric"], conf["loss"], conf["val_samples"]) == ("tests.helpers:miou",
                                                                  "tests.helpers:pixel_cross_entropy", 32)
    assert "classifier" not in conf["space"]["groups"]  # the per-pixel classifier keeps its classes
    trials = pd.read_csv(result.run_dir / "trials.csv")
    done = trials[trials["status"] == "completed"]
    assert len(done) >= 1 and done["accuracy"].between(0, 1).all()
    # the baseline is the metric itself on the same 32-sample subset the trials were scored on
    _, val = segmentation_data()
    sub = torch.utils.data.Subset(val, sorted(torch.randperm(64, generator=torch.Generator().manual_seed(0))[:32].tolist()))
    loader = torch.utils.data.DataLoader(sub, batch_size=256)
    with torch.no_grad():
        assert abs(result.baseline["accuracy"] - miou(tiny_fcn(), loader)) < 1e-9

    applied = apply(result.run_dir, pick=str(done["trial"].iloc[0]), epochs=2, out=tmp_path / "applied", quiet=True,
                    device="cpu")
    report = applied.report
    assert report["metric"] == "tests.helpers:miou" and report["finetune_device"] == "cpu"
    model = load_model(str(applied.model_path))
    full = torch.utils.data.DataLoader(val, batch_size=256)
    with torch.no_grad():
        assert abs(miou(model, full) - report["accuracy"]["applied"]) < 1e-6  # the full set, not the subset
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
