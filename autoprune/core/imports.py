"""``package.module:function`` specs (user models, data, metrics, losses) imported with clear errors."""

from __future__ import annotations

import importlib

from autoprune.core.errors import AutopruneError


def import_callable(spec: str, *, what: str):
    """Import ``package.module:function``; errors say which part was missing."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AutopruneError(f"{what} {spec!r}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AutopruneError(f"{what} {spec!r}: module {module_name!r} has no function {attr!r}")
    return fn
