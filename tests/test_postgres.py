"""A team's study database: a real PostgreSQL server (Debian's binaries, started here), two searches
at once into it as separate studies, one driver killed (``kill -9``) and resumed from another process."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import optuna
import pandas as pd
import pytest

from autoprune import search
from autoprune.core.errors import AutopruneError
from tests.conftest import TINY_SINGLE
from tests.helpers import reap, search_process


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback; yields its URL."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt-get install -y postgresql)")
    home = tempfile.mkdtemp(prefix="autoprune-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        shutil.chown(home, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(home, "data")
    subprocess.run([*as_user, initdb, "-D", data, "-A", "trust", "-U", "autoprune", "--no-sync"], check=True,
                   capture_output=True)
    opts = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(home, "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://autoprune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_two_searches_share_a_database_and_a_killed_one_resumes(postgres, ray_local, tmp_path, monkeypatch):
    (tmp_path / "kills").mkdir()
    monkeypatch.setenv("AUTOPRUNE_TEST_KILL", str(tmp_path / "kills"))
    killed = search_process("--model", "tests.helpers:killing_resnet", "--trials", "2", "--storage", postgres,
                     "--out", str(tmp_path / "a"))
    # the other search, at the same time, from this process
    run_b = search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_SINGLE, finetune_steps=5,
                   trials=1, storage=postgres, out=tmp_path / "b", quiet=True).run_dir
    _, err = reap(killed)
    assert killed.returncode == -signal.SIGKILL, err[-3000:]  # its second trial killed it
    run_a = next((tmp_path / "a").iterdir())
    studies = set(optuna.get_all_study_names(postgres))
    assert {f"autoprune-{run_a.name}", f"autoprune-{run_b.name}"} <= studies
    b = optuna.load_study(study_name=f"autoprune-{run_b.name}", storage=postgres)
    b_states = [t.state for t in b.trials]  # plus the seed plans it queued and had no trial left for
    assert b_states.count(optuna.trial.TrialState.COMPLETE) == 1 and optuna.trial.TrialState.RUNNING not in b_states
    assert not (run_a / "summary.yaml").exists()  # the killed driver did not finish the run
    before = pd.read_csv(run_a / "trials.csv") if (run_a / "trials.csv").is_file() else pd.DataFrame()

    result = search(resume=run_a, quiet=True)  # another process: this one
    after = pd.read_csv(run_a / "trials.csv")
    assert len(after) == 2 and set(after["status"]) == {"completed"}
    for col in ("accuracy", "latency_p50_ms", "plan"):  # what had finished is kept exactly
        assert list(after.set_index("trial").loc[list(before.get("trial", [])), col]) == list(before.get(col, []))
    a = optuna.load_study(study_name=f"autoprune-{run_a.name}", storage=postgres)
    states = [t.state for t in a.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and optuna.trial.TrialState.RUNNING not in states
    assert result.run_dir == run_a and (run_a / "pareto.csv").is_file()
    assert [t.state for t in b.trials] == b_states  # the other run's study is untouched


def test_an_unreachable_database_is_one_line_before_any_work(postgres, tmp_path):
    dead = postgres.replace("autoprune@", "autoprune:secret@").rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(AutopruneError, match=r"--storage postgresql://autoprune:\*\*\*@127\.0\.0\.1:1/postgres: "
                                             r"cannot open it"):
        search(budget="1000ms", model="tests.helpers:tiny_resnet", profile=TINY_SINGLE, storage=dead, out=tmp_path,
               quiet=True)
    assert not any(tmp_path.iterdir())


def test_searches_starting_at_once_on_a_new_database_all_get_its_tables(postgres):
    """The first searches of a team's new database create Optuna's tables together; none may fail."""
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    from autoprune.study.storage import check_storage

    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh")
    fresh = postgres.rsplit("/", 1)[0] + "/fresh"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check_storage, [fresh] * 4))  # raises if any of them failed
    assert optuna.get_all_study_names(fresh) == []
