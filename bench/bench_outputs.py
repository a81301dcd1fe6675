"""What writing a run as its trials end costs the driver: a directory against an S3-compatible server.

    python bench/bench_outputs.py [--trials 8] [--rounds 2]

Runs the same tiny search (the demo model, 8 trials) alternately with ``--out DIR`` and ``--out
s3://…`` (moto's server, started here: a local S3, so the figures are autoprune's own cost plus
one machine's HTTP, not a WAN's latency), ``--rounds`` times each, and prints per run the driver's
time in the per-trial writes (``outputs_s`` in summary.yaml: trials.csv, pareto.csv, plots,
report.html and, for S3, the push), per trial and as a share of the search. Needs the test extras
(``pip install -e ".[test]"``: moto[server]).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto's server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    proc, endpoint = _moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    import pyarrow.fs as pafs

    from autoprune import search
    from autoprune.core.location import Location

    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir("bench")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for kind, out in (("directory", Path(tmp) / "runs"), ("s3", "s3://bench/runs")):
                    result = search(budget="50ms", trials=args.trials, out=out, quiet=True, seed=r)
                    if kind == "s3":
                        summary = yaml.safe_load(Location.parse(result.location).read("summary.yaml"))
                    else:
                        summary = yaml.safe_load((result.run_dir / "summary.yaml").read_text())
                    t = summary["timings_s"]
                    rows.append((r, kind, t.get("outputs_s", 0.0), t["tune_s"], len(result.trials)))
    finally:
        proc.terminate()
    print(f"{'round':>5}  {'--out':<9}  {'outputs s':>9}  {'per trial ms':>12}  {'trials s':>8}  {'share':>6}")
    for r, kind, out_s, tune_s, n in rows:
        print(f"{r:>5}  {kind:<9}  {out_s:>9.2f}  {out_s / n * 1000:>12.0f}  {tune_s:>8.1f}  {out_s / tune_s:>6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
