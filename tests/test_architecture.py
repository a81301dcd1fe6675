"""The package's shape: import-linter's contracts in pyproject.toml hold (imports run down the
layers, no cycles between sibling modules or packages), and the public API keeps its names."""

from __future__ import annotations

import pytest
from importlinter.application.use_cases import SUCCESS, lint_imports
from importlinter.configuration import configure

import autoprune
from tests.helpers import ROOT


def test_import_contracts_are_kept(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)  # import-linter reads pyproject.toml from the working directory
    configure()  # what the lint-imports command does first
    result = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_logo=True, cache_dir=None)
    out = capsys.readouterr().out
    assert "2 kept, 0 broken" in out, out
    assert result == SUCCESS


def test_public_api_is_exported() -> None:
    for name in ("search", "apply", "sensitivity", "sparsify", "regularize", "space_init", "profile_measure",
                 "profile_build_table", "Plan", "SearchSpace", "HardwareProfile", "Budget", "load_model"):
        assert name in autoprune.__all__ and hasattr(autoprune, name)
    assert callable(autoprune.search) and callable(autoprune.apply)
    assert sorted(autoprune.__all__) == sorted(autoprune._EXPORTS)
    for name in autoprune.__all__:
        assert getattr(autoprune, name).__name__ == name


def test_importing_one_module_does_not_import_the_world() -> None:
    """A Ray actor that unpickles the latency cache imports one stdlib-only module, not torch."""
    import subprocess
    import sys

    code = "import sys, autoprune.latency.cache; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_pruning_engine_leaves_timm_unimported_and_importable() -> None:
    """Torch-Pruning imports timm for an operation counter autoprune does not use (with torchvision and
    torch._dynamo, 2 s of every trial process's start); the engine hides it for that one import only."""
    import subprocess
    import sys

    pytest.importorskip("timm")
    code = ("import sys, autoprune.prune.engine; print('timm' in sys.modules); "
            "import timm; print(timm.create_model('resnet18', pretrained=False, num_classes=3).fc.out_features)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "3"]
