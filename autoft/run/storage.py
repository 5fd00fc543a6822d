"""Where a run's Optuna study lives: the database URL (driver picked, password kept out of every record and every
line shown) and the study's name, recorded in the run folder's ``study.json`` so that ``--resume``, ``autoft
report`` and ``autoft dashboard optuna`` find the study from the run alone.

Passwords: the URL given to ``--storage`` may hold one; it is used for that command and never written. Later
commands take it from ``AUTOFT_STORAGE_PASSWORD`` when set, else from libpq's own ``PGPASSWORD`` or
``~/.pgpass`` (PostgreSQL's drivers read those themselves when a URL has no password).

Waits: opening a database server is bounded by ``AUTOFT_CONNECT_TIMEOUT`` seconds (default 10; the Ray address
probe in autoft.search.tuner uses it too): a server that accepts a connection and never answers is one line, not a
hang.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from autoft._fs import atomic_write_json
from autoft.config.rules import SEEDS, check_run_name
from autoft.errors import ConfigError
from autoft.run.layout import RunDir

__all__ = ["StudyRef", "PASSWORD_ENV", "STUDY_FILE", "CONNECT_TIMEOUT_ENV", "connect_timeout", "driver_url",
           "public_url", "recorded_url", "shown_url", "with_password", "read_study", "write_study", "check_study_name",
           "hide_secret", "failure_reason", "open_storage", "create_or_join_study"]

STUDY_FILE = "study.json"
PASSWORD_ENV = "AUTOFT_STORAGE_PASSWORD"
CONNECT_TIMEOUT_ENV = "AUTOFT_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 10.0  # a database or Ray head on a LAN answers in milliseconds
_T = TypeVar("_T")

# backend -> (module, SQLAlchemy driver name) in the order SQLAlchemy itself prefers, and the extra that brings one
_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
}
_EXTRAS = {"postgresql": ("PostgreSQL", "postgres"), "mysql": ("MySQL", "mysql")}
_ALIASES = {"postgres": "postgresql"}  # Heroku-style URLs; SQLAlchemy refuses the short name


@dataclass(frozen=True)
class StudyRef:
    """A run's study: ``url`` without any password (None: the run's own ``optuna.db``) and its name.
    ``sampler_seed``: set when the run joined a study that already existed (autoft.search.searcher.sampler_seed)."""

    url: str | None
    name: str
    sampler_seed: int | None = None


def connect_timeout() -> float:
    """Seconds a database server or a Ray head may take to answer (``AUTOFT_CONNECT_TIMEOUT``, default 10)."""
    raw = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{CONNECT_TIMEOUT_ENV}: must be a number of seconds > 0, got {raw!r}")
    return seconds


def _parse(url: str, what: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"{what} {hide_secret(url)}: not a database URL ({str(exc).splitlines()[0][:120]}); "
                          "e.g. postgresql://user@host:5432/db or sqlite:////abs/optuna.db") from None


def hide_secret(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ***."""
    return re.sub(r"(://[^/:@\s]*:)[^@/\s]*@", r"\1***@", text)


def driver_url(url: str, what: str = "--storage") -> str:
    """``url`` with a database driver that is installed (``postgresql://`` → psycopg 3, else psycopg2), its SQLite
    path made absolute (trials and later commands run elsewhere); one line naming the extra when none is."""
    parsed = _parse(url, what)
    backend, _, driver = parsed.drivername.partition("+")
    backend = _ALIASES.get(backend, backend)
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
        return parsed.render_as_string(hide_password=False)
    if backend not in _DRIVERS:
        return url  # SQLAlchemy's own backends and plugins: it says what is wrong when the storage is opened
    parsed = parsed.set(drivername=f"{backend}+{driver}" if driver else backend)
    known = dict((name, module) for module, name in _DRIVERS[backend])
    wanted = [(known.get(driver, driver), driver)] if driver else [(m, n) for m, n in _DRIVERS[backend]]
    for module, name in wanted:
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"{backend}+{name}").render_as_string(hide_password=False)
    label, extra = _EXTRAS[backend]
    needs = f"its driver {driver!r}" if driver else "a database driver"
    raise ConfigError(f"{what} {shown_url(url)}: {label} needs {needs}, which is not installed; "
                      f"pip install 'autoft[{extra}]'")


def public_url(url: str) -> str:
    """``url`` as a run records it: no password at all."""
    parsed = _parse(url, "--storage")
    return parsed._replace(password=None).render_as_string(hide_password=False) if parsed.password else url


def recorded_url(url: str) -> str:
    """``url`` as ``study.json`` keeps it: as given (a teammate's driver may differ), no password, a SQLite path made
    absolute."""
    if _parse(url, "--storage").drivername.startswith("sqlite"):
        return public_url(driver_url(url))
    driver_url(url)  # a missing driver is refused now, before anything is written
    return public_url(url)


def shown_url(url: str) -> str:
    """``url`` as printed: the password, if any, as ***."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: hide what looks like a password
        return hide_secret(url)
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def with_password(url: str) -> str:
    """``url`` with ``AUTOFT_STORAGE_PASSWORD`` put in when it has no password of its own."""
    secret = os.environ.get(PASSWORD_ENV)
    parsed = _parse(url, "--storage")
    if not secret or parsed.password or parsed.drivername.startswith("sqlite"):
        return url
    return parsed.set(password=secret).render_as_string(hide_password=False)


def open_storage(run_dir: Path, url: str | None, what: str = "--storage", *, write: bool = False) -> Any:
    """The run's own SQLite study (``url`` None), or a database URL (PostgreSQL, MySQL, another SQLite file): its
    driver is picked (autoft.run.storage.driver_url) and a missing password comes from AUTOFT_STORAGE_PASSWORD.
    A damaged SQLite file, a server that does not answer within ``connect_timeout()`` and, with ``write``, a
    database this process cannot write are one line (ConfigError) now, not a traceback inside the first trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunDir(Path(run_dir))
    label = f"{what} {shown_url(url)}" if url else str(run.optuna_db)
    full = with_password(driver_url(url, what)) if url else run.storage_url()
    timeout = connect_timeout()
    if _parse(full, what).drivername.startswith("sqlite"):  # a file: no server to wait for
        return _checked(full, timeout, label, write)
    try:
        return _within(timeout, lambda: _checked(full, timeout, label, write))
    except TimeoutError:
        raise ConfigError(f"{label}: cannot open the Optuna study storage (no answer from the database server in "
                          f"{timeout:g} s; {CONNECT_TIMEOUT_ENV} sets the wait)") from None


def _checked(url: str, timeout: float, label: str, write: bool) -> Any:
    try:
        storage = _opened(url, timeout)
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or file
        raise ConfigError(f"{label}: cannot open the Optuna study storage ({failure_reason(exc)})") from None
    if storage.engine.dialect.name == "sqlite":
        _check_intact(storage, label)
    if write:
        _check_writable(storage, label)
    return storage


_CREATION_TRIES = 5


def _opened(url: str, timeout: float) -> Any:
    """An RDBStorage, read once (a garbage SQLite file opens lazily: read it now, not inside the first trial).
    Drivers opening a fresh database at once race in Optuna's table creation (a duplicate key, a table that
    "already exists"): the loser tries again, and finds the tables made."""
    import optuna

    tries = 0
    while True:
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url, timeout),
                                                 heartbeat_interval=None)
            storage.get_all_studies()
            return storage
        except Exception as exc:
            tries += 1
            if tries == _CREATION_TRIES or not _creation_race(exc):
                raise
            time.sleep(0.2 * tries)


def _creation_race(exc: BaseException) -> bool:
    from sqlalchemy.exc import DatabaseError, IntegrityError

    return isinstance(exc, IntegrityError) or (isinstance(exc, DatabaseError) and "already exists" in str(exc))


def _engine_kwargs(url: str, timeout: float) -> dict[str, Any]:
    """The driver's own connect timeout, a second past the deadline (whole seconds; libpq's least is 2): the
    deadline's line speaks first, the connection it gave up on ends soon after, and every later connection of the
    search is bounded alike."""
    backend = _parse(url, "--storage").drivername.partition("+")[0]
    if backend in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": max(2, math.ceil(timeout) + 1)}}
    return {}


def _within(seconds: float, work: Callable[[], _T]) -> _T:
    """``work()``'s result, or TimeoutError after ``seconds``: a server that accepts a connection and then never
    answers would hold the command forever. The abandoned thread ends at the driver's connect timeout."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="autoft-open-storage", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


def _check_intact(storage: Any, label: str) -> None:
    """SQLite's own quick check: damage in pages no start-up query reads would otherwise surface mid-search."""
    try:
        with storage.engine.connect() as conn:
            said = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
    except Exception as exc:
        said = [failure_reason(exc)]
    if said != ["ok"]:
        first = " ".join(said[0].split())[:160] if said else "no answer"
        raise ConfigError(f"{label}: the SQLite database is damaged ({first}); restore it from a copy, or start "
                          "a new run")


def _check_writable(storage: Any, label: str) -> None:
    """A write that is rolled back: a read-only file, folder, mount or database role opens and reads fine and fails
    at the first trial. The row exists in every Optuna schema; rewriting it needs a real write (a journal, a
    privilege)."""
    from sqlalchemy import text

    try:
        with storage.engine.connect() as conn:
            with conn.begin() as tx:
                conn.execute(text("UPDATE version_info SET library_version = library_version"))
                tx.rollback()
    except Exception as exc:
        raise ConfigError(f"{label}: this process cannot write the Optuna study storage ({failure_reason(exc)}); a "
                          "search records every trial there") from None


def create_or_join_study(storage: Any, name: str) -> bool:
    """Create the study ``name`` (maximising), or find it made: True when this call created it. Exactly one of
    several drivers starting at once creates it (the storage's unique key decides); the others join."""
    import optuna

    try:
        optuna.create_study(storage=storage, study_name=name, direction="maximize")
        return True
    except optuna.exceptions.DuplicatedStudyError:
        return False


def open_read_only(run_dir: Path, url: str | None, what: str = "--storage") -> Any:
    """``open_storage`` for a command that only reads the study (``autoft report``), creating nothing: a SQLite file
    must exist and is opened read-only (SQLite would make a missing one, empty), no table is made in a server
    database, and a server has ``connect_timeout()`` to answer."""
    from urllib.parse import quote

    import optuna
    from sqlalchemy.engine import URL

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = RunDir(Path(run_dir)).optuna_db
    label = f"{what} {shown_url(url)}" if url else str(db)
    full = _parse(with_password(driver_url(url, what)), what) if url else URL.create("sqlite", database=str(db))
    timeout, sqlite = connect_timeout(), full.get_backend_name() == "sqlite"
    if sqlite:
        if not full.database or not Path(full.database).is_file():
            raise ConfigError(f"{label}: no such file")
        full = full.set(database=f"file:{quote(full.database)}", query={**full.query, "mode": "ro", "uri": "true"})
    rendered = full.render_as_string(hide_password=False)

    def opened() -> Any:
        storage = optuna.storages.RDBStorage(rendered, engine_kwargs=_engine_kwargs(rendered, timeout),
                                             heartbeat_interval=None, skip_table_creation=True)
        storage.get_all_studies()
        return storage

    try:
        return opened() if sqlite else _within(timeout, opened)
    except TimeoutError:
        reason = f"no answer from the database server in {timeout:g} s; {CONNECT_TIMEOUT_ENV} sets the wait"
    except Exception as exc:  # Optuna wraps the driver's error (connection refused…) in StorageInternalError
        cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ else exc
        reason = failure_reason(cause)
    raise ConfigError(f"{label}: cannot open the Optuna study storage ({reason})")


def failure_reason(exc: BaseException) -> str:
    """``Kind: first line`` of a database error (the driver's own when SQLAlchemy wraps one), password hidden."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {hide_secret(lines[0][:200] if lines else '')}"


def check_study_name(key: str, name: object) -> str:
    """A study name follows the run-name rule: the default study of a run is named after its folder."""
    return check_run_name(key, name)


def write_study(run: RunDir, ref: StudyRef) -> None:
    seed = {} if ref.sampler_seed is None else {"sampler_seed": ref.sampler_seed}
    atomic_write_json(run.path / STUDY_FILE, {"study": ref.name, "storage": ref.url, **seed})


def read_study(run: RunDir, default_name: str) -> StudyRef:
    """The run's study from ``study.json``; a run from before it was recorded: ``default_name`` in optuna.db."""
    path = run.path / STUDY_FILE
    if not path.is_file():
        return StudyRef(url=None, name=default_name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or not {"study", "storage"} <= set(raw) <= {"study", "storage", "sampler_seed"}:
        raise ConfigError(f"{path}: must be an object with keys 'study', 'storage' (and 'sampler_seed')")
    url = raw["storage"]
    if url is not None and (not isinstance(url, str) or not url):
        raise ConfigError(f"{path}: 'storage' must be a database URL or null, got {url!r}")
    if url is not None and _parse(url, str(path)).password:
        raise ConfigError(f"{path}: 'storage' must not hold a password (set {PASSWORD_ENV})")
    seed = raw.get("sampler_seed")
    if seed is not None and (type(seed) is not int or not 0 <= seed < SEEDS):
        raise ConfigError(f"{path}: 'sampler_seed' must be an integer in [0, {SEEDS}), got {seed!r}")
    return StudyRef(url=url, name=check_study_name(f"{path}: study", raw["study"]), sampler_seed=seed)
