"""A user's own functions (model, data, metric, loss) run through one guard.

What they raise is the user's error, not autoprune's: it becomes one line naming the function
(``pkg.mod:fn``), the exception and the line of the user's own code where it was raised.
``AUTOPRUNE_DEBUG=1`` (the CLI's ``--traceback``) shows the whole traceback as well.
"""

from __future__ import annotations

import math
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoprune.core.errors import AutopruneError

DEBUG_ENV = "AUTOPRUNE_DEBUG"


def debug() -> bool:
    """Whether whole tracebacks are wanted (``AUTOPRUNE_DEBUG=1``, or the CLI's ``--traceback``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class UserCodeError(AutopruneError):
    """A user's function raised, or returned what autoprune cannot use."""


# Code that is not the user's: autoprune itself, the standard library and installed packages.
_LIBRARY = tuple(str(Path(p).resolve()) for p in {Path(__file__).resolve().parents[1],
                                                  *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))})


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def user_frame(exc: BaseException, *, fn: Callable | None = None) -> str | None:
    """``file:line`` of the deepest frame of ``exc``'s traceback in the user's code: outside autoprune,
    the standard library and installed packages, or in the package of ``fn`` (installed or not)."""
    own = None
    if fn is not None:
        module = getattr(fn, "__module__", None) or ""
        top = sys.modules.get(module.partition(".")[0])
        where = getattr(top, "__file__", None)
        if where:  # a package: its directory; a lone module: its file (not the project around it)
            own = str(Path(where).resolve().parent if hasattr(top, "__path__") else Path(where).resolve())
    found = None
    if isinstance(exc, SyntaxError) and exc.filename:  # raised while compiling the user's file: no frame of its own
        found = f"{_shown(exc.filename)}:{exc.lineno}"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename
        if path.startswith("<"):
            continue
        resolved = str(Path(path).resolve())
        if (own is not None and resolved.startswith(own)) or not resolved.startswith(_LIBRARY):
            found = f"{_shown(path)}:{frame.lineno}"
    return found


def describe_exception(exc: BaseException, *, fn: Callable | None = None) -> str:
    """``TypeError: message (at file:line)``: the exception's type and first line, and where in the
    user's code it was raised (when the traceback reaches it)."""
    text = (exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)).strip()  # the file:line follows
    message = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    where = user_frame(exc, fn=fn)
    return f"{message} (at {where})" if where else message


class UserFunction:
    """A user's function (``pkg.mod:fn``), called through the guard: an exception it raises becomes a
    ``UserCodeError`` naming the function, the exception and the user's line (the original chained,
    for ``--traceback``). Pickles by reference, so it travels to Ray workers."""

    def __init__(self, fn: Callable, *, spec: str, what: str) -> None:
        self.fn, self.spec, self.what = fn, spec, what
        self.__name__ = getattr(fn, "__name__", spec)
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except AutopruneError:
            raise
        except Exception as exc:  # whatever the user's code raises is the user's error
            raise UserCodeError(f"{self.what} {self.spec!r} raised {describe_exception(exc, fn=self.fn)}") from exc

    def __repr__(self) -> str:
        return f"UserFunction({self.what} {self.spec!r})"


def described(value: Any) -> str:
    """What came back, short: ``'abc' (str)``, ``tensor of shape (64,)``, ``None``."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype") and tuple(shape):
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    if text.startswith("<"):  # an object without a repr of its own: its type says more than its address
        return f"a {type(value).__name__}"
    return f"{text[:60]}{'…' if len(text) > 60 else ''} ({type(value).__name__})"


def as_number(value: Any, *, what: str, spec: str, expected: str) -> float:
    """A user's function's result as a finite float: a Python or NumPy number, or a one-element
    tensor; anything else (a string, None, NaN or infinity, a vector) is a ``UserCodeError`` saying what came back."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif hasattr(value, "item") and getattr(value, "size", None) is not None:
        size = value.size if isinstance(value.size, int) else value.numel()  # numpy: attribute; torch: method
        if size == 1:
            item = value.item()
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                number = float(item)
    if number is None:
        raise UserCodeError(f"{what} {spec!r} returned {described(value)}; {expected}")
    if not math.isfinite(number):
        raise UserCodeError(f"{what} {spec!r} returned {'NaN' if math.isnan(number) else number}; {expected}")
    return number
