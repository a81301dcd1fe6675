"""Times ONNX models in a process that does nothing else (no torch, no Ray, no fine-tune threads).

Run as a script, ``python worker.py`` with a JSON job on the first line of stdin; never imported by
autoprune (importing the package would load torch, whose OpenMP threads are what this process
exists to avoid). The job names the models and the runtime's session settings; the worker opens a
session per model, prints ``ready`` and waits for a second line (or the end of stdin: a caller
that does not prepare workers sends the job alone). Then it warms each model up and runs
``rounds`` rounds, each timing every model once in a random order (interleaved, so a slow phase of
the host moves all of them alike). It prints the samples as JSON, in the order they were taken,
with the wall-clock window they were taken in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import sys
import time
from pathlib import Path


def _runtimes():
    """latency/runtimes.py, loaded by path: importing it through the package would load torch."""
    spec = importlib.util.spec_from_file_location("_autoprune_runtimes", Path(__file__).with_name("runtimes.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(job: dict) -> dict:
    runtimes = _runtimes()
    sessions, feeds = [], []
    for path in job["models"]:
        try:
            session = runtimes.open_session(path, job["runtime"], batch_size=job["batch_size"])
        except runtimes.Unavailable as exc:
            return {"error": f"it needs {exc}"}
        sessions.append(session)
        feeds.append(session.feed(seed=0))
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the caller lets one prepared worker time at a time
    started = time.time()
    for session, feed in zip(sessions, feeds):
        for _ in range(job["warmup"]):
            session.run(feed)
    rng = random.Random(job["seed"])
    samples = []  # [model index, round, ms], in the order taken
    for r in range(job["rounds"]):
        order = list(range(len(sessions)))
        rng.shuffle(order)
        for i in order:
            t0 = time.perf_counter()
            sessions[i].run(feeds[i])
            samples.append([i, r, (time.perf_counter() - t0) * 1000.0])
    return {"pid": os.getpid(), "host": socket.gethostname(), "samples": samples, "window": [started, time.time()]}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.readline()))), flush=True)
