"""``autoprune profile measure``, ``probe``, ``calibrate`` and ``build-table``, as Python functions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoprune.core.errors import AutopruneError
from autoprune.latency.anchor import anchor_reference, forget_stored
from autoprune.latency.measure import latency_for, measure_on_profile
from autoprune.latency.onnx import LatencyStats
from autoprune.latency.profiles import DEFAULT_PROFILE, resolve_profile
from autoprune.latency.reference import Reference
from autoprune.latency.table import LatencyTable
from autoprune.latency.table_build import build_table, prediction_error, random_plans
from autoprune.latency.widths import WidthProbe, probe_widths, store_multiple
from autoprune.load.inputs import resolve_input_shape, within_vocabulary
from autoprune.load.models import architecture_fingerprint, load_model
from autoprune.prune.engine import prune
from autoprune.space.space import SearchSpace, init_space


def profile_measure(*, model: str, profile: str = DEFAULT_PROFILE, data: str = "builtin:digits",
                    input_shape: str | None = None, method: str | None = None) -> LatencyStats:
    """Latency of any model on a profile: a model spec, an applied ``model.pt``, or an ``.onnx`` file.

    A pooled profile times it against the shipped anchor model (calibrated once on this machine);
    ``method`` overrides the profile's (``pooled`` or ``single``).
    """
    hw = resolve_profile(profile)
    if method is not None:
        if method not in ("pooled", "single"):
            raise AutopruneError(f"method {method!r} is unknown; choose pooled or single")
        hw = hw.model_copy(update={"method": method})
    if model.endswith(".onnx"):
        if not Path(model).is_file():
            raise AutopruneError(f"model {model!r}: no such file; pass an existing .onnx file")
        return measure_on_profile(model, hw)
    net = load_model(model)
    return latency_for(net, hw, input_shape=within_vocabulary(resolve_input_shape(data=data, input_shape=input_shape, model=model), net),
                       arch_key=architecture_fingerprint(net))


def profile_calibrate(*, profile: str = DEFAULT_PROFILE) -> Reference:
    """Time the anchor model on ``profile`` again, over many processes, and forget the models' stored
    figures on it (a run's unpruned model is measured again in its next search): every pooled figure on
    this machine that has no unpruned model at hand (``profile measure``, a run's baseline) is scaled by it."""
    hw = resolve_profile(profile)
    forget_stored(hw)
    return anchor_reference(hw, recalibrate=True)


@dataclass(frozen=True)
class ProbeReport:
    probes: list[WidthProbe]
    multiple: int  # what to round pruned widths to on this target (the conv sweep's; CNNs are most of what is pruned)
    plot: Path | None  # widths.png, when ``out`` was given
    csv: Path | None
    stored: Path | None  # where this machine keeps the multiple for later searches (None: not stored)


def profile_probe(*, profile: str = DEFAULT_PROFILE, layers: str = "conv,linear", out: str | Path | None = None,
                  store: bool = True, on_layer: Callable[[str], None] | None = None) -> ProbeReport:
    """Time chains of convolutions and linear layers over a sweep of widths on ``profile`` and report
    the multiple the target computes widths in. ``store``: keep it for this machine, so that a search
    on the profile (without its own ``channel_block``) rounds a generated space's widths to it and
    its latency model counts in it. ``out``: a folder for ``widths.csv`` and ``widths.png``."""
    from autoprune.latency.profiles import check_provider

    hw = resolve_profile(profile)
    kinds = [k.strip() for k in layers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("conv", "linear")]
    if unknown or not kinds:
        raise AutopruneError(f"layers {layers!r}: {', '.join(unknown) or 'none given'} not known; use conv, linear or both")
    check_provider(hw)
    probes = probe_widths(hw, layers=kinds, on_layer=on_layer)
    multiple = next((p.multiple for p in probes if p.layer == "conv"), probes[0].multiple)
    stored = store_multiple(hw, probes, multiple=multiple) if store else None
    plot = csv = None
    if out is not None:
        import pandas as pd

        from autoprune.core.files import write_atomic
        from autoprune.report.plots import plot_widths

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{"layer": p.layer, "width": w, "ms": ms} for p in probes for w, ms in p.ms.items()]
        csv = write_atomic(folder / "widths.csv", pd.DataFrame(rows).to_csv(index=False))
        plot = plot_widths(probes, folder / "widths.png", profile=hw.name)
    return ProbeReport(probes=probes, multiple=multiple, plot=plot, csv=csv, stored=stored)


@dataclass(frozen=True)
class TableReport:
    table: LatencyTable
    path: Path
    checks: list[tuple[float, float]]  # (predicted, measured) p50 ms for random plans

    @property
    def errors(self) -> list[float]:
        return [abs(p - m) / m for p, m in self.checks]


def profile_build_table(*, model: str, profile: str = DEFAULT_PROFILE, space: str | Path | None = None, data: str = "builtin:digits",
                        input_shape: str | None = None, out: str | Path | None = None, check: int = 10,
                        seed: int = 0, on_progress: Callable[[str, int, int], None] | None = None) -> TableReport:
    """Measure a latency table for ``model`` on ``profile``; check it against ``check`` random plans."""
    hw = resolve_profile(profile)
    net = load_model(model)
    shape = within_vocabulary(resolve_input_shape(data=data, input_shape=input_shape, model=model), net)
    sp = SearchSpace.load(space) if space is not None else init_space(net, input_shape=shape, model_name=model)
    if space is not None:
        sp.check_against(net, input_shape=shape, source=str(space))
    table = build_table(net, input_shape=shape, profile=hw, space=sp, model_name=model, on_progress=on_progress)
    slug = re.sub(r"[^\w.-]+", "_", Path(model).stem if model.endswith((".pt", ".pth")) else model)
    path = table.save(Path(out) if out is not None else Path("tables") / f"{slug}@{hw.name}.yaml")
    pruned = [prune(net, p, input_shape=shape) for p in random_plans(sp, check, seed=seed)]
    checks = prediction_error(table, pruned, profile=hw, input_shape=shape) if check else []
    return TableReport(table=table, path=path, checks=checks)


def describe_errors(errors: list[float]) -> str:
    if not errors:
        return "not checked"
    arr = np.asarray(errors)
    return f"median {np.median(arr):.1%}, max {arr.max():.1%} over {len(arr)} random plans"
