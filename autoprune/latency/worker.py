"""Times ONNX models in a process that does nothing else (no torch, no Ray, no fine-tune threads).

Run as a script, ``python latency_worker.py`` with a JSON job on stdin; never imported by
autoprune (importing the package would load torch, whose OpenMP threads are what this process
exists to avoid). The job names the models and the ONNX Runtime session settings; the worker
warms each model up, then runs ``rounds`` rounds, each timing every model once in a random order
(interleaved, so a slow phase of the host moves all of them alike). It prints the samples as JSON,
in the order they were taken.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _session(ort, path: str, job: dict):
    so = ort.SessionOptions()
    so.intra_op_num_threads = job["intra_op_threads"]
    so.inter_op_num_threads = job["inter_op_threads"]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[job["graph_optimization"]])
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=[job["provider"]])


def run(job: dict) -> dict:
    import numpy as np
    import onnxruntime as ort

    if job["provider"] not in ort.get_available_providers():
        return {"error": f"ONNX Runtime provider {job['provider']} is missing here; available: "
                         f"{', '.join(ort.get_available_providers())}"}
    sessions, feeds = [], []
    for path in job["models"]:
        session = _session(ort, path, job)
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else job["batch_size"] for d in inp.shape]
        sessions.append(session)
        feeds.append({inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
    for session, feed in zip(sessions, feeds):
        for _ in range(job["warmup"]):
            session.run(None, feed)
    rng = random.Random(job["seed"])
    samples = []  # [model index, round, ms], in the order taken
    for r in range(job["rounds"]):
        order = list(range(len(sessions)))
        rng.shuffle(order)
        for i in order:
            t0 = time.perf_counter()
            sessions[i].run(None, feeds[i])
            samples.append([i, r, (time.perf_counter() - t0) * 1000.0])
    return {"pid": os.getpid(), "host": socket.gethostname(), "samples": samples}


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
