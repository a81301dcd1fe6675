"""Open a run's report.html in a real headless browser (Chromium) and check what a person would see.

    python bench/report_browser.py [RUN_DIR]     # default: a tiny search run here first (about 20 s)

Chromium from Debian's packages (`apt-get install -y chromium`); no network is used. Checks, after
the page's scripts ran: the plan panel shows a trial's plan (its group rows), every trial is a row of
the table, the plot has a point per trial with figures, and a screenshot is not blank. Prints what it
found; exits non-zero on a failed check.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("no Chromium found: apt-get install -y chromium")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="a run directory (default: run a tiny search first)")
    args = ap.parse_args()
    run = args.run
    if run is None:
        sys.path.insert(0, str(ROOT))
        from autoprune import search

        run = search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=ROOT / "tests/profiles/tiny.yaml",
                     trials=4, finetune_steps=5, out=Path(tempfile.mkdtemp()), quiet=True).run_dir
    page = run / "report.html"
    browser = _chromium()
    dom = _run(browser, "--dump-dom", page.resolve().as_uri()).stdout
    shot = Path(tempfile.mkdtemp()) / "report.png"
    _run(browser, "--window-size=1280,1600", f"--screenshot={shot}", page.resolve().as_uri())

    import matplotlib.image as mpimg
    import pandas as pd

    trials = pd.read_csv(run / "trials.csv")
    pixels = mpimg.imread(shot)[..., :3]
    non_white = float((pixels.mean(axis=2) < 0.95).mean())
    title = re.search(r'<h3 id="plan-title">([^<]*)</h3>', dom)
    plan_rows = len(re.findall(r"<tr><td>[\w.]+</td><td>[\d.]+</td><td>\d+ / \d+</td></tr>", dom))
    table_rows = len(re.findall(r"<tr class=\"[^\"]*(completed|infeasible|failed|stopped)\"", dom))
    points = len(re.findall(r'<circle [^>]*class="pt"', dom))
    plotted = int(trials[["accuracy", "latency_p50_ms"]].notna().all(axis=1).sum())
    checks = {
        f"plan panel shows {title.group(1) if title else None!r} with {plan_rows} group rows":
            title is not None and title.group(1).split()[0] in set(trials["trial"]) and plan_rows >= 1,
        f"trials table has {table_rows} rows for {len(trials)} trials": table_rows == len(trials),
        f"plot has {points} points for {plotted} trials with both figures": points == plotted,
        f"screenshot {shot} is {non_white:.1%} non-white": non_white > 0.05,
    }
    for what, ok in checks.items():
        print(("ok   " if ok else "FAIL ") + what)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
