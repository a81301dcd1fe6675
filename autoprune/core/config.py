"""Typed, validated YAML config: every error names the file, the key path and the bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from autoprune.core.errors import AutopruneError, ConfigError
from autoprune.core.files import write_atomic

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def validate(model_cls: type[M], data: Any, *, source: str) -> M:
    """Build ``model_cls`` from ``data``; a failure becomes one ConfigError naming key and value."""
    if not isinstance(data, dict):
        raise ConfigError(file=source, key="", value=data, expected="expected a mapping of keys")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # pydantic appends validator names (e.g. "function-after") to loc; keep real keys only.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or "[" not in str(p) and "-" not in str(p))
        value = _lookup(data, loc) if err["type"] != "missing" else "<missing>"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(model_cls, loc[:-1]))
            expected = f"unknown key; allowed keys: {allowed}" if allowed else "unknown key"
        else:
            expected = err["msg"].removeprefix("Value error, ")
        raise ConfigError(file=source, key=_key_path(loc), value=value, expected=expected) from None


def _allowed_keys(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    cls: Any = model_cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cls = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if cls is None:
            return []
    return sorted(getattr(cls, "model_fields", {}))


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise AutopruneError(f"{p}: no such file; pass the path of an existing YAML file")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AutopruneError(f"{p}: not valid YAML{where}; fix the syntax") from None


def load(model_cls: type[M], path: str | Path) -> M:
    """Read and validate a YAML config file."""
    return validate(model_cls, read_yaml(path), source=str(path))


def dump(obj: BaseModel | dict[str, Any], path: str | Path, *, header: str = "") -> Path:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return write_atomic(path, header + yaml.safe_dump(data, sort_keys=False))
