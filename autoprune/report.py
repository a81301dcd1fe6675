"""Reports over trials: trials.csv, the Pareto front (accuracy up, latency down) and its plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PARETO_COLUMNS = ["trial", "accuracy", "latency_p50_ms", "latency_p90_ms", "macs", "params", "meets_budget", "plan"]


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials no other trial beats on both accuracy and latency, sorted by latency."""
    done = trials[trials["status"] == "completed"] if "status" in trials else trials
    done = done.dropna(subset=["accuracy", "latency_p50_ms"])
    acc, lat = done["accuracy"].to_numpy(), done["latency_p50_ms"].to_numpy()
    keep = []
    for i in range(len(done)):
        dominated = ((acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))).any()
        keep.append(not dominated)
    front = done[keep].sort_values(["latency_p50_ms", "accuracy"], ascending=[True, False])
    return front.reset_index(drop=True)


def write_trials(trials: pd.DataFrame, run_dir: Path) -> Path:
    path = run_dir / "trials.csv"
    trials.to_csv(path, index=False)
    return path


def write_pareto(trials: pd.DataFrame, run_dir: Path) -> tuple[Path, pd.DataFrame]:
    front = pareto_front(trials)
    cols = [c for c in PARETO_COLUMNS if c in front] + sorted(c for c in front if c.startswith("ratio."))
    path = run_dir / "pareto.csv"
    front[cols].to_csv(path, index=False)
    return path, front[cols]


def plot_pareto(trials: pd.DataFrame, run_dir: Path, *, budget_ms: float, baseline: dict, profile: str) -> Path:
    """All trials, the front, the budget line and the unpruned model, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    done = trials[trials["status"] == "completed"]
    front = pareto_front(trials)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ok = done[done["meets_budget"]]
    over = done[~done["meets_budget"]]
    ax.scatter(over["latency_p50_ms"], over["accuracy"] * 100, s=18, c="#bbbbbb", label="trial over budget")
    ax.scatter(ok["latency_p50_ms"], ok["accuracy"] * 100, s=18, c="#7fb3d5", label="trial within budget")
    ax.step(front["latency_p50_ms"], front["accuracy"] * 100, where="post", c="#1f4e79", lw=1.5)
    ax.scatter(front["latency_p50_ms"], front["accuracy"] * 100, s=36, c="#1f4e79", label="Pareto front", zorder=3)
    ax.scatter([baseline["latency_p50_ms"]], [baseline["accuracy"] * 100], marker="*", s=160, c="#e67e22",
               label="unpruned", zorder=4)
    ax.axvline(budget_ms, ls="--", c="#c0392b", lw=1, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel(f"latency p50 (ms per batch, profile {profile})")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("autoprune: accuracy against measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = run_dir / "pareto.png"
    fig.savefig(path)
    plt.close(fig)
    return path
