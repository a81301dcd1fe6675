"""One registry shape for every pluggable kind (criteria, samplers, penalties, hardware profiles).

Like timm's ``@register_model``: entries are registered by a decorator (or a call) where they are
defined, looked up by name with a one-line error listing the choices, and listed with ``names()``.
A contract test is generated from each registry (tests/test_registries.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from autoprune.core.errors import AutopruneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → entry. ``discover`` registers entries found elsewhere (e.g. YAML files) on first use."""

    every: ClassVar[list[Registry]] = []  # every registry made, with ``owner``: the contract test is generated from them

    def __init__(self, kind: str, *, discover: Callable[[Registry[T]], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._discover = discover
        self.owner = sys._getframe(1).f_globals.get("__name__", "")  # the module that made it
        Registry.every.append(self)

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """``@REG.register("name")`` on a definition, or ``REG.register("name", entry)``."""
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def _ensure(self) -> dict[str, T]:
        if self._discover is not None:
            discover, self._discover = self._discover, None
            discover(self)
        return self._entries

    def get(self, name: str) -> T:
        entries = self._ensure()
        if name not in entries:
            raise AutopruneError(f"{self.kind} {name!r} is unknown; choose one of: {', '.join(self.names()) or '(none)'}")
        return entries[name]

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._ensure())

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._ensure().items()))

    def __contains__(self, name: object) -> bool:
        return name in self._ensure()

    def __len__(self) -> int:
        return len(self._ensure())
