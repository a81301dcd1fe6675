"""A real tiny search through Ray Tune and Optuna, then apply: the whole spine, no mocks."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml

from autoprune import apply, search
from autoprune.latency.measure import run_references
from autoprune.latency.onnx import onnx_outputs
from autoprune.latency.profiles import resolve_profile
from autoprune.latency.reference import THIN_RATIO, thinned_model
from autoprune.load.models import load_model
from autoprune.prune.engine import count_macs_params
from autoprune.study.samplers import CONSTRAINT_PREFIX
from tests.conftest import TINY_PROFILE
from tests.helpers import cli

SPACE = """
round_to: 8
groups:
  stem.0: {low: 0.0, high: 0.5, step: 0.25}   # 0.5 keeps 8 channels: FlakyResNet fails its fine-tune
  block1.conv1: {low: 0.0, high: 0.5, step: 0.25}
  block2.conv1: {low: 0.0, high: 0.5, step: 0.25}
  block2.conv2: {low: 0.0, high: 0.5, step: 0.25}
"""


@pytest.fixture(scope="module")
def run(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    space = out / "space.yaml"
    space.write_text(SPACE)
    # An absolute budget every plan meets: on a model this small, relative latency differences drown in
    # timing noise, and apply's "best" must exist. Budgets that bind are covered in test_multi_profile.
    result = search(budget="1000ms", model="tests.helpers:flaky_resnet", data="builtin:digits", space=space,
                    profile=TINY_PROFILE, trials=8, concurrency=2, seed=3, finetune_steps=5, out=out, quiet=True)
    return result


def test_search_writes_every_trial_and_keeps_going_after_failures(run):
    trials = pd.read_csv(run.run_dir / "trials.csv")
    assert len(trials) == 8
    assert set(trials["status"]) <= {"completed", "failed"}
    done, failed = trials[trials["status"] == "completed"], trials[trials["status"] == "failed"]
    assert len(done) >= 4
    # the injected fault is recorded with its phase and cause, and only for plans that trigger it
    assert len(failed) >= 1
    assert failed["error"].str.contains("finetune: RuntimeError: injected fault").all()
    assert (failed["ratio.stem.0"] == 0.5).all() and (done["ratio.stem.0"] < 0.5).all()
    for col in ("accuracy", "latency_p50_ms", "latency_p90_ms", "macs", "params", "prune_s", "finetune_s",
                "evaluate_s", "export_s", "measure_s", "overhead_s"):
        assert done[col].notna().all() and (done[col] >= 0).all(), col
    assert (done["latency_p50_ms"] <= done["latency_p90_ms"]).all()
    # pooled figures (tiny.yaml): a ratio to the run's thinned model with a 95 % CI, from 2-3 worker processes
    assert (done["latency_ci_low_ms"] <= done["latency_p50_ms"]).all()
    assert (done["latency_p50_ms"] <= done["latency_ci_high_ms"]).all()
    assert set(done["latency_method@tiny"]) == {"pooled"} and set(done["latency_reference@tiny"]) == {"thinned"}
    assert done["latency_processes@tiny"].between(2, 3).all()
    ref_ms = run.baseline["profiles"]["tiny"]["reference"]["ms"]
    assert np.allclose(done["latency_reference_ms@tiny"], ref_ms)
    assert np.allclose(done["latency_p50_ms"], done["latency_ratio@tiny"] * ref_ms)
    # the default rule: within budget when the CI's upper end is
    assert ((done["latency_ci_high_ms"] <= run.budget_ms) == done["meets_budget"]).all()
    assert set(done["budget_verdict@tiny"]) == {"met"}
    device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray gives these trials no GPU: cpu either way
    assert set(done["finetune_device"]) == {"cpu"} or device == "cuda"
    assert done["latency_node@tiny"].notna().all()
    assert run.budget_ms == 1000.0
    for plan in trials["plan"]:
        assert (run.run_dir / plan).is_file()


def test_the_thinned_reference_is_recorded_and_rebuilt_byte_for_byte_for_resume_and_apply(run):
    rec = run.baseline["profiles"]["tiny"]["reference"]
    assert rec["name"] == "thinned" and rec["ratio"] == THIN_RATIO
    assert rec["groups"] == ["stem.0", "block1.conv1", "block2.conv1", "block2.conv2"] and rec["round_to"] == 8
    model = load_model("tests.helpers:flaky_resnet")
    refs = run_references(model, [resolve_profile(TINY_PROFILE)], input_shape=(1, 8, 8), baseline=run.baseline)
    # the same bytes the trials were timed against, at the run's own figure: nothing measured again
    assert refs["tiny"].name == "thinned" and refs["tiny"].digest == rec["digest"] and refs["tiny"].ms == rec["ms"]
    thin = thinned_model(model, groups=rec["groups"], input_shape=(1, 8, 8), round_to=8)
    assert count_macs_params(thin, input_shape=(1, 8, 8))[0] < count_macs_params(model, input_shape=(1, 8, 8))[0]


def test_pareto_csv_is_the_non_dominated_set_sorted_by_latency(run):
    trials = pd.read_csv(run.run_dir / "trials.csv")
    front = pd.read_csv(run.run_dir / "pareto.csv")
    assert list(front.columns[:13]) == ["trial", "accuracy", "confirmed_accuracy", "confirmed_sd", "confirmed_seeds",
                                        "latency_p50_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_p90_ms",
                                        "macs", "params", "meets_budget", "plan"]
    assert front["latency_p50_ms"].is_monotonic_increasing
    done = trials[trials["status"] == "completed"]
    for r in done.itertuples():
        dominated = ((done["accuracy"] >= r.accuracy) & (done["latency_p50_ms"] <= r.latency_p50_ms)
                     & ((done["accuracy"] > r.accuracy) | (done["latency_p50_ms"] < r.latency_p50_ms))).any()
        assert (r.trial in set(front["trial"])) == (not dominated)
    assert (run.run_dir / "pareto.png").stat().st_size > 10_000


def test_sampler_receives_the_budget_constraint(run):
    """Under Ray the constraint is set from each trial's result; the sampler reads trial.constraints."""
    study = optuna.load_study(study_name="autoprune", storage=f"sqlite:///{run.run_dir / 'study.db'}")
    trials = pd.read_csv(run.run_dir / "trials.csv").set_index("trial")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == (trials["status"] == "completed").sum()
    for t in complete:
        row = trials.loc[f"trial-{t.number:03d}"]
        key = f"{CONSTRAINT_PREFIX}tiny"
        assert t.constraints[key] == pytest.approx(row["latency_ci_high_ms"] - run.budget_ms)  # the rule's figure
        assert (t.constraints[key] <= 0) == bool(row["meets_budget"])
        assert t.values == pytest.approx([row["accuracy"], row["latency_p50_ms"]])
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == (trials["status"] == "failed").sum()


def test_apply_rebuilds_the_trial_model_and_exports_it(run, tmp_path):
    trials = pd.read_csv(run.run_dir / "trials.csv")
    result = apply(run.run_dir, pick="best", epochs=0.5, out=tmp_path / "applied", quiet=True)
    report = result.report
    best = trials[trials["meets_budget"]].sort_values(["accuracy", "latency_p50_ms"], ascending=[False, True]).iloc[0]
    assert report["trial"] == best["trial"]
    assert report["same_pruned_weights_as_trial"] is True
    assert report["macs"]["applied"] == best["macs"] and report["params"]["applied"] == best["params"]
    assert 0.0 <= report["accuracy"]["applied"] <= 1.0 and report["latency"]["tiny"]["applied_p50_ms"] > 0
    lat = report["latency"]["tiny"]
    assert "on tiny" in lat["method"] and "x the thinned model" in lat["method"]
    # apply re-measures as the search did, and puts the two figures and their CIs side by side
    assert lat["search"]["p50_ms"] == pytest.approx(best["latency_p50_ms"])
    assert lat["search"]["ci_high_ms"] == pytest.approx(best["latency_ci_high_ms"])
    assert lat["applied"]["ci_low_ms"] <= lat["applied_p50_ms"] <= lat["applied"]["ci_high_ms"]
    assert lat["applied"]["method"] == "pooled" and lat["applied"]["node"]
    assert lat["verdict"] == "met" and report["budget_verdict"] == "met"  # 1000 ms: far over either CI
    from autoprune.core.device import resolve_device

    assert report["budget_confidence"] == "upper"
    assert report["finetune_device"] == str(resolve_device("auto"))  # apply trains on a GPU where there is one
    assert report["trial_ran_on"]["finetune_device"] == best["finetune_device"] and report["trial_ran_on"]["node"]
    assert report["onnx_max_abs_diff"] <= 1e-4
    # the .pt loads back (weights_only) into the pruned model, and the ONNX file matches it
    model = load_model(str(result.model_path))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert np.abs(onnx_outputs(result.onnx_path, x) - model(x).numpy()).max() <= 1e-4
    assert (result.out_dir / "report.yaml").is_file()


def test_apply_refuses_a_plan_for_other_weights(run, tmp_path, monkeypatch):
    import shutil

    from autoprune.core.errors import AutopruneError
    from tests import helpers

    def other_weights():
        torch.manual_seed(123)
        return helpers.FlakyResNet().eval()

    copy = tmp_path / "run"
    shutil.copytree(run.run_dir, copy, ignore=shutil.ignore_patterns("ray", "study.db"))
    monkeypatch.setattr(helpers, "flaky_resnet", other_weights)
    with pytest.raises(AutopruneError, match="fingerprint"):
        apply(copy, pick="best", epochs=0, out=tmp_path / "x", quiet=True)


def test_apply_with_distillation_and_progressive_pruning_from_the_cli(run, tmp_path):
    """Both recovery modes from the CLI: the same final architecture as the trial, steps reported."""
    trials = pd.read_csv(run.run_dir / "trials.csv")
    best = trials[trials["meets_budget"]].sort_values(["accuracy", "latency_p50_ms"], ascending=[False, True]).iloc[0]
    proc = cli("apply", str(run.run_dir), "--epochs", "1", "--distill", "--kd-temperature", "2", "--progressive", "3",
               "--out", str(tmp_path / "kd"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = yaml.safe_load((tmp_path / "kd" / "report.yaml").read_text())
    recovery = report["recovery"]
    assert recovery["distillation"] == {"alpha": 0.5, "temperature": 2.0, "attention_transfer": None}
    assert recovery["progressive_steps"] == 3 and len(recovery["steps"]) == 3
    assert all(0 <= s["accuracy_finetuned"] <= 1 for s in recovery["steps"])
    assert report["macs"]["applied"] == best["macs"] and report["params"]["applied"] == best["params"]
    assert report["same_pruned_weights_as_trial"] is False  # scores were re-taken between steps
    assert "pruning step 3/3" in proc.stdout


def test_apply_with_feature_distillation_and_unstructured_zeros_from_the_cli(run, tmp_path):
    """--kd-features auto matches every stage; --unstructured zeros weights of the structurally pruned
    model, the zeros survive fine-tuning and saving, and both latencies are reported side by side."""
    out = tmp_path / "sparse"
    proc = cli("apply", str(run.run_dir), "--epochs", "0.5", "--distill", "--kd-features", "auto", "--unstructured", "0.5",
               "--unstructured-scope", "layer", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = yaml.safe_load((out / "report.yaml").read_text())
    at = report["recovery"]["distillation"]["attention_transfer"]
    assert at == {"layers": ["stem", "block1", "block2"], "beta": 1000.0}
    sparse = report["recovery"]["unstructured"]
    assert sparse["scope"] == "layer" and sparse["size"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert sparse["size"]["onnx_gzip_bytes"] < sparse["size"]["onnx_bytes"]
    lat = sparse["latency"]["tiny"]
    assert lat["structured_p50_ms"] > 0 and lat["with_zeros_p50_ms"] > 0
    model = load_model(str(out / "model.pt"))
    weights = torch.cat([m.weight.detach().flatten() for m in model.modules()
                         if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    assert float((weights == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    bad = cli("apply", str(run.run_dir), "--kd-features", "auto", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "add --distill" in bad.stderr


def test_progressive_plans_remove_the_plan_s_channels_in_equal_steps():
    from autoprune.commands.apply import progressive_plans
    from autoprune.prune.engine import prune
    from autoprune.prune.plan import Plan
    from tests.helpers import tiny_resnet

    model = tiny_resnet()
    plan = Plan(ratios={"block2.conv1": 0.75}, round_to=8)  # 32 -> 8 kept: 24 removed, 8 per step
    kept = []
    for build in progressive_plans(model, plan, steps=3, input_shape=(1, 8, 8)):
        model = prune(model, build(model), input_shape=(1, 8, 8))
        kept.append(model.block2.conv1.out_channels)
    assert kept == [24, 16, 8]


def _runs_dir(run, tmp_path):
    """Copies of the search's run in each state ``autoprune runs`` tells apart."""
    import shutil

    root = tmp_path / "runs"
    for name in ("a-finished", "b-interrupted", "c-incomplete", "d-unreadable"):
        shutil.copytree(run.run_dir, root / name, ignore=shutil.ignore_patterns("ray"))
    trials = pd.read_csv(root / "b-interrupted" / "trials.csv")
    trials.iloc[:3].to_csv(root / "b-interrupted" / "trials.csv", index=False)  # Ctrl-C after 3 trials
    (root / "c-incomplete" / "summary.yaml").unlink()  # a driver killed before it wrote its outputs
    (root / "d-unreadable" / "config.yaml").write_text("format: 1\n")
    return root


def test_runs_lists_each_run_with_its_state_and_best_plan(run, tmp_path):
    from autoprune import runs

    root = _runs_dir(run, tmp_path)
    found = {r.run_dir.name: r for r in runs(out=root, quiet=True)}
    assert {n: r.status for n, r in found.items()} == {"a-finished": "finished", "b-interrupted": "interrupted",
                                                       "c-incomplete": "incomplete", "d-unreadable": "unreadable"}
    trials = pd.read_csv(run.run_dir / "trials.csv")
    ok = trials[(trials["status"] == "completed") & trials["meets_budget"] & trials["confirmed_accuracy"].notna()]
    # best: the highest mean of the plans the confirmation stage re-trained with fresh seeds
    best = ok.sort_values(["confirmed_accuracy", "latency_p50_ms"], ascending=[False, True]).iloc[0]
    a = found["a-finished"]
    assert (a.trials_done, a.trials_planned, a.model) == (8, 8, "tests.helpers:flaky_resnet")
    assert a.best_trial == best["trial"] and a.best_accuracy == best["confirmed_accuracy"] and a.budgets == ("1000ms",)
    assert found["b-interrupted"].trials_done == 3
    assert "written by another autoprune version" in found["d-unreadable"].detail
    proc = cli("runs", "--out", str(root))
    assert proc.returncode == 0, proc.stderr
    for name in found:
        assert name in proc.stdout
    assert "8/8" in proc.stdout and "3/8" in proc.stdout and "incomplete" in proc.stdout


def test_runs_compare_plots_fronts_together(run, tmp_path):
    root = _runs_dir(run, tmp_path)
    proc = cli("runs", "--compare", str(root / "a-finished"), str(root / "b-interrupted"), "--plot",
               str(tmp_path / "fronts.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fronts.png").stat().st_size > 10_000
    one = cli("runs", "--compare", str(root / "a-finished"))
    assert one.returncode == 2 and one.stderr.startswith("error: --compare needs two or more run directories")
    bad = cli("runs", "--compare", str(root / "a-finished"), str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "not an autoprune run directory" in bad.stderr
    gone = cli("runs", "--out", str(tmp_path / "nowhere"))
    assert gone.returncode == 2 and "no such directory" in gone.stderr


def test_report_html_is_self_contained_and_holds_every_trial_and_plan(run):
    import json
    import re

    page = (run.run_dir / "report.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.DOTALL)
                      .group(1).replace("<\\/", "</"))
    trials = pd.read_csv(run.run_dir / "trials.csv")
    assert [t["trial"] for t in data["trials"]] == list(trials["trial"])
    for t, (_, row) in zip(data["trials"], trials.iterrows(), strict=True):
        ratios = {c.removeprefix("ratio."): row[c] for c in trials if c.startswith("ratio.")}
        assert {g: p["ratio"] for g, p in t["plan"].items()} == pytest.approx(ratios)
        assert all(p["kept"] <= p["of"] for p in t["plan"].values())
        assert t["status"] == row["status"]
    assert data["front"] == list(pd.read_csv(run.run_dir / "pareto.csv")["trial"])
    assert data["budget_ms"] == run.budget_ms and data["model"] == "tests.helpers:flaky_resnet"
    # opens from disk: nothing fetched, the images inline
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//|<link|<script src|url\(http', page)
    assert page.count('src="data:image/png;base64,') == 2  # the channel chart and the static plot
