"""The CLI on bad input: one line naming what was wrong and what would be right, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, cli, cli_process


def _spaces(tmp: Path) -> dict[str, Path]:
    files = {
        "missing_layer": "groups:\n  layer9.conv1: {low: 0.0, high: 0.5}\n",
        "ratio_range": "groups:\n  stem.0: {low: 0.0, high: 1.2}\n",
    }
    out = {}
    for name, body in files.items():
        out[name] = tmp / f"{name}.yaml"
        out[name].write_text(body)
    return out


@pytest.mark.parametrize(("args", "needles"), [
    (["search", "--budget", "50parsecs"], ["budget '50parsecs'", "50ms", "0.5x"]),
    (["search", "--budget", "50ms", "--space", "nope.yaml"], ["nope.yaml", "no such file"]),
    (["search", "--budget", "50ms", "--space", "{missing_layer}"], ["groups.layer9.conv1", "no such layer", "stem.0"]),
    (["search", "--budget", "50ms", "--space", "{ratio_range}"], ["groups.stem.0.high", "1.2", "less than 1"]),
    (["search", "--budget", "50ms", "--profile", "tpu-v9"], ["'tpu-v9'", "cpu-default"]),
    (["search", "--budget", "50ms", "--trials", "0"], ["trials is 0", ">= 1"]),
    (["search", "--budget", "50ms", "--model", "torchvision:resnet18"], ["failed on inputs of shape", "--data"]),
    (["apply", "no/such/run"], ["not an autoprune run directory", "runs/<run>"]),
    (["search", "--budget", "50ms@nowhere"], ["'nowhere', which is not searched", "--profile nowhere"]),
    pytest.param(["profile", "measure", "--model", "tests.helpers:tiny_resnet", "--profile", "cuda-b1"],
                 ["CUDAExecutionProvider", "lacks"], marks=pytest.mark.skipif(
                     "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                     reason="this machine's ONNX Runtime has CUDA")),
    (["search", "--budget", "50ms", "--model", "torchvision:resnet18?weights=NOPE"],
     ["no weights 'NOPE'", "IMAGENET1K_V1"]),
    (["search", "--budget", "50ms", "--model", "torchvision:resnet18?weights=DEFAULT"],
     ["hub/checkpoints/resnet18-", "downloads nothing"]),
    (["search", "--budget", "50ms", "--model", "torchvision:resnet18?colour=red"], ["'colour=red'", "weights="]),
    (["search", "--budget", "50ms", "--metric", "accuracy"], ["metric 'accuracy' is unknown", "top1 or top5"]),
    (["search", "--budget", "50ms", "--weights", "no/such.pt"], ["no/such.pt", "no such file"]),
    (["search", "--budget", "50ms", "--val-samples", "0"], ["val_samples is 0", "positive"]),
    pytest.param(["apply", "no/such/run", "--device", "cuda"], ["no CUDA GPU", "--device cpu"],
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")),
    (["profile", "measure", "--model", "gone.onnx"], ["gone.onnx", "no such file"]),
    (["search", "--budget", "50ms", "--out", "s3:/team/runs"], ["looks like a URL without its '//'", "s3://team/runs"]),
    (["search", "--budget", "50ms", "--address", "ray://127.0.0.1:1"], ["cannot join the Ray cluster", "refused"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needles):
    spaces = _spaces(tmp_path)
    args = [a.format(**{k: str(v) for k, v in spaces.items()}) for a in args]
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_space_init_writes_a_space_that_loads_back(tmp_path):
    proc = cli("space", "init", "--model", "builtin:demo", "--high", "0.6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["groups"]["stem.0"]["high"] == 0.6
    assert "layer1.0.conv2" in data["groups"]["stem.0"]["members"]
    from autoprune.space.space import SearchSpace

    (tmp_path / "s.yaml").write_text(proc.stdout)
    assert len(SearchSpace.load(tmp_path / "s.yaml").groups) == 9


def test_profile_list_shows_the_registry(tmp_path):
    proc = cli("profile", "list", cwd=tmp_path)
    assert proc.returncode == 0 and "cpu-default" in proc.stdout


def test_profile_measure_on_a_model_and_an_onnx_file(tmp_path):
    from autoprune.latency.onnx import export_onnx
    from tests.helpers import tiny_resnet

    tiny = str(ROOT / "tests/profiles/tiny.yaml")
    proc = cli("profile", "measure", "--model", "tests.helpers:tiny_resnet", "--profile", tiny, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("p50 ") and "95 % CI" in proc.stdout and "spread" in proc.stdout
    assert "x the anchor model" in proc.stdout and "worker processes" in proc.stdout  # tiny.yaml: pooled
    onnx = export_onnx(tiny_resnet(), tmp_path / "m.onnx", input_shape=(1, 8, 8), batch_size=1, dynamic_batch=True)
    proc = cli("profile", "measure", "--model", str(onnx), "--profile", tiny, "--method", "single", cwd=tmp_path)
    assert proc.returncode == 0 and "per batch of 16 on tiny (median of 5 runs" in proc.stdout
    assert "95 % CI" not in proc.stdout  # one process has no confidence interval to give
    proc = cli("profile", "measure", "--model", str(onnx), "--profile", tiny, "--method", "fastest", cwd=tmp_path)
    assert proc.returncode == 2 and "method 'fastest' is unknown; choose pooled or single" in proc.stderr


def test_profile_build_table_writes_a_table_and_reports_its_error(tmp_path):
    tiny = str(ROOT / "tests/profiles/tiny.yaml")
    proc = cli("profile", "build-table", "--model", "tests.helpers:tiny_resnet", "--profile", tiny,
               "--out", "t.yaml", "--check", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "predicted against measured on tiny: median" in proc.stdout
    assert "latency_table:" in proc.stdout
    from autoprune.latency.table import LatencyTable

    assert len(LatencyTable.load(tmp_path / "t.yaml").layers) == 7


def test_sensitivity_writes_csv_plot_and_a_narrowed_space(tmp_path):
    import pandas as pd

    from autoprune.space.space import SearchSpace
    from tests.conftest import TINY_PROFILE

    proc = cli("sensitivity", "--model", "tests.helpers:tiny_resnet", "--profile", str(TINY_PROFILE), "--ratios",
               "0.5,0.75", "--max-drop", "0.02", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    space = SearchSpace.load(tmp_path / "space.yaml")
    assert set(table["group"]) == set(space.groups) and len(table) == 2 * len(space.groups)
    assert (table["latency_p50_ms"] > 0).all() and table["accuracy"].between(0, 1).all()
    for name, g in space.groups.items():
        within = table[(table["group"] == name) & (table["accuracy_drop"] <= 0.02)]["ratio"]
        assert g.high == pytest.approx(min(0.7, within.max()) if len(within) else g.low)
    assert (tmp_path / "sensitivity.png").stat().st_size > 10_000


def test_sparsify_reports_sparsity_sizes_and_dense_latency(tmp_path):
    import torch
    import yaml

    from autoprune.load.models import load_model
    from tests.conftest import TINY_PROFILE

    proc = cli("sparsify", "--model", "tests.helpers:tiny_resnet", "--profile", str(TINY_PROFILE), "--sparsity", "0.75",
               "--epochs", "0.2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = yaml.safe_load((tmp_path / "report.yaml").read_text())
    dense, sparse = report["size"]["dense"], report["size"]["sparse"]
    assert sparse["sparsity"] == pytest.approx(0.75, abs=1e-3) and dense["sparsity"] < 0.01
    assert sparse["onnx_gzip_bytes"] < dense["onnx_gzip_bytes"] and sparse["dense_bytes"] == dense["dense_bytes"]
    assert report["latency"]["dense_p50_ms"] > 0 and report["latency"]["sparse_p50_ms"] > 0
    assert 0 <= report["accuracy"]["sparse"] <= 1
    assert "no speedup" in report["latency"]["note"]
    model = load_model(str(tmp_path / "model.pt"))  # loads back into the original architecture
    w = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))])
    assert float((w == 0).float().mean()) == pytest.approx(0.75, abs=1e-3)
    bad = cli("sparsify", "--sparsity", "1.5", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "in [0, 1)" in bad.stderr and not (tmp_path / "bad").exists()


def test_a_criterion_from_the_cli_reaches_the_engine(tmp_path):
    """``--criterion`` through a command that really prunes (each group alone at 50 %), with the
    criterion that needs the most (gradients of the run's loss); every registered criterion meets
    its contract in-process (tests/test_criteria.py)."""
    import pandas as pd

    from autoprune.space.space import SearchSpace
    from tests.conftest import TINY_PROFILE

    proc = cli("sensitivity", "--model", "tests.helpers:tiny_resnet", "--profile", str(TINY_PROFILE), "--ratios", "0.5",
               "--criterion", "taylor", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    assert len(table) == 4 and table["accuracy"].between(0, 1).all() and (table["macs"] > 0).all()
    assert SearchSpace.load(tmp_path / "space.yaml").criterion == "taylor"


def test_the_installed_command_in_a_fresh_interpreter(tmp_path):
    """The one subprocess smoke test: ``python -m autoprune.cli`` as a user runs it, good and bad input."""
    bad = cli_process("search", "--budget", "50parsecs", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: budget '50parsecs'") and "Traceback" not in bad.stderr
    assert not (tmp_path / "runs").exists()


def test_usage_errors_and_help(tmp_path):
    usage = cli("search", "--bogus", cwd=tmp_path)
    assert usage.returncode == 2 and "No such option: --bogus" in usage.stderr
    typed = cli("search", "--trials", "many", cwd=tmp_path)
    assert typed.returncode == 2 and "--trials" in typed.stderr
    helped = cli("search", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "[default: 50ms]" in helped.stdout  # the API's default, read off search()
    assert not (tmp_path / "runs").exists()


# (CLI table, module, function): every default the CLI shows is the API function's own.
_DEFAULTS = [("SEARCH", "autoprune.study.run", "search"), ("APPLY", "autoprune.commands.apply", "apply"),
             ("SENS", "autoprune.commands.sensitivity", "sensitivity"),
             ("REG", "autoprune.commands.regularize", "regularize"),
             ("SPARSE", "autoprune.commands.sparsify", "sparsify"), ("SPACE", "autoprune.commands.space", "space_init"),
             ("MEASURE", "autoprune.commands.profile", "profile_measure"),
             ("TABLE", "autoprune.commands.profile", "profile_build_table"),
             ("CALIBRATE", "autoprune.commands.profile", "profile_calibrate"), ("RUNS", "autoprune.commands.runs", "runs")]


@pytest.mark.parametrize(("table", "module", "function"), _DEFAULTS)
def test_the_cli_defaults_read_from_source_are_the_api_signatures(table, module, function):
    import importlib
    import inspect

    from autoprune import cli as cli_module

    fn = getattr(importlib.import_module(module), function)
    expected = {n: p.default for n, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert getattr(cli_module, table) == expected


def test_help_and_a_bad_argument_answer_before_the_heavy_imports(tmp_path):
    """``--help``, a mistyped budget or option, and a profile whose ONNX Runtime provider this machine
    lacks never import torch, Ray, pandas or Optuna (seconds)."""
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: missing\nprovider: NoSuchExecutionProvider\nbatch_size: 1\nmethod: single\n")
    probe = ("import sys\nfrom autoprune.cli import main\n"
             "codes = [main(['--help']), main(['search', '--help']), main(['search', '--budget', '5parsecs']),"
             " main(['search', '--budget', '50ms', '--seed-plans', 'magic']),"
             " main(['search', '--budget', '50ms', '--profile', 'tpu-v9']),"
             f" main(['search', '--budget', '50ms', '--profile', {str(missing)!r}])]\n"
             "print(codes, sorted(m for m in ('torch', 'ray', 'pandas', 'optuna') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 2, 2, 2, 2] []", done.stdout + done.stderr
    assert "seed plan 'magic' is unknown" in done.stderr and "'tpu-v9'" in done.stderr
    assert "needs ONNX Runtime provider NoSuchExecutionProvider, which this machine lacks" in done.stderr


def test_an_out_that_cannot_hold_runs_and_gpus_this_machine_lacks_are_refused_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("")
    as_file = cli("search", "--budget", "50ms", "--out", str(tmp_path / "afile"), cwd=tmp_path)
    assert as_file.returncode == 2 and "is a file, not a directory" in as_file.stderr, as_file.stderr
    under_file = cli("search", "--budget", "50ms", "--out", str(tmp_path / "afile" / "runs"), cwd=tmp_path)
    assert under_file.returncode == 2 and "cannot be written" in under_file.stderr, under_file.stderr
    gpus = cli("search", "--budget", "50ms", "--gpus-per-trial", "64", "--out", str(tmp_path / "new" / "runs"),
               cwd=tmp_path)
    assert gpus.returncode == 2 and "--gpus-per-trial 64 but this machine has" in gpus.stderr, gpus.stderr
    assert "Traceback" not in as_file.stderr + under_file.stderr + gpus.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the checks left nothing behind


def test_labels_the_model_cannot_score_are_refused_before_any_trial(tmp_path):
    proc = cli("search", "--budget", "1000ms", "--model", "tests.helpers:tiny_resnet",
               "--data", "tests.helpers:labels_one_to_ten_data", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert ("train labels run 1..10, but model 'tests.helpers:tiny_resnet' outputs 10 classes (labels 0..9); "
            "give the model 11 outputs") in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_users_module_in_the_working_directory_reaches_the_trials(tmp_path):
    """``autoprune search --model mymodels:net`` typed where mymodels.py lives, with nothing on
    PYTHONPATH: the driver imports it from the working directory and the trials' Ray workers too."""
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "tests" / "helpers.py", tmp_path / "mymodels.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    profile = ROOT / "tests" / "profiles" / "tiny-single.yaml"
    script = Path(sys.executable).parent / "autoprune"  # the console script: its sys.path lacks the working directory
    command = [str(script)] if script.is_file() else [sys.executable, "-c", "from autoprune.cli import main; main()"]
    done = subprocess.run([*command, "search", "--model", "mymodels:tiny_resnet", "--data", "builtin:digits",
                           "--budget", "1000ms", "--profile", str(profile), "--trials", "1", "--finetune-steps", "2",
                           "--seed-plans", "none", "--confirm", "0", "--out", "runs"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    import pandas as pd

    table = pd.read_csv(next((tmp_path / "runs").glob("*/trials.csv")))
    assert (table["status"] == "completed").all()
