"""The command line: each command parses, calls the Python function of the same name, and prints.

Defaults are the Python API's (read off each function's signature), so the two never disagree;
options shared by several commands are declared once below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from autoprune.core import signature
from autoprune.core.errors import AutopruneError, SearchInterrupted

# The API functions are imported inside each command: ``--help`` and a usage error answer before
# torch, Ray and pandas are imported (seconds); the defaults are read from their source instead.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search per-layer channel-prune ratios under a latency budget, then apply the best plan.")
space_app = typer.Typer(no_args_is_help=True, help="Search spaces: which groups are searched, and over which ratios.")
profile_app = typer.Typer(no_args_is_help=True, help="Hardware profiles: where latency is measured.")
app.add_typer(space_app, name="space")
app.add_typer(profile_app, name="profile")


def defaults(module: str, function: str) -> dict[str, Any]:
    """The keyword defaults of an API function: the CLI's defaults."""
    return signature.defaults(module, function)


SEARCH = defaults("autoprune.study.run", "search")
APPLY = defaults("autoprune.commands.apply", "apply")
SENS = defaults("autoprune.commands.sensitivity", "sensitivity")
REG = defaults("autoprune.commands.regularize", "regularize")
SPARSE = defaults("autoprune.commands.sparsify", "sparsify")
SPACE = defaults("autoprune.commands.space", "space_init")
MEASURE = defaults("autoprune.commands.profile", "profile_measure")
TABLE = defaults("autoprune.commands.profile", "profile_build_table")
CALIBRATE = defaults("autoprune.commands.profile", "profile_calibrate")
PROBE = defaults("autoprune.commands.profile", "profile_probe")
RUNS = defaults("autoprune.commands.runs", "runs")


# Options several commands share.
Model = Annotated[str, typer.Option(help="builtin:demo, torchvision:NAME[?weights=DEFAULT&num_classes=N], timm:NAME[?pretrained=true&num_classes=N], a checkpoint .pt, or package.module:function.")]
Weights = Annotated[Path | None, typer.Option(help="A state_dict file (torch.save) loaded into --model: your own trained weights for any architecture spec.")]
Data = Annotated[str, typer.Option(help="builtin:digits, builtin:fashion-mnist, an ImageFolder directory (DIR?size=N), or package.module:function.")]
SpaceFile = Annotated[Path | None, typer.Option(help="Search space YAML (default: derived from the model).")]
Profile = Annotated[str, typer.Option(help="Hardware profile: a name from hw_profiles/ or a YAML path.")]
Criterion = Annotated[str | None, typer.Option(help="Importance criterion that ranks channels (default: the space's, l1).")]
Metric = Annotated[str, typer.Option(help="What ranks plans: top1, top5, next_token_top1 (causal LMs; higher is better), perplexity (causal LMs; lower is better), or package.module:fn(model, loader) -> float, higher is better unless fn.direction = \"minimize\".")]
Loss = Annotated[str, typer.Option(help="What fine-tuning minimises: cross_entropy, lm_cross_entropy (causal LMs: next token), or package.module:fn(outputs, targets) -> tensor.")]
ValSamples = Annotated[int | None, typer.Option(help="Evaluate trials on a fixed, seeded subset of this many validation samples (apply reports the full set).")]
Device = Annotated[str, typer.Option(help="Where training runs: auto (a GPU when torch sees one), cpu, or cuda[:N].")]
InputShape = Annotated[str | None, typer.Option(help="Input shape of one sample, e.g. 3,224,224, or 128:int64 for token ids (instead of --data).")]


@app.callback()
def _everywhere(
    traceback: Annotated[bool, typer.Option("--traceback", help="On an error, show the whole traceback after its one-line message (also AUTOPRUNE_DEBUG=1); accepted after any command too.")] = False,
) -> None:
    # main() takes --traceback out of the arguments wherever it stands; declared here for --help.
    pass


@app.command("search")
def search_cmd(
    budget: Annotated[list[str], typer.Option(help="Latency budget per batch: 50ms, 0.05s, 500us, or 0.5x of the unpruned latency; @PROFILE binds it to a profile (default: the first). Repeatable, one per profile.")] = [SEARCH["budget"]],  # noqa: B006 - typer reads it, never mutates it
    model: Model = SEARCH["model"],
    weights: Weights = SEARCH["weights"],
    data: Data = SEARCH["data"],
    space: SpaceFile = SEARCH["space"],
    profile: Annotated[list[str], typer.Option(help="Hardware profile: a name from hw_profiles/ or a YAML path. Repeatable: every trial is measured on each.")] = [SEARCH["profile"]],  # noqa: B006
    trials: Annotated[int | None, typer.Option(help="Number of trials (default 24; with --resume, the run's own count).")] = SEARCH["trials"],
    concurrency: Annotated[int, typer.Option(help="Trials run at once (latency measurements never overlap).")] = SEARCH["concurrency"],
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of fine-tuning.")] = SEARCH["seed"],
    finetune_steps: Annotated[int, typer.Option(help="Fine-tune steps per trial before evaluation.")] = SEARCH["finetune_steps"],
    criterion: Criterion = SEARCH["criterion"],
    out: Annotated[str, typer.Option(help="Where runs go: a directory (local, or shared by the team) or a URL (s3://bucket/prefix, gs://…); each run is a <run>/ under it, written as its trials end.")] = SEARCH["out"],
    sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe (constant liar when concurrent), local (moves channels between groups around the best plan; budget formulation), nsga2, random or gp.")] = SEARCH["sampler"],
    formulation: Annotated[str, typer.Option(help="budget: best accuracy among plans moved onto the budget's boundary; front: accuracy and latency as two objectives.")] = SEARCH["formulation"],
    seed_plans: Annotated[str | None, typer.Option(help="Cheap plans tried first, each put on the budget: uniform, global (Torch-Pruning global pruning), latency (Taylor loss per millisecond saved), sensitivity (greedy from a sensitivity table: groups x 3 evaluations first); comma-separated, or none. Default: uniform,global,latency (and sensitivity with --sensitivity).")] = SEARCH["seed_plans"],
    precheck: Annotated[bool, typer.Option(help="Measure latency first; a plan over budget is recorded as infeasible, not fine-tuned.")] = SEARCH["precheck"],
    bn_recalibration: Annotated[int, typer.Option(help="Batches of adaptive BatchNorm recalibration after pruning, before the accuracy that ranks plans not fine-tuned (0: off).")] = SEARCH["bn_recalibration"],
    early_stop: Annotated[str, typer.Option(help="Early stopping of trials: none, asha (across fine-tune steps) or bn (only plans whose adaptive-BN accuracy is in the top half so far are fine-tuned).")] = SEARCH["early_stop"],
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL for the study (default: sqlite in the run directory).")] = SEARCH["storage"],
    resume: Annotated[str | None, typer.Option(help="Continue this run, a directory or URL (after Ctrl-C, kill or crash).")] = SEARCH["resume"],
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster: auto or ray://HOST:PORT (default: RAY_ADDRESS, else a local Ray).")] = SEARCH["address"],
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs per trial (default: the CPUs shared by the concurrent trials).")] = SEARCH["cpus_per_trial"],
    gpus_per_trial: Annotated[float, typer.Option(help="GPUs per trial: trials fine-tune on a GPU; latency is still measured on the profiles.")] = SEARCH["gpus_per_trial"],
    sensitivity: Annotated[Path | None, typer.Option(help="sensitivity.csv (or its directory) from autoprune sensitivity: the first trials prune the least sensitive groups most.")] = SEARCH["sensitivity"],
    budget_confidence: Annotated[str, typer.Option(help="A plan meets the budget when its latency's 95 % CI is within it (upper) or its point estimate is (p50).")] = SEARCH["budget_confidence"],
    metric: Metric = SEARCH["metric"],
    loss: Loss = SEARCH["loss"],
    val_samples: ValSamples = SEARCH["val_samples"],
    confirm: Annotated[int, typer.Option(help="After the trials, re-train the top N plans within budget with fresh seeds; their mean names best (0: off).")] = SEARCH["confirm"],
    confirm_seeds: Annotated[int, typer.Option(help="Fresh fine-tune seeds per confirmed plan.")] = SEARCH["confirm_seeds"],
    landing_moves: Annotated[int, typer.Option(help="Nearby plans a trial may measure to land within 90-100 % of the budget (0: off).")] = SEARCH["landing_moves"],
) -> None:
    """Search per-group prune ratios; writes trials.csv, pareto.csv, a plot and plans."""
    if resume is None:  # a bad argument is one line before the heavy imports below
        from autoprune.study.arguments import check_search

        check_search(budget=budget, profile=profile, trials=trials, concurrency=concurrency,
                     finetune_steps=finetune_steps, bn_recalibration=bn_recalibration, confirm=confirm,
                     confirm_seeds=confirm_seeds, landing_moves=landing_moves, early_stop=early_stop,
                     budget_confidence=budget_confidence, formulation=formulation, sampler=sampler,
                     seed_plans=seed_plans, sensitivity=sensitivity, address=address,
                     out=out, gpus_per_trial=gpus_per_trial)
    from autoprune.study.run import search

    search(budget=budget, model=model, data=data, space=space, profile=profile,
           trials=trials, concurrency=concurrency, seed=seed, finetune_steps=finetune_steps, criterion=criterion,
           out=out, sampler=sampler, precheck=precheck, bn_recalibration=bn_recalibration, early_stop=early_stop,
           storage=storage, resume=resume, address=address, cpus_per_trial=cpus_per_trial,
           gpus_per_trial=gpus_per_trial, sensitivity=sensitivity, budget_confidence=budget_confidence,
           formulation=formulation, seed_plans=seed_plans, weights=weights, metric=metric, loss=loss,
           val_samples=val_samples, confirm=confirm, confirm_seeds=confirm_seeds, landing_moves=landing_moves)


@app.command("apply")
def apply_cmd(
    run: Annotated[str, typer.Argument(help="A run written by autoprune search: its directory or URL.")],
    pick: Annotated[str, typer.Option(help="best (most accurate plan within budget) or a trial, e.g. trial-007.")] = APPLY["pick"],
    epochs: Annotated[float, typer.Option(help="Recovery fine-tune epochs (warm-up + cosine).")] = APPLY["epochs"],
    lr: Annotated[float, typer.Option(help="Peak learning rate of the recovery fine-tune.")] = APPLY["lr"],
    out: Annotated[str | None, typer.Option(help="Output directory or URL (default: RUN/apply-<trial>, wherever RUN is).")] = APPLY["out"],
    distill: Annotated[bool, typer.Option(help="Knowledge distillation from the unpruned model during fine-tuning.")] = APPLY["distill"],
    kd_alpha: Annotated[float, typer.Option(help="Weight of the distillation loss against the label loss.")] = APPLY["kd_alpha"],
    kd_temperature: Annotated[float, typer.Option(help="Temperature that softens both models' outputs.")] = APPLY["kd_temperature"],
    kd_features: Annotated[str | None, typer.Option(help="With --distill, also match these layers' feature maps by attention transfer: comma-separated names, or auto (each stage).")] = APPLY["kd_features"],
    kd_beta: Annotated[float, typer.Option(help="Weight of the attention-transfer loss.")] = APPLY["kd_beta"],
    progressive: Annotated[int, typer.Option(help="Prune in K steps, fine-tuning epochs/K after each (1: one shot).")] = APPLY["progressive"],
    unstructured: Annotated[float, typer.Option(help="Also zero this fraction of the remaining weights by magnitude (shrinks the compressed file, not the dense latency).")] = APPLY["unstructured"],
    unstructured_scope: Annotated[str, typer.Option(help="Threshold of --unstructured: global or layer.")] = APPLY["unstructured_scope"],
    device: Device = APPLY["device"],
) -> None:
    """Prune the model with a plan from a run, fine-tune, export .pt and .onnx, and report."""
    from autoprune.commands.apply import apply

    apply(run, pick=pick, epochs=epochs, lr=lr, out=out, distill=distill, kd_alpha=kd_alpha,
          kd_temperature=kd_temperature, kd_features=kd_features, kd_beta=kd_beta, progressive=progressive,
          unstructured=unstructured, unstructured_scope=unstructured_scope, device=device)


@app.command("sensitivity")
def sensitivity_cmd(
    model: Model = SENS["model"],
    data: Data = SENS["data"],
    space: SpaceFile = SENS["space"],
    profile: Profile = SENS["profile"],
    ratios: Annotated[str, typer.Option(help="Ratios to prune each group alone at, comma-separated.")] = ",".join(map(str, SENS["ratios"])),
    finetune_steps: Annotated[int, typer.Option(help="Fine-tune steps after pruning each (0: BN recalibration only).")] = SENS["finetune_steps"],
    max_drop: Annotated[float, typer.Option(help="Accuracy drop (fraction) a group alone may cost in the narrowed space.")] = SENS["max_drop"],
    out: Annotated[Path, typer.Option(help="Directory for sensitivity.csv, sensitivity.png and space.yaml.")] = Path(SENS["out"]),
    criterion: Criterion = SENS["criterion"],
    weights: Weights = SENS["weights"],
    metric: Metric = SENS["metric"],
    loss: Loss = SENS["loss"],
    val_samples: ValSamples = SENS["val_samples"],
    device: Device = SENS["device"],
) -> None:
    """Prune each group alone at several ratios: accuracy and latency per group, and a narrowed space."""
    from autoprune.commands.sensitivity import sensitivity

    try:
        parsed = [float(r) for r in ratios.split(",")]
    except ValueError:
        raise AutopruneError(f"--ratios {ratios!r} is not understood; write them like 0.25,0.5,0.75") from None
    sensitivity(model=model, data=data, space=space, profile=profile, ratios=parsed, finetune_steps=finetune_steps,
                max_drop=max_drop, out=out, criterion=criterion, weights=weights, metric=metric, loss=loss,
                val_samples=val_samples, device=device)


@app.command("regularize")
def regularize_cmd(
    model: Model = REG["model"],
    data: Data = REG["data"],
    method: Annotated[str, typer.Option(help="bn_l1 (network slimming), bn_group_lasso, or group_norm (DepGraph).")] = REG["method"],
    strength: Annotated[float | None, typer.Option(help="Penalty coefficient (default: the method's: 1e-2 for bn_*, 3e-3 for group_norm, for ~2 epochs).")] = REG["strength"],
    epochs: Annotated[float, typer.Option(help="Training epochs with the penalty (warm-up + cosine).")] = REG["epochs"],
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = REG["lr"],
    probe_ratio: Annotated[float, typer.Option(help="Uniform prune ratio at which input and regularised model are compared.")] = REG["probe_ratio"],
    out: Annotated[Path, typer.Option(help="Directory for model.pt, report.yaml and bn_scales.png.")] = Path(REG["out"]),
    weights: Weights = REG["weights"],
    device: Device = REG["device"],
) -> None:
    """Sparsity regularisation before pruning: train with a channel-sparsity penalty, measure what it buys."""
    from autoprune.commands.regularize import regularize

    regularize(model=model, data=data, method=method, strength=strength, epochs=epochs, lr=lr,
               probe_ratio=probe_ratio, out=out, weights=weights, device=device)


@app.command("sparsify")
def sparsify_cmd(
    model: Model = SPARSE["model"],
    data: Data = SPARSE["data"],
    sparsity: Annotated[float, typer.Option(help="Fraction of conv/linear weights zeroed, smallest |w| first.")] = SPARSE["sparsity"],
    scope: Annotated[str, typer.Option(help="global (one threshold over all layers) or layer (same fraction per layer).")] = SPARSE["scope"],
    epochs: Annotated[float, typer.Option(help="Fine-tune epochs with the zeros held (warm-up + cosine).")] = SPARSE["epochs"],
    lr: Annotated[float, typer.Option(help="Peak learning rate of the fine-tune.")] = SPARSE["lr"],
    profile: Profile = SPARSE["profile"],
    out: Annotated[Path, typer.Option(help="Directory for model.pt, model.onnx and report.yaml.")] = Path(SPARSE["out"]),
    weights: Weights = SPARSE["weights"],
    device: Device = SPARSE["device"],
) -> None:
    """Unstructured magnitude pruning: zero small weights, fine-tune, report sparsity, sizes and latency."""
    from autoprune.commands.sparsify import sparsify

    sparsify(model=model, data=data, sparsity=sparsity, scope=scope, epochs=epochs, lr=lr, profile=profile, out=out,
             weights=weights, device=device)


@app.command("runs")
def runs_cmd(
    run: Annotated[list[str] | None, typer.Argument(help="With --compare: the runs to compare (directories or URLs).")] = None,
    out: Annotated[str, typer.Option(help="The directory or URL searches wrote their runs into (their --out).")] = RUNS["out"],
    compare: Annotated[bool, typer.Option(help="Plot the Pareto fronts of the RUNs given together.")] = False,
    plot: Annotated[Path | None, typer.Option(help="With --compare: the plot file (default: fronts.png beside the first run).")] = None,
) -> None:
    """List past runs (model, budgets, trials done, status, best plan within budget), or compare their fronts."""
    from autoprune.commands.runs import compare_runs, runs

    if compare:
        compare_runs(run or [], plot=plot)
    elif run:
        raise AutopruneError("run directories are given only with --compare; to list runs, pass --out DIR")
    else:
        runs(out=out)


@space_app.command("init")
def space_init_cmd(
    model: Model = SPACE["model"],
    data: Annotated[str, typer.Option(help="Data whose samples give the input shape.")] = SPACE["data"],
    input_shape: InputShape = SPACE["input_shape"],
    low: Annotated[float, typer.Option(help="Lowest ratio searched per group.")] = SPACE["low"],
    high: Annotated[float, typer.Option(help="Highest ratio searched per group.")] = SPACE["high"],
    step: Annotated[float, typer.Option(help="Ratio step.")] = SPACE["step"],
    round_to: Annotated[int, typer.Option(help="Round pruned widths to this channel multiple (autoprune profile probe recommends one for a target).")] = SPACE["round_to"],
) -> None:
    """Print a search space YAML covering every prunable group of a model."""
    from autoprune.commands.space import space_init

    typer.echo(space_init(model=model, data=data, input_shape=input_shape, low=low, high=high, step=step,
                          round_to=round_to).to_yaml(), nl=False)


@profile_app.command("list")
def profile_list_cmd() -> None:
    """List the shipped hardware profiles."""
    from autoprune.latency.profiles import list_profiles, resolve_profile

    for name in list_profiles():
        typer.echo(f"{name:<20} {resolve_profile(name).description}")


@profile_app.command("measure")
def profile_measure_cmd(
    model: Annotated[str, typer.Option(help="A model spec, an applied model.pt, or a .onnx file.")],
    profile: Profile = MEASURE["profile"],
    data: Annotated[str, typer.Option(help="Data whose samples give the input shape.")] = MEASURE["data"],
    input_shape: InputShape = MEASURE["input_shape"],
    method: Annotated[str | None, typer.Option(help="pooled (worker processes against the shipped anchor, with a 95 % CI) or single (one process, fast); default: the profile's.")] = MEASURE["method"],
) -> None:
    """Measure a model's latency on a profile: the estimate, its 95 % CI (pooled) and p90."""
    from autoprune.commands.profile import profile_measure

    stats = profile_measure(model=model, profile=profile, data=data, input_shape=input_shape, method=method)
    ci = f"  95 % CI {stats.ci_low_ms:.3f}–{stats.ci_high_ms:.3f} ms" if stats.has_ci else ""
    typer.echo(f"p50 {stats.p50_ms:.3f} ms{ci}  p90 {stats.p90_ms:.3f} ms  spread {stats.spread:.1%}")
    typer.echo(stats.describe())


@profile_app.command("probe")
def profile_probe_cmd(
    profile: Profile = PROBE["profile"],
    layers: Annotated[str, typer.Option(help="Layer kinds to sweep: conv, linear, or conv,linear.")] = PROBE["layers"],
    out: Annotated[Path | None, typer.Option(help="Folder for widths.csv and widths.png.")] = PROBE["out"],
) -> None:
    """Time layer chains over a sweep of widths on a profile: the channel multiple its kernels compute in."""
    from autoprune.commands.profile import profile_probe

    report = profile_probe(profile=profile, layers=layers, out=out,
                           on_layer=lambda kind: typer.echo(f"timing {kind} chains at widths 64-128 on {profile} ...", err=True))
    for probe in report.probes:
        steps = ", ".join(f"{m}: {r:.2f}x" for m, r in probe.up_ratio.items())
        typer.echo(f"{probe.layer:<7} time of a width rounded up to a multiple, against the width: {steps}")
        typer.echo(f"        widths compute in multiples of {probe.multiple}")
    typer.echo(f"recommended multiple: {report.multiple}. Kept for this machine ({report.stored}): a search on "
               f"{profile} now rounds a generated space's widths to {report.multiple} and its latency model counts "
               f"in it, unless the profile sets channel_block or the space its round_to")
    if report.plot is not None:
        typer.echo(f"plot: {report.plot}  figures: {report.csv}")


@profile_app.command("calibrate")
def profile_calibrate_cmd(profile: Profile = CALIBRATE["profile"]) -> None:
    """Time the shipped anchor model again on this machine: the scale of pooled figures without an unpruned model."""
    from autoprune.commands.profile import profile_calibrate

    ref = profile_calibrate(profile=profile)
    typer.echo(f"anchor on {profile}: {ref.ms:.3f} ms [95 % CI {ref.ms_low:.3f}, {ref.ms_high:.3f}]")


@profile_app.command("build-table")
def profile_build_table_cmd(
    model: Annotated[str, typer.Option(help="The model to tabulate (a model spec or checkpoint).")],
    profile: Profile = TABLE["profile"],
    space: SpaceFile = TABLE["space"],
    data: Annotated[str, typer.Option(help="Data whose samples give the input shape.")] = TABLE["data"],
    input_shape: InputShape = TABLE["input_shape"],
    out: Annotated[Path | None, typer.Option(help="Table file (default: tables/<model>@<profile>.yaml).")] = TABLE["out"],
    check: Annotated[int, typer.Option(help="Random plans measured to report the table's prediction error.")] = TABLE["check"],
) -> None:
    """Measure per-layer latencies on a profile into a table that predicts latency without measuring."""
    from rich.console import Console

    from autoprune.commands.profile import describe_errors, profile_build_table

    console = Console(stderr=True)
    with console.status("measuring layers") as status:
        report = profile_build_table(model=model, profile=profile, space=space, data=data, input_shape=input_shape,
                                     out=out, check=check,
                                     on_progress=lambda n, i, t: status.update(f"measuring layers: {i}/{t} ({n})"))
    t = report.table
    typer.echo(f"wrote {report.path}: {len(t.layers)} layers; calibration latency = {t.scale:.3f} x sum of layers "
               f"{t.offset_ms:+.3f} ms")
    typer.echo(f"predicted against measured on {t.profile}: {describe_errors(report.errors)}")
    typer.echo(f"to use it, add to a profile: latency_table: {report.path.resolve()}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: the process's arguments); returns the exit code. In-process
    callers (the tests) get the same output and codes as the ``autoprune`` command."""
    from autoprune.core.usercode import DEBUG_ENV

    args = list(sys.argv[1:] if argv is None else argv)
    if "--traceback" not in args:
        return _main(args)
    before = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"  # set before Ray starts: its trial processes inherit it
    try:
        return _main([a for a in args if a != "--traceback"])
    finally:  # an in-process caller (the tests) keeps its own setting
        if before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = before


def _main(args: list[str]) -> int:
    from autoprune.core.signals import terminate_as_interrupt, terminated
    from autoprune.core.usercode import debug

    try:
        with terminate_as_interrupt():  # a scheduler's SIGTERM: what finished is written, as on Ctrl-C
            code = app(args=args, prog_name="autoprune", standalone_mode=False)
    except typer.TyperException as exc:  # a usage error: unknown option, bad type (typer's own click)
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("interrupted", err=True)
        return 143 if terminated() else 130
    except AutopruneError as exc:
        if debug():
            import traceback

            typer.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
        typer.echo(f"error: {exc}", err=True)
        return int(getattr(exc, "exit_code", 2))
    except SearchInterrupted as exc:
        typer.echo(f"{'terminated (SIGTERM)' if terminated() else 'interrupted'}: {exc}", err=True)
        return 143 if terminated() else 130
    except KeyboardInterrupt:
        typer.echo("terminated (SIGTERM)" if terminated() else "interrupted", err=True)
        return 143 if terminated() else 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
