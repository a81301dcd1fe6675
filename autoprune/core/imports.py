"""``package.module:function`` specs (user models, data, metrics, losses) imported with clear errors."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from autoprune.core.errors import AutopruneError
from autoprune.core.usercode import UserCodeError, UserFunction, describe_exception


def import_callable(spec: str, *, what: str) -> UserFunction:
    """Import ``package.module:function``; errors say which part was missing. The function comes back
    guarded (``UserFunction``): what it raises when called is a one-line ``UserCodeError``."""
    module_name, _, attr = spec.partition(":")
    _with_working_directory()
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module failed while it was imported
        if isinstance(exc, ModuleNotFoundError) and exc.name and module_name.startswith(exc.name):
            # the module itself is not there (not one it imports): a wrong name or path, no code of the user's ran
            raise AutopruneError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); check the name "
                                 "and that its directory is on PYTHONPATH") from None
        raise UserCodeError(f"{what} {spec!r}: importing module {module_name!r} raised "
                            f"{describe_exception(exc)}") from exc
    _share_with_workers(module, module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AutopruneError(f"{what} {spec!r}: module {module_name!r} has no function {attr!r}")
    return UserFunction(fn, spec=spec, what=what)


def _with_working_directory() -> None:
    """``mypkg.models:net`` typed in the project's directory imports from there, as ``python -m`` and
    uvicorn do (a console script's sys.path holds its own bin directory, not the working one)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _share_with_workers(module, module_name: str) -> None:
    """The directory a user's module was imported from, on PYTHONPATH for the processes started after
    (Ray's workers unpickle the model and data by that module): the driver's sys.path is not theirs."""
    file = getattr(module, "__file__", None)
    if not file:
        return
    root = Path(file).resolve().parent
    for _ in range(module_name.count(".") + (Path(file).name == "__init__.py")):
        root = root.parent
    if {"site-packages", "dist-packages"} & set(root.parts):  # installed: every process finds it
        return
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(root) not in paths and os.path.realpath(root) not in map(os.path.realpath, paths):
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, str(root)])
