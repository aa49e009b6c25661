"""Workers on one study: ``nasmerc search --storage URL --study NAME`` run by two processes (each its
own run folder) trains every candidate exactly once, both report the study's best, and where the
search is deterministic (random search, evolution) that best is the one a single process finds.

The shared storages are a journal file and a real PostgreSQL server that the tests start in a
temporary folder (skipped where no PostgreSQL binaries or driver are installed). Shapes are tiny,
so a worker's time is mostly its start.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nasmerc.cli import main

SPACE = ["--space", "rmnas", "--set", "hidden_dim=16", "--set", "n_blocks=1", "--set", "fusion_dim=16",
         "--set", "n_heads=2", "--set", "n_cells=1"]
DATA = ["--set", "data.n_train=6", "--set", "data.n_valid=2", "--set", "data.n_test=3", "--set", "data.length_max=10",
        "--set", "data.length_min=3", "--set", "data.length_mean=6", "--set", "data.dims.visual=16",
        "--set", "train.batch_size=4", "--set", "train.valid_rates=0,0.5", "--set", "strategy.candidate_epochs=1"]
RANDOM = ["--strategy", "random", "--trials", "4", *SPACE, *DATA]
EVOLUTION = ["--strategy", "evolution", "--population", "2", "--generations", "2", *SPACE, *DATA]
TPE = ["--strategy", "tpe", "--trials", "3", "--set", "strategy.startup_trials=2", *SPACE, *DATA]
FAST = ["--set", "strategy.heartbeat=1"]  # a dead worker's trial is retried after 3 s

pytestmark = pytest.mark.usefixtures("one_thread")


def start(out: Path, args: list[str], storage: str, study: str) -> subprocess.Popen:
    """One worker: ``python -m nasmerc.cli search`` in its own process, one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "nasmerc.cli", "search", "--no-dashboard", "--out", str(out), *args,
            "--storage", storage, "--study", study, *FAST]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(*workers: subprocess.Popen) -> None:
    for w in workers:
        output, _ = w.communicate(timeout=120)
        assert w.returncode == 0, output


def search_json(out: Path) -> dict:
    return json.loads((out / "search.json").read_text())


def trials_of(storage: str, name: str) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if storage.startswith("journal:"):
        opened = optuna.storages.JournalStorage(JournalFileBackend(storage[len("journal:"):]))
    else:
        opened = optuna.storages.RDBStorage(storage)
    try:
        return optuna.load_study(study_name=name, storage=opened).get_trials(deepcopy=False)
    finally:
        if isinstance(opened, optuna.storages.RDBStorage):
            opened.engine.dispose()


def assert_each_slot_once(trials: list, slots: int, *workers: dict) -> None:
    """Every slot finished by exactly one COMPLETE trial; the workers' own trials split the slots."""
    complete = sorted(t.user_attrs["slot"] for t in trials if t.state.name == "COMPLETE")
    assert complete == list(range(slots)), complete
    mine = [w["worker_trials"] for w in workers]
    assert sorted(n for m in mine for n in m) == list(range(1, slots + 1)), mine
    for w in workers:
        assert [t["trial"] for t in w["trials"]] == list(range(1, slots + 1))
        events = [json.loads(line) for line in (Path(w["_out"]) / "events.jsonl").read_text().splitlines()]
        assert sorted(e["study_trial"] for e in events if e.get("type") == "trial") == w["worker_trials"]


def same_best(*results: dict) -> None:
    keys = ("arch", "best_valid", "best_trial")
    for r in results[1:]:
        assert [r[k] for k in keys] == [results[0][k] for k in keys]


def single(tmp_path: Path, args: list[str]) -> dict:
    """The same search in this process, without a study."""
    out = tmp_path / "single"
    assert main(["search", "--no-dashboard", "--out", str(out), *args]) == 0
    return search_json(out)


def load(out: Path) -> dict:
    return {**search_json(out), "_out": str(out)}


# -- a journal file: random search, a worker killed, the study command ------------------------------
def hold_and_kill(worker: subprocess.Popen, storage: str, name: str) -> object:
    """SIGKILL ``worker`` while it holds a RUNNING trial (frozen first, so not in the middle of a write
    to the journal); that trial."""
    path = Path(storage[len("journal:"):])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.2)
        if not path.exists():
            continue
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            trials = trials_of(storage, name)
        except KeyError:  # the journal is there, the study not yet
            trials = []
        running = [t for t in trials if t.state.name == "RUNNING"
                   and t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]
        if running and not os.path.lexists(f"{path}.lock"):
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate()
            return running[0]
        os.kill(worker.pid, signal.SIGCONT)
    raise AssertionError(f"the worker never held a trial: {worker.communicate()[0]}")


def test_a_killed_workers_trial_is_retried_by_the_other(tmp_path: Path, capsys) -> None:
    storage = f"journal:{tmp_path / 'shared.journal'}"
    a = start(tmp_path / "a", RANDOM, storage, "random")
    held = hold_and_kill(a, storage, "random")
    b = start(tmp_path / "b", RANDOM, storage, "random")  # the same command, a new --out
    alone = single(tmp_path, RANDOM)
    finish(b)
    trials = trials_of(storage, "random")
    assert [t.number for t in trials if t.state.name == "FAIL"] == [held.number]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == held.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert [retry[0].user_attrs[k] for k in ("slot", "arch")] == [held.user_attrs[k] for k in ("slot", "arch")]
    rb = load(tmp_path / "b")
    assert_each_slot_once(trials, 4, rb)  # b trained every slot, the dead worker's among them
    same_best(rb, alone)  # random search through a study: the trials, values and best of one process
    assert [t["value"] for t in rb["trials"]] == [t["value"] for t in alone["trials"]]
    assert rb["study"] == str(tmp_path / "shared.journal") and rb["study_name"] == "random"

    capsys.readouterr()  # the dead worker's folder is not resumed: its command is started again
    assert main(["search", "--no-dashboard", "--resume", str(tmp_path / "a")]) == 2
    assert "start it again with the same nasmerc search command and a new --out" in capsys.readouterr().err

    assert main(["study", storage, "random"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"study 'random' on {tmp_path / 'shared.journal'}: random on rmnas, seed 0"
    assert "  COMPLETE        4" in shown and "  FAIL            1" in shown
    assert "  slots: 4 done, 0 pending, 0 lost" in shown
    assert f"best valid waf {alone['best_valid']:.4f}: trial {alone['best_trial']}" in "\n".join(shown)
    assert "workers seen: 2" in shown
    for argv, needle in ((["study", storage, "nosuch"], "has no study 'nosuch' (it holds 'random')"),
                         (["study", f"journal:{tmp_path / 'none.journal'}", "x"], "no such journal file"),
                         (["study", "postgresql://u:s3cret@127.0.0.1:1/db", "x"], "u:***@127.0.0.1:1")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err and "s3cret" not in err, err

    # a worker with other settings is refused: before its run folder exists where the strategy can tell
    other = tmp_path / "other"
    assert main(["search", "--no-dashboard", "--out", str(other), *RANDOM, "--trials", "5", "--storage", storage,
                 "--study", "random", *FAST]) == 2
    assert "config.trials=4, this worker has config.trials=5" in capsys.readouterr().err
    assert not other.exists()
    assert main(["search", "--no-dashboard", "--out", str(other), *RANDOM, "--seed", "1", "--storage", storage,
                 "--study", "random", *FAST]) == 2
    assert "was started with seed=0, this worker has seed=1" in capsys.readouterr().err


# -- evolution: generations through the study ---------------------------------------------------------
def test_evolution_workers_breed_through_the_study(tmp_path: Path) -> None:
    storage = f"journal:{tmp_path / 'shared.journal'}"
    a = start(tmp_path / "a", EVOLUTION, storage, "evo")
    b = start(tmp_path / "b", EVOLUTION, storage, "evo")
    alone = single(tmp_path, EVOLUTION)
    finish(a, b)
    ra, rb = load(tmp_path / "a"), load(tmp_path / "b")
    n = len(alone["trials"])
    assert n > 2 and {t.get("generation") for t in ra["trials"]} == {1, 2}  # generation 2 was bred
    assert_each_slot_once(trials_of(storage, "evo"), n, ra, rb)
    same_best(ra, rb, alone)
    for r in (ra, rb):
        assert [(t["value"], t["arch"]) for t in r["trials"]] == [(t["value"], t["arch"]) for t in alone["trials"]]
        assert r["best_genome"] == alone["best_genome"] and r["best_epoch"] == alone["best_epoch"]
        assert [g["best"] for g in r["logbook"]] == [g["best"] for g in alone["logbook"]]


# -- PostgreSQL: TPE -----------------------------------------------------------------------------------
def _pg_binaries() -> tuple[str, str] | None:
    for folder in [None, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        initdb, pg_ctl = shutil.which("initdb", path=folder), shutil.which("pg_ctl", path=folder)
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own in a temporary folder (as the ``postgres`` user when run as root,
    which PostgreSQL refuses); its URL. Skips where no server binaries or no driver are installed."""
    binaries = _pg_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    from sqlalchemy.engine import make_url

    try:  # the driver SQLAlchemy takes for postgresql:// (psycopg from SQLAlchemy 2.1, psycopg2 before)
        make_url("postgresql://x@127.0.0.1/x").get_dialect().import_dbapi()
    except ImportError:
        pytest.skip("no PostgreSQL driver for SQLAlchemy (pip install 'psycopg[binary]' psycopg2-binary)")
    initdb, pg_ctl = binaries
    folder = Path(tempfile.mkdtemp(prefix="nasmerc-pg-"))
    user = None
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)

    def as_server(argv: list[str]) -> subprocess.CompletedProcess:
        def drop() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        return subprocess.run(argv, preexec_fn=drop, capture_output=True, text=True, timeout=60, cwd=folder)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    done = as_server([initdb, "-D", str(data), "-U", "nasmerc", "--auth=trust", "-E", "UTF8", "--no-sync"])
    assert done.returncode == 0, done.stderr
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    done = as_server([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"])
    assert done.returncode == 0, done.stderr + (folder / "server.log").read_text()
    try:
        yield f"postgresql://nasmerc@127.0.0.1:{port}/postgres"
    finally:
        as_server([pg_ctl, "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


def test_tpe_workers_share_a_postgresql_study(tmp_path: Path, postgres_url: str, capsys) -> None:
    a = start(tmp_path / "a", TPE, postgres_url, "tpe")
    b = start(tmp_path / "b", TPE, postgres_url, "tpe")
    finish(a, b)
    ra, rb = load(tmp_path / "a"), load(tmp_path / "b")
    trials = trials_of(postgres_url, "tpe")
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1, 2]
    assert sorted(ra["worker_trials"] + rb["worker_trials"]) == [1, 2, 3]
    same_best(ra, rb)
    complete = [t for t in done if t.state.name == "COMPLETE"]
    assert ra["best_valid"] == max(t.value for t in complete)
    assert ra["study"] == postgres_url and ra["study_name"] == "tpe"
    capsys.readouterr()
    assert main(["study", postgres_url, "tpe"]) == 0
    shown = capsys.readouterr().out
    assert "study 'tpe' on postgresql://nasmerc@127.0.0.1" in shown and "workers seen: " in shown
