"""An API function's keyword defaults, read from its module's source without importing the module.

The CLI's defaults are the Python API's; reading them off ``inspect.signature`` would import torch,
Ray and pandas before ``--help`` could answer. A default is a literal, or a name bound to a literal
at the top of that module or of a module it imports it from (``DEFAULT_PROFILE``).
tests/test_cli.py checks every command's defaults against ``inspect.signature``.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from typing import Any


@cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"no source for module {module!r}")
    with open(spec.origin, encoding="utf-8") as f:
        return ast.parse(f.read(), filename=spec.origin)


def _constant(module: str, name: str) -> Any:
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _value(module, node.value)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return _value(module, node.value)
        if isinstance(node, ast.ImportFrom) and node.module and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return _constant(node.module, original)
    raise ValueError(f"{module}: {name} is not a module-level constant")


def _value(module: str, node: ast.expr | None) -> Any:
    if node is None:
        raise ValueError(f"{module}: a default without a value")
    if isinstance(node, ast.Name):
        return _constant(module, node.id)
    return ast.literal_eval(node)


def defaults(module: str, function: str) -> dict[str, Any]:
    """The keyword defaults of ``module.function``, as ``inspect.signature`` would give them."""
    fn = next((n for n in _tree(module).body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    if fn is None:
        raise ValueError(f"{module} defines no function {function!r}")
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    out = {a.arg: _value(module, d) for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults,
                                                     strict=True)}
    out |= {a.arg: _value(module, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None}
    return out
