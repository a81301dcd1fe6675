"""The search's plain arguments, checked before torch, Ray or pandas are imported.

``search`` calls ``check_search`` first; the CLI calls it before it imports ``search`` at all, so a
mistyped budget, profile or option is one line within a second, not after seconds of imports.
Only pydantic and YAML (profiles) are needed here.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoprune.core.errors import AutopruneError
from autoprune.core.records import BUDGET_RULES, EARLY_STOP, FORMULATIONS
from autoprune.latency.budget import Budget
from autoprune.latency.profiles import HardwareProfile, check_provider, resolve_profile

SEED_PLANS = ("uniform", "global", "latency", "sensitivity")
# ``sensitivity`` costs groups x 3 evaluations before the first trial (over 20 minutes on a
# pretrained EfficientNet-Lite0 on 2 cores): it runs when asked for, or when a table is given.
DEFAULT_SEED_PLANS = "uniform,global,latency"
DEFAULT_TRIALS = 24


@dataclass(frozen=True)
class SearchArguments:
    """What ``check_search`` resolved: the profiles (primary first), budgets bound to them, the trial
    count and the seed plans' names."""

    profiles: tuple[HardwareProfile, ...]
    budgets: tuple[Budget, ...]
    trials: int
    seed_plans: tuple[str, ...]


def positive(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise AutopruneError(f"{name} is {value!r}; it must be an integer >= {minimum}")
    return value


def choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise AutopruneError(f"{name} {value!r} is unknown; choose one of {', '.join(choices)}")
    return value


def check_local_out(out: str | Path | None) -> None:
    """A local ``--out`` is a directory this process can write (or can create): a file there,
    or no permission, is one line now, not a traceback after the baseline. URLs: ``check_out``."""
    from autoprune.core.location import local_path

    scheme, sep, rest = str(out).partition(":")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+", scheme) and not rest.startswith("//"):
        # "s3:/bucket" or "gs:bucket": a URL short of its slashes, which would not go where it was meant
        raise AutopruneError(f"--out {out}: looks like a URL without its '//'; write {scheme}://"
                             f"{rest.lstrip('/')} for the store, or ./{out} for a local directory of that name")
    base = None if out is None else local_path(out)
    if base is None:
        return
    if base.exists() and not base.is_dir():
        raise AutopruneError(f"--out {out}: is a file, not a directory; give the directory where runs go "
                             "(it is created if missing) or a URL (s3://bucket/prefix)")
    missing = [d for d in (base, *base.parents) if not d.exists()]  # deepest first
    try:
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise AutopruneError(f"--out {out}: cannot be written ({exc.strerror or type(exc).__name__}); give a "
                             "directory you can write, or a URL (s3://bucket/prefix)") from None
    finally:  # what the check made goes again: the search makes its run directory when it starts
        for d in missing:
            with contextlib.suppress(OSError):
                d.rmdir()


def check_address(address: str | None) -> None:
    """A ``ray://HOST:PORT`` that refuses connections is said before any work (Ray's client would wait
    30 s first, after the model was loaded)."""
    if not address or not address.startswith("ray://"):
        return
    import socket

    host, _, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10):
            pass
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise AutopruneError(f"cannot join the Ray cluster at --address {address!r} ({why}); check HOST:PORT "
                             "(the head's client port, 10001 by default; `ray start --head` starts one), or "
                             "leave --address out for a local Ray") from None


def check_local_gpus(gpus_per_trial: float, *, address: str | None) -> None:
    """On a local Ray, ``--gpus-per-trial`` needs that many GPUs here (on a cluster, Ray checks its nodes)."""
    if not gpus_per_trial or address is not None or os.environ.get("RAY_ADDRESS"):
        return
    import math

    import torch  # only on this path: the other checks stay free of torch's import

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < math.ceil(gpus_per_trial):
        raise AutopruneError(f"--gpus-per-trial {gpus_per_trial:g} but this machine has {have} GPU(s) torch can use; "
                             "leave it out to fine-tune on CPUs, or join a cluster with GPUs (--address)")


def parse_seed_plans(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``uniform,global`` (or a list) → validated names; ``none`` or empty → ()."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["none"]:
        return ()
    for n in names:
        if n not in SEED_PLANS:
            raise AutopruneError(f"seed plan {n!r} is unknown; choose from {', '.join(SEED_PLANS)} "
                                 "(comma-separated), or none")
    return tuple(dict.fromkeys(names))


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, Path)) else list(value)


def resolve_targets(budget: str | Sequence[str], profile: str | Path | Sequence[str | Path]
                    ) -> tuple[tuple[HardwareProfile, ...], tuple[Budget, ...]]:
    """Profiles (primary first) and budgets bound to them; ``50ms`` binds to the first profile."""
    profiles = [resolve_profile(p) for p in _as_list(profile)]
    if not profiles:
        raise AutopruneError("no profile given; pass --profile NAME (e.g. cpu-default)")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise AutopruneError(f"profiles {names} repeat a name; give each --profile once")
    budgets = [Budget.parse(b) for b in _as_list(budget)]
    if not budgets:
        raise AutopruneError("no budget given; pass --budget, e.g. 50ms or 0.5x@cpu-default")
    budgets = [b if b.profile is not None else b.on(names[0]) for b in budgets]
    for b in budgets:
        if b.profile not in names:
            raise AutopruneError(f"budget {b.text!r} names profile {b.profile!r}, which is not searched; "
                                 f"profiles: {', '.join(names)} (add --profile {b.profile})")
    bound = [b.profile for b in budgets]
    if len(set(bound)) != len(bound):
        raise AutopruneError(f"two budgets for one profile ({', '.join(str(b) for b in budgets)}); "
                             "give at most one budget per profile")
    primary = budgets[0].profile
    profiles.sort(key=lambda p: p.name != primary)  # stable: the primary first, the rest as given
    return tuple(profiles), tuple(budgets)


def check_search(*, budget: str | Sequence[str], profile: str | Path | Sequence[str | Path], trials: int | None,
                 concurrency: int, finetune_steps: int, bn_recalibration: int, confirm: int, confirm_seeds: int,
                 landing_moves: int, early_stop: str, budget_confidence: str, formulation: str, sampler: str,
                 seed_plans: str | Sequence[str] | None, sensitivity: str | Path | None,
                 address: str | None = None, out: str | Path | None = None,
                 gpus_per_trial: float = 0.0) -> SearchArguments:
    """Every argument of a new search that can be checked without the model, the data or Ray.
    (The sampler's name is checked against its registry by ``search``: that needs Optuna.) A profile
    timed on this machine (local Ray, no ``ray_resources``, no latency table) needs its ONNX Runtime
    provider here; on a cluster (``address``) the trials' nodes may have what the driver lacks."""
    trials = DEFAULT_TRIALS if trials is None else trials
    profiles, budgets = resolve_targets(budget, profile)
    if address is None and not os.environ.get("RAY_ADDRESS"):  # a local Ray: trials time on this machine
        for p in profiles:
            if not p.ray_resources and not p.latency_table:
                check_provider(p)
    positive("trials", trials)
    positive("concurrency", concurrency)
    positive("finetune_steps", finetune_steps, minimum=0)
    positive("bn_recalibration", bn_recalibration, minimum=0)
    positive("confirm", confirm, minimum=0)
    positive("confirm_seeds", confirm_seeds, minimum=1)
    positive("landing_moves", landing_moves, minimum=0)
    choice("early_stop", early_stop, EARLY_STOP)
    if early_stop == "bn" and bn_recalibration == 0:
        raise AutopruneError("early_stop 'bn' ranks plans by their accuracy after adaptive-BN recalibration; "
                             "give bn_recalibration > 0 (default 10) or choose early_stop 'asha'")
    choice("budget_confidence", budget_confidence, BUDGET_RULES)
    choice("formulation", formulation, FORMULATIONS)
    if seed_plans is None:  # the default; a sensitivity table given is used, not recomputed
        seed_plans = DEFAULT_SEED_PLANS + (",sensitivity" if sensitivity is not None else "")
    names = parse_seed_plans(seed_plans)
    if sampler == "local" and formulation != "budget":
        raise AutopruneError("sampler 'local' moves channels between groups at equal latency; it needs "
                             "--formulation budget (one objective), not front")
    check_local_gpus(gpus_per_trial, address=address)
    check_local_out(out)
    check_address(address)
    return SearchArguments(profiles=profiles, budgets=budgets, trials=trials, seed_plans=names)
