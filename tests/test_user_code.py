"""A user's own model, data, metric and loss functions, each wrong in one way: one line naming the
function, the exception and the user's file:line, exit code 2, before any work; a failure that shows
only in trials is a failed trial with its reason. Also: files a teammate can read (the umask), groups
checked over their whole grid, bounded waits (the engine's group search, a Ray that does not start)."""

from __future__ import annotations

import inspect
import os
import stat

import pandas as pd
import pytest
import torch
from torch import nn

import tests.user_functions as uf
from autoprune.core.files import write_atomic
from tests.conftest import TINY_SINGLE
from tests.helpers import TINY_GROUPS, cli, cli_process

F = "tests.user_functions"
SEARCH = ("search", "--budget", "0.9x", "--profile", str(TINY_SINGLE), "--trials", "2", "--seed-plans", "uniform")


def line_of(fn, text: str) -> str:
    """``tests/user_functions.py:N``: the line of ``fn`` that holds ``text``."""
    lines, first = inspect.getsourcelines(fn)
    return f"tests/user_functions.py:{first + next(i for i, ln in enumerate(lines) if text in ln)}"


RAISES = [  # (options, what the line must hold)
    (["--model", f"{F}:model_that_raises"],
     ["model 'tests.user_functions:model_that_raises' raised KeyError: 'width'", line_of(uf.model_that_raises, "width")]),
    (["--model", f"{F}:model_whose_forward_raises", "--data", f"{F}:data"],
     ["model 'tests.user_functions:model_whose_forward_raises' failed on inputs of shape (1, 8, 8)",
      "RuntimeError: this forward pass is broken", line_of(uf._BrokenForward.forward, "raise RuntimeError")]),
    (["--model", f"{F}:model", "--data", f"{F}:data_that_raises"],
     ["data 'tests.user_functions:data_that_raises' raised FileNotFoundError: /datasets/train not found",
      line_of(uf.data_that_raises, "FileNotFoundError")]),
    (["--model", f"{F}:model", "--data", f"{F}:data", "--metric", f"{F}:metric_that_raises"],
     ["metric 'tests.user_functions:metric_that_raises' raised NameError", line_of(uf.metric_that_raises, "undefined")]),
    (["--model", f"{F}:model", "--data", f"{F}:data", "--loss", f"{F}:loss_that_raises"],
     ["loss 'tests.user_functions:loss_that_raises' raised ValueError", line_of(uf.loss_that_raises, "cross_entropy")]),
]

WRONG_RESULT = [  # (options, what the line must hold): what came back, and what was expected
    (["--data", f"{F}:data_one_dataset"], ["returned a TensorDataset; it must return two datasets"]),
    (["--data", f"{F}:data_of_other_shapes"],
     ["train inputs have shape (1, 8, 8) but validation inputs (1, 6, 6)"]),
    (["--metric", f"{F}:metric_nan"], ["metric 'tests.user_functions:metric_nan' returned NaN; a metric returns one number"]),
    (["--metric", f"{F}:metric_string"], ["returned 'high' (str); a metric returns one number"]),
    (["--metric", f"{F}:metric_one_argument"],
     ["has the signature metric_one_argument(model), but autoprune calls it as fn(model, loader)"]),
    (["--loss", f"{F}:loss_one_argument"],
     ["has the signature loss_one_argument(outputs), but autoprune calls it as fn(outputs, targets)"]),
    (["--loss", f"{F}:loss_per_sample"], ["returned a Tensor of shape (32,); a loss returns a scalar tensor"]),
    (["--loss", f"{F}:loss_float"], ["returned 1.0 (float); a loss returns a scalar tensor"]),
]


def _one_line(proc, expected: list[str], *, tmp_path) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "runs").exists()  # refused before any work: no run directory


def _ids(cases: list) -> list[str]:
    return [options[-1].rpartition(":")[2] for options, _ in cases]


@pytest.mark.parametrize(("options", "expected"), RAISES, ids=_ids(RAISES))
def test_a_user_function_that_raises_is_one_line_naming_it_the_exception_and_its_line(options, expected, tmp_path):
    proc = cli(*SEARCH, *options, "--out", str(tmp_path / "runs"))
    _one_line(proc, expected, tmp_path=tmp_path)


@pytest.mark.parametrize(("options", "expected"), WRONG_RESULT, ids=_ids(WRONG_RESULT))
def test_what_a_user_function_returns_is_checked_before_any_work(options, expected, tmp_path):
    base = {"--model": f"{F}:model", "--data": f"{F}:data"}
    base.update(dict(zip(options[::2], options[1::2], strict=True)))
    proc = cli(*SEARCH, *[a for kv in base.items() for a in kv], "--out", str(tmp_path / "runs"))
    _one_line(proc, expected, tmp_path=tmp_path)


def test_traceback_shows_the_whole_story_and_still_ends_with_the_line(tmp_path):
    proc = cli(*SEARCH, "--model", f"{F}:model_that_raises", "--traceback", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr and "KeyError: 'width'" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("error: model 'tests.user_functions:model_that_raises'")
    assert "AUTOPRUNE_DEBUG" not in os.environ  # an in-process caller keeps its own setting


def test_a_user_module_that_does_not_import_names_its_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "broken_user_model.py").write_text("import torch\n\ndef model(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    proc = cli(*SEARCH, "--model", "broken_user_model:model", "--out", str(tmp_path / "runs"))
    _one_line(proc, ["model 'broken_user_model:model': importing module 'broken_user_model' raised SyntaxError",
                     "broken_user_model.py:3"], tmp_path=tmp_path)


def test_a_metric_that_gives_nan_on_pruned_models_fails_those_trials_and_the_search_says_so(ray_local, tmp_path):
    space = tmp_path / "space.yaml"  # every plan prunes the stem
    space.write_text("round_to: 8\ngroups:\n" + "".join(f"  {g}: {{low: 0.5, high: 0.5, step: 0.5}}\n" for g in TINY_GROUPS))
    proc = cli("search", "--budget", "1000ms", "--model", f"{F}:model", "--data", f"{F}:data", "--metric",
               f"{F}:metric_nan_when_pruned", "--space", str(space), "--profile", str(TINY_SINGLE), "--trials", "2",
               "--finetune-steps", "2", "--seed-plans", "uniform", "--no-precheck", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 1, proc.stderr
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "metric 'tests.user_functions:metric_nan_when_pruned' returned NaN" in error and "(2 of 2)" in error
    (run_dir,) = (tmp_path / "runs").iterdir()
    trials = pd.read_csv(run_dir / "trials.csv")  # nothing computed is lost: each trial and its reason
    assert list(trials["status"]) == ["failed", "failed"]
    assert trials["error"].str.contains("returned NaN").all()
    assert "2 trial(s) failed; the most common cause" in proc.stdout


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_are_written_with_the_mode_the_umask_gives(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "shared" / "trials.csv", "trial\n")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == mode


class HeadsOfSixteen(nn.Module):
    """Splits a layer's channels into heads of a fixed size, as attention code does: a width that is not
    a multiple of 16 breaks the forward pass (of 64 channels, 32 run, 56 do not)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.proj = nn.Conv2d(16, 64, 1)
        self.fc = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(torch.relu(self.stem(x)))
        if h.shape[1] % 16:
            raise RuntimeError(f"{h.shape[1]} channels do not split into heads of 16")
        return self.fc(h.mean((2, 3)))


def test_a_group_is_kept_only_when_every_ratio_of_its_grid_runs():
    from autoprune.space.space import init_space

    space = init_space(HeadsOfSixteen().eval(), input_shape=(1, 8, 8), high=0.5, step=0.125)
    assert "proj" not in space.groups and "stem" in space.groups
    assert "pruning it at 0.125 breaks the model" in space.left_out["proj"]  # at 0.5 it ran
    assert "do not split into heads of 16" in space.left_out["proj"]


def test_a_group_whose_analysis_does_not_end_is_left_out_with_the_reason(monkeypatch):
    import torch_pruning as tp

    from autoprune.prune import groups as groups_mod
    from tests.helpers import TinyResNet

    model = TinyResNet().eval()
    hangs = model.block2.conv1
    original = tp.DependencyGraph.get_pruning_group

    def get_pruning_group(self, module, fn, idxs):
        while module is hangs:  # Torch-Pruning's search that never returned (a small Llama)
            pass
        return original(self, module, fn, idxs)

    monkeypatch.setattr(tp.DependencyGraph, "get_pruning_group", get_pruning_group)
    monkeypatch.setattr(groups_mod, "GROUP_ANALYSIS_LIMIT_S", 0.5)
    monkeypatch.setattr(groups_mod, "_TOO_SLOW", {})
    skipped: dict[str, str] = {}
    found = groups_mod.find_groups(model, input_shape=(1, 8, 8), skipped=skipped)
    assert "block2.conv1" in skipped and "took over 0.5 s" in skipped["block2.conv1"]
    assert {g.name for g in found} >= {"stem.0", "block1.conv1"}


def test_a_ray_that_cannot_start_is_one_line_with_what_to_try(tmp_path):
    env_before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(tmp_path / "not-a-dir" / "x")
    (tmp_path / "not-a-dir").write_text("a file where Ray wants a directory")
    try:
        proc = cli_process(*SEARCH, "--model", "tests.helpers:tiny_resnet", "--out", str(tmp_path / "runs"))
    finally:
        if env_before is None:
            os.environ.pop("RAY_TMPDIR")
        else:
            os.environ["RAY_TMPDIR"] = env_before
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "could not start a local Ray" in lines[0] and "ray stop" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
