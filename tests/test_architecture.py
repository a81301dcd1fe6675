"""The package's shape: import-linter's contracts in pyproject.toml hold (imports run down the
layers, no cycles between sibling modules or packages), and the public API keeps its names."""

from __future__ import annotations

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
