"""Hostile places to keep a study or find a cluster: an --address or --storage where something else listens (a web
server, a port that accepts and never answers, one that hangs up), a read-only or damaged SQLite file, a shared
study with another space, and drivers that create or join one study at once. Real servers on 127.0.0.1 started
here, real SQLite files, a real PostgreSQL (tests/servers.py), real Optuna; nothing starts Ray."""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from autoft.config import config_from_dict, config_to_dict, load_config
from autoft.errors import ConfigError
from autoft.run.layout import RunDir
from autoft.run.storage import (StudyRef, connect_timeout, create_or_join_study, open_storage, read_study,
                                write_study)
from autoft.search.budget import Budget
from autoft.search.run import _undo_new_run
from autoft.search.searcher import StudySearch, joined_seed, sampler_seed

from cli_helpers import assert_one_line_exit_2
from searched_run import shapes_config

DEADLINE = 20.0  # seconds a refused start may take, the CLI's own start-up included


def _config(tmp: Path, shapes_dir: Path) -> Path:
    raw = shapes_config(shapes_dir, trials=2, max_concurrent=1, scheduler="fifo")
    raw["train"]["epochs"] = 1
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI as a user runs it, and how long it took."""
    full = {k: v for k, v in os.environ.items() if k not in ("AUTOFT_DEBUG", "AUTOFT_CONNECT_TIMEOUT")}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "autoft.cli", *args], capture_output=True, text=True, timeout=120,
                         env={**full, **(env or {})})
    return out, time.monotonic() - started


# --- servers that are not what the address says ------------------------------------------------------------------

class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def web_server() -> Iterator[int]:
    """A real HTTP server (the standard library's) on a free loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@contextlib.contextmanager
def hang_up_server() -> Iterator[int]:
    """A port that accepts each connection and closes it at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


SERVERS = {"web": web_server, "silent": silent_server, "hang-up": hang_up_server}


@pytest.mark.parametrize("kind, timeout, needle", [
    ("web", "2", "not a Ray GCS (it answers '<!DOCTYPE'…: a web server or another service, not gRPC)"),
    ("silent", None, "not a Ray GCS (no answer in 10 s; AUTOFT_CONNECT_TIMEOUT sets the wait)"),  # the default
    ("silent", "2", "not a Ray GCS (no answer in 2 s;"),
    ("hang-up", "2", "not a Ray GCS (it closed the connection without answering)"),
])
def test_an_address_where_ray_does_not_answer_is_one_line_in_bounded_time(
        kind: str, timeout: str | None, needle: str, shapes_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    with SERVERS[kind]() as port:
        out, took = _cli("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results),
                         "--address", f"127.0.0.1:{port}", env={"AUTOFT_CONNECT_TIMEOUT": timeout} if timeout else None)
    assert_one_line_exit_2(out, f"--address 127.0.0.1:{port}: {needle}", results)
    assert took < DEADLINE, took


@pytest.mark.parametrize("kind", ["silent", "web"])
def test_a_database_server_that_never_answers_is_one_line_in_bounded_time(kind: str, shapes_dir: Path,
                                                                          tmp_path: Path) -> None:
    results = tmp_path / "results"
    with SERVERS[kind]() as port:  # a web server waits for a line end that PostgreSQL's start-up packet lacks
        url = f"postgresql://autoft:hunter2@127.0.0.1:{port}/autoft"
        out, took = _cli("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results),
                         "--storage", url, env={"AUTOFT_CONNECT_TIMEOUT": "3"})
    assert_one_line_exit_2(out, f"--storage postgresql://autoft:***@127.0.0.1:{port}/autoft: cannot open the Optuna "
                                "study storage (no answer from the database server in 3 s;", results)
    assert "hunter2" not in out.stderr
    assert took < DEADLINE, took


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "nan", "inf", "1e400"])
def test_the_connect_timeout_must_be_a_positive_number_of_seconds(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOFT_CONNECT_TIMEOUT", raw)
    with pytest.raises(ConfigError, match=f"AUTOFT_CONNECT_TIMEOUT: must be a number of seconds > 0, got '{raw}'"):
        connect_timeout()
    monkeypatch.setenv("AUTOFT_CONNECT_TIMEOUT", "2.5")
    assert connect_timeout() == 2.5
    monkeypatch.delenv("AUTOFT_CONNECT_TIMEOUT")
    assert connect_timeout() == 10.0


# --- SQLite files that open but cannot serve a search ------------------------------------------------------------

def _study_file(path: Path, name: str = "old", trials: int = 0) -> Path:
    """A real Optuna SQLite file holding one study of ``trials`` finished trials, closed again."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    space = {"learning_rate": FloatDistribution(1e-3, 1e-2, log=True),
             "optimizer": CategoricalDistribution(["adam", "momentum"])}
    for i in range(trials):
        trial = study.ask(space)
        trial.set_user_attr("note", "x" * 200)  # bulk, so the file spans many pages
        study.tell(trial, i / max(trials, 1))
    storage.engine.dispose()  # no open file: a mount can go read-only
    return path


@contextlib.contextmanager
def read_only_mount(tmp: Path) -> Iterator[Path]:
    """A folder on a real file system mounted read-only after an Optuna file was put in it (root writes through
    mode bits, not through a read-only mount)."""
    folder = tmp / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        _study_file(folder / "ro.db", trials=2)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder / "ro.db"
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("how", ["uri-mode-ro", "read-only-mount"])
def test_a_read_only_sqlite_storage_is_one_line(how: str, shapes_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    with contextlib.ExitStack() as stack:
        if how == "uri-mode-ro":
            db = _study_file(tmp_path / "ro.db", trials=2)
            url = f"sqlite:///file:{db}?mode=ro&uri=true"  # SQLite's own read-only open
        else:
            db = stack.enter_context(read_only_mount(tmp_path))
            url = f"sqlite:///{db}"
        before = db.read_bytes()
        out, _ = _cli("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results), "--storage", url)
        assert_one_line_exit_2(out, "cannot write the Optuna study storage (OperationalError: attempt to write a "
                                    "readonly database); a search records every trial there", results)
        assert db.read_bytes() == before


def test_reading_a_read_only_storage_still_works(tmp_path: Path) -> None:
    """Only a search needs to write: reading (a report of an archived run) opens the same file fine."""
    db = _study_file(tmp_path / "ro.db", trials=2)
    storage = open_storage(tmp_path, f"sqlite:///file:{db}?mode=ro&uri=true")
    assert [s.study_name for s in storage.get_all_studies()] == ["old"]
    with pytest.raises(ConfigError, match="cannot write the Optuna study storage"):
        open_storage(tmp_path, f"sqlite:///file:{db}?mode=ro&uri=true", write=True)


def _damage(path: Path) -> None:
    """Garbage over two pages in the middle of the file (seeded: the same bytes every run)."""
    import random

    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(random.Random(7).randbytes(8192))


def _resumable_run(tmp: Path, shapes_dir: Path) -> Path:
    """A run folder as a search leaves it: its config.yaml and optuna.db with 60 trials (the study named after
    the config, as before study.json)."""
    run_dir = tmp / "results" / "old-run"
    (run_dir / "trials").mkdir(parents=True)
    cfg = load_config(_config(tmp, shapes_dir))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    _study_file(run_dir / "optuna.db", name=cfg.name, trials=60)
    return run_dir


def test_a_damaged_optuna_db_on_resume_is_one_line_and_changes_nothing(shapes_dir: Path, tmp_path: Path) -> None:
    run_dir = _resumable_run(tmp_path, shapes_dir)
    intact = open_storage(run_dir, None, write=True)  # the same file passes every check before the damage
    assert [s.n_trials for s in optuna.get_all_study_summaries(intact)] == [60]
    intact.engine.dispose()
    _damage(run_dir / "optuna.db")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    out, _ = _cli("search", "--resume", str(run_dir))
    assert_one_line_exit_2(out, f"{run_dir / 'optuna.db'}: the SQLite database is damaged (")
    assert "restore it from a copy, or start a new run" in out.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == before


# --- joining a shared study ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stored, parameter", [
    ({"optimizer": CategoricalDistribution(["adam", "momentum", "rmsprop"])}, "space.optimizer is categorical"),
    ({"learning_rate": FloatDistribution(1e-3, 1e-2, log=False)}, "space.learning_rate is float 0.001..0.01 (log)"),
])
def test_joining_a_study_with_another_space_is_refused_naming_the_parameter(
        stored: dict, parameter: str, shapes_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="shared", direction="maximize")
    for value in (0.4, 0.6):
        study.tell(study.ask(stored), value)
    results = tmp_path / "results"
    out, _ = _cli("search", str(_config(tmp_path, shapes_dir)), "--results-dir", str(results),
                  "--storage", f"sqlite:///{db}", "--study", "shared")
    assert_one_line_exit_2(out, f"--study shared: {parameter}", results)
    assert "but the study's trials drew it from" in out.stderr and "join another --study" in out.stderr
    assert len(optuna.load_study(study_name="shared", storage=f"sqlite:///{db}").trials) == 2


def _open_and_create(url: str, run_dir: Path) -> subprocess.Popen:
    """A driver process: says ready once imported, then at the word go opens the storage (for writing) and
    creates or joins study 's'."""
    code = ("import sys; from pathlib import Path\n"
            "from autoft.run.storage import open_storage, create_or_join_study\n"
            "print('ready', flush=True); sys.stdin.readline()\n"
            "storage = open_storage(Path(sys.argv[2]), sys.argv[1], write=True)\n"
            "print(create_or_join_study(storage, 's'))\n")
    return subprocess.Popen([sys.executable, "-c", code, url, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _race(url: str, tmp: Path, drivers: int = 3) -> list[str]:
    """``drivers`` processes that open one fresh database and create one study at the same moment."""
    procs = [_open_and_create(url, tmp) for _ in range(drivers)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1][-2000:]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    said = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in said]
    return sorted(out.strip() for out, _ in said)


def test_drivers_creating_one_fresh_sqlite_study_at_once_all_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert _race(url, tmp_path) == ["False", "False", "True"]  # exactly one made it; the others joined
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["s"]


def test_drivers_creating_one_fresh_postgresql_study_at_once_all_start(pg, tmp_path: Path) -> None:
    import psycopg

    for round_ in range(3):  # Optuna's table creation raced in every round of 6 before (a duplicate pg_type key)
        database = f"fresh{round_}"
        with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        url = f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{database}"
        assert _race(url, tmp_path) == ["False", "False", "True"], round_
        summaries = optuna.get_all_study_summaries(url.replace("postgresql://", "postgresql+psycopg://"))
        assert [s.study_name for s in summaries] == ["s"]


def _draw_together(cfg, drivers: list[tuple[object, StudyRef]], rounds: int) -> list[float]:
    """What the drivers' searchers propose when they start at once: each asks in turn, ``rounds`` times, before
    any trial finishes (Tune's trials run for minutes), then every trial is told done."""
    searches = [StudySearch(cfg, storage, ref.name, sampler_seed(cfg, ref, 0), Budget()) for storage, ref in drivers]
    asked = [(search, f"{n}-{i}") for i in range(rounds) for n, search in enumerate(searches)]
    rates = [search.suggest(trial_id)["learning_rate"] for search, trial_id in asked]
    for search, trial_id in asked:
        search.on_trial_complete(trial_id, {"val_acc": 0.5, "best_val_acc": 0.5, "training_iteration": 1})
    return rates


def test_drivers_joining_one_study_with_one_seed_draw_different_points(shapes_dir: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(shapes_config(shapes_dir, trials=4, seed=0))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = (open_storage(tmp_path / name, url, write=True) for name in ("a", "b"))
    for study in ("alike", "shared"):
        assert create_or_join_study(first, study) is True
        assert create_or_join_study(second, study) is False
    alike = StudyRef(url=url, name="alike")
    assert len(set(_draw_together(cfg, [(first, alike), (second, alike)], 2))) == 2  # one seed: the same 2 points
    made = StudyRef(url=url, name="shared")
    joined = StudyRef(url=url, name="shared", sampler_seed=joined_seed(cfg.search.seed, tmp_path / "b"))
    assert sampler_seed(cfg, made, 0) == 0 and sampler_seed(cfg, made, 3) == 3  # the run that made it: search.seed
    rates = _draw_together(cfg, [(first, made), (second, joined)], 2)
    assert len(set(rates)) == 4, rates
    assert joined_seed(0, tmp_path / "b") == joined.sampler_seed  # the same run draws the same points again
    assert joined.sampler_seed not in (joined_seed(0, tmp_path / "c"), joined_seed(1, tmp_path / "b"))


def test_study_json_keeps_a_joined_seed(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    write_study(run, StudyRef(url=None, name="shared", sampler_seed=1234))
    assert read_study(run, "x") == StudyRef(url=None, name="shared", sampler_seed=1234)
    write_study(run, StudyRef(url=None, name="own"))
    assert json.loads((tmp_path / "study.json").read_text()) == {"study": "own", "storage": None}
    for bad in (True, -1, 2**31, "7", 1.5):
        (tmp_path / "study.json").write_text(json.dumps({"study": "s", "storage": None, "sampler_seed": bad}))
        with pytest.raises(ConfigError, match="'sampler_seed' must be an integer in"):
            read_study(run, "x")


# --- what a refused new run leaves ------------------------------------------------------------------------------

def test_a_new_run_stopped_before_its_first_trial_leaves_its_folder_as_it_found_it(tmp_path: Path) -> None:
    def written(run_dir: Path) -> Path:
        (run_dir / "trials").mkdir(parents=True)
        (run_dir / ".lock").write_text("1\n")
        (run_dir / "config.yaml").write_text("name: x\n")
        return run_dir

    made = written(tmp_path / "made")
    _undo_new_run(made, created=True)
    assert not made.exists() and list(tmp_path.iterdir()) == []

    found = written(tmp_path / "found")  # the user's empty folder, taken by --name
    _undo_new_run(found, created=False)
    assert found.is_dir() and [p.name for p in found.iterdir()] == [".lock"]

    ran = written(tmp_path / "ran")
    (ran / "trials" / "t0").mkdir()
    _undo_new_run(ran, created=True)
    assert (ran / "trials" / "t0").is_dir() and (ran / "config.yaml").is_file()  # a run with a trial is kept
