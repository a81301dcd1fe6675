"""Runs kept where a team reads them: a real S3-compatible server (moto's, started by the tests), a run
written there as its trials end, its driver killed and the run resumed from the URL by another
process, listed, compared and applied from there; atomic writes on shared directories."""

from __future__ import annotations

import io
import signal
import threading

import pandas as pd
import pytest

from autoprune import apply, runs, search
from autoprune.core.errors import AutopruneError
from autoprune.core.files import atomic_path, write_atomic
from autoprune.core.location import Location, local_path
from autoprune.core.mirror import RunMirror, fetch
from tests.conftest import TINY_SINGLE
from tests.helpers import cli, reap, search_process


def _csv(url: str, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(Location.parse(url).read(name)))


def test_a_location_writes_lists_and_reads_whole_files(s3_prefix, tmp_path):
    loc = Location.parse(s3_prefix)
    loc.check()
    loc.write("run-a/plans/p.yaml", b"ratios: {}\n")
    loc.write("run-a/trials.csv", b"trial\n")
    loc.write("run-b/config.yaml", b"format: 2\n")
    assert loc.dirs() == ["run-a", "run-b"]
    run = loc.child("run-a")
    assert run.url == f"{s3_prefix}/run-a" and run.name == "run-a"
    assert [f.path for f in run.files()] == ["plans/p.yaml", "trials.csv"]
    assert run.read("trials.csv") == b"trial\n" and run.is_file("trials.csv") and not run.is_file("nope")
    copy = fetch(run, dest=tmp_path / "copy")
    assert (copy / "plans" / "p.yaml").read_text() == "ratios: {}\n"
    run.write("trials.csv", b"trial\ntrial-000\n")  # changed at the remote: fetched again
    assert (fetch(run, dest=copy) / "trials.csv").read_text() == "trial\ntrial-000\n"
    # a query (an endpoint in the URL) stays at the end of every child's URL
    q = Location.parse(f"{s3_prefix}?region=us-east-1")
    assert q.child("x").url == f"{s3_prefix}/x?region=us-east-1"


def test_the_mirror_pushes_what_changed_plans_before_the_table(s3_prefix, tmp_path):
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "trial-000.yaml").write_text("a")
    (tmp_path / "trials.csv").write_text("t")
    (tmp_path / "config.yaml").write_text("c")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "state.pkl").write_text("tune's own")
    mirror = RunMirror(tmp_path, Location.parse(s3_prefix))
    assert mirror.push() == ["plans/trial-000.yaml", "config.yaml", "trials.csv"]  # never ray/
    assert mirror.push() == []
    write_atomic(tmp_path / "trials.csv", "t2")
    assert mirror.push() == ["trials.csv"]
    assert Location.parse(s3_prefix).read("trials.csv") == b"t2"


def test_atomic_writes_leave_the_old_file_when_writing_fails(tmp_path):
    path = write_atomic(tmp_path / "trials.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_a_reader_of_a_shared_directory_never_sees_half_a_table(tmp_path):
    """A teammate reads trials.csv while the search rewrites it: each read is a whole table."""
    table = pd.DataFrame({"trial": [f"trial-{i:03d}" for i in range(3000)], "accuracy": 0.5})
    path = tmp_path / "trials.csv"
    table.to_csv(path, index=False)
    done = threading.Event()

    def writer():
        from autoprune.report.frames import write_trials

        for _ in range(30):
            write_trials(table, tmp_path)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while not done.is_set():
        assert len(pd.read_csv(path)) == 3000
        reads += 1
    t.join()
    assert reads > 0


def test_file_urls_are_local_paths(tmp_path):
    assert local_path(f"file://{tmp_path}") == tmp_path
    assert local_path("runs") is not None and local_path("s3://b/p") is None


@pytest.mark.parametrize(("out", "error"), [
    ("nosuch://x/y", "--out nosuch://x/y: not a location autoprune can write"),
    ("s3://no-such-bucket/runs", "--out s3://no-such-bucket/runs: 'no-such-bucket' does not exist"),
])
def test_an_out_url_that_cannot_be_written_is_one_line_before_any_work(s3_server, out, error, tmp_path):
    proc = cli("search", "--out", out, "--model", "tests.helpers:tiny_resnet", "--profile", str(TINY_SINGLE),
               "--trials", "1", cwd=tmp_path)
    assert proc.returncode == 2
    assert error in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "loading model" not in proc.stdout


def test_a_run_at_s3_survives_its_driver_and_is_resumed_listed_and_applied_from_the_url(
        s3_prefix, ray_local, tmp_path, monkeypatch):
    """The search writes to s3:// as trials end; killed (-9) on its second trial, the run is resumed from
    the URL by another process with another cache (another machine): nothing of it is read locally."""
    (tmp_path / "kills").mkdir()
    monkeypatch.setenv("AUTOPRUNE_TEST_KILL", str(tmp_path / "kills"))
    out = f"{s3_prefix}/runs"
    killed = search_process("--model", "tests.helpers:killing_resnet", "--trials", "2", "--out", out,
                            env={"AUTOPRUNE_CACHE": str(tmp_path / "first-machine")})
    _, err = reap(killed)
    assert killed.returncode == -signal.SIGKILL, err[-3000:]
    root = Location.parse(out)
    (name,) = root.dirs()
    url = f"{out}/{name}"
    at_kill = {f.path for f in root.child(name).files()}
    assert {"config.yaml", "space.yaml", "study.db"} <= at_kill and "summary.yaml" not in at_kill
    if "trials.csv" in at_kill:  # the first trial's outputs, pushed as it ended
        assert {"pareto.csv", "pareto.png", "report.html", "plans/trial-000.yaml"} <= at_kill
    assert not any(p.startswith("ray/") for p in at_kill)  # Ray Tune's own state stays on the driver
    before = _csv(url, "trials.csv") if "trials.csv" in at_kill else pd.DataFrame()

    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "second-machine"))
    [listed] = runs(out=out, quiet=True)
    assert listed.status == "incomplete" and listed.location == url and listed.trials_planned == 2
    result = search(resume=url, quiet=True)
    assert result.location == url
    assert result.run_dir.is_relative_to(tmp_path / "second-machine")  # the local copy this process wrote
    after = _csv(url, "trials.csv")
    assert len(after) == 2 and set(after["status"]) == {"completed"}
    for col in ("accuracy", "latency_p50_ms", "plan"):  # what had finished is kept exactly
        assert list(after.set_index("trial").loc[list(before.get("trial", [])), col]) == list(before.get(col, []))
    files = {f.path for f in root.child(name).files()}
    assert {"pareto.csv", "pareto.png", "report.html", "summary.yaml", *after["plan"]} <= files

    [listed] = runs(out=out, quiet=True)
    assert (listed.status, listed.trials_done, listed.location) == ("finished", 2, url)
    applied = apply(url, epochs=0.2, quiet=True)
    assert applied.location == f"{url}/apply-{applied.report['trial']}"
    assert {"model.onnx", "model.pt", "report.yaml"} <= {f.path for f in Location.parse(applied.location).files()}
    proc = cli("runs", "--compare", url, url, "--plot", str(tmp_path / "fronts.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fronts.png").stat().st_size > 0


def test_a_run_url_without_a_run_is_one_line(s3_prefix):
    with pytest.raises(AutopruneError, match=r"--resume s3://team/\S+/none: not an autoprune run"):
        search(resume=f"{s3_prefix}/none", quiet=True)


def test_a_store_that_stops_answering_warns_once_and_the_end_names_the_local_copy(tmp_path):
    import pyarrow.fs as pafs

    from autoprune.study.outputs import RunOutputs

    (tmp_path / "blocker").write_text("a file where the run's directory should be")
    broken = Location("s3://team/gone", pafs.LocalFileSystem(), str(tmp_path / "blocker"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.csv").write_text("trial\n")
    warned: list[str] = []
    outputs = RunOutputs(local=run, location=broken.url, mirror=RunMirror(run, broken), warn=warned.append)
    outputs.sync()
    outputs.sync()  # still failing: no second warning
    assert len(warned) == 1 and f"cannot write to {broken.url}" in warned[0] and str(run) in warned[0]
    with pytest.raises(AutopruneError, match=rf"could not be written there .*all of them are in {run}"):
        outputs.sync(final=True)
    assert (run / "trials.csv").read_text() == "trial\n"  # nothing computed is lost


def test_apply_of_a_url_without_a_run_names_the_url(s3_prefix):
    with pytest.raises(AutopruneError, match=rf"apply {s3_prefix}/none: not an autoprune run \(no config.yaml\)"):
        apply(f"{s3_prefix}/none", quiet=True)


def test_an_s3_url_that_cannot_be_opened_says_why_in_one_line():
    # a region given, an endpoint nothing listens on: pyarrow cannot open it (no package is missing)
    url = "s3://team/x?region=us-east-1&endpoint_override=127.0.0.1:1&scheme=http&connect_timeout=1"
    with pytest.raises(AutopruneError, match=r"^--out s3://team/x\?\S+: cannot (open|reach) it \(") as info:
        Location.parse(url).check()
    assert "\n" not in str(info.value)
