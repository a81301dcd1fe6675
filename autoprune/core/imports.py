"""``package.module:function`` specs (user models, data, metrics, losses) imported with clear errors."""

from __future__ import annotations

import importlib

from autoprune.core.errors import AutopruneError
from autoprune.core.usercode import UserCodeError, UserFunction, describe_exception


def import_callable(spec: str, *, what: str) -> UserFunction:
    """Import ``package.module:function``; errors say which part was missing. The function comes back
    guarded (``UserFunction``): what it raises when called is a one-line ``UserCodeError``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module failed while it was imported
        if isinstance(exc, ModuleNotFoundError) and exc.name and module_name.startswith(exc.name):
            # the module itself is not there (not one it imports): a wrong name or path, no code of the user's ran
            raise AutopruneError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); check the name "
                                 "and that its directory is on PYTHONPATH") from None
        raise UserCodeError(f"{what} {spec!r}: importing module {module_name!r} raised "
                            f"{describe_exception(exc)}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AutopruneError(f"{what} {spec!r}: module {module_name!r} has no function {attr!r}")
    return UserFunction(fn, spec=spec, what=what)
