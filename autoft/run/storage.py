"""Where a run's Optuna study lives: the database URL (driver picked, password kept out of every record and every
line shown) and the study's name, recorded in the run folder's ``study.json`` so that ``--resume``, ``autoft
report`` and ``autoft dashboard optuna`` find the study from the run alone.

Passwords: the URL given to ``--storage`` may hold one; it is used for that command and never written. Later
commands take it from ``AUTOFT_STORAGE_PASSWORD`` when set, else from libpq's own ``PGPASSWORD`` or
``~/.pgpass`` (PostgreSQL's drivers read those themselves when a URL has no password).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoft._fs import atomic_write_json
from autoft.config.rules import check_run_name
from autoft.errors import ConfigError
from autoft.run.layout import RunDir

__all__ = ["StudyRef", "PASSWORD_ENV", "STUDY_FILE", "driver_url", "public_url", "recorded_url", "shown_url",
           "with_password", "read_study", "write_study", "check_study_name", "hide_secret", "failure_reason",
           "open_storage"]

STUDY_FILE = "study.json"
PASSWORD_ENV = "AUTOFT_STORAGE_PASSWORD"

# backend -> (module, SQLAlchemy driver name) in the order SQLAlchemy itself prefers, and the extra that brings one
_DRIVERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
}
_EXTRAS = {"postgresql": ("PostgreSQL", "postgres"), "mysql": ("MySQL", "mysql")}
_ALIASES = {"postgres": "postgresql"}  # Heroku-style URLs; SQLAlchemy refuses the short name


@dataclass(frozen=True)
class StudyRef:
    """A run's study: ``url`` without any password (None: the run's own ``optuna.db``) and its name."""

    url: str | None
    name: str


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


def open_storage(run_dir: Path, url: str | None, what: str = "--storage") -> Any:
    """The run's own SQLite study (``url`` None), or a database URL (PostgreSQL, MySQL, another SQLite file): its
    driver is picked (autoft.run.storage.driver_url) and a missing password comes from AUTOFT_STORAGE_PASSWORD."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunDir(Path(run_dir))
    label = f"{what} {shown_url(url)}" if url else str(run.optuna_db)
    full = with_password(driver_url(url, what)) if url else run.storage_url()
    try:
        storage = optuna.storages.RDBStorage(full, heartbeat_interval=None)
        storage.get_all_studies()  # a garbage SQLite file opens lazily: read it now, not inside the first trial
        return storage
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or file
        raise ConfigError(f"{label}: cannot open the Optuna study storage ({failure_reason(exc)})") from None


def failure_reason(exc: BaseException) -> str:
    """``Kind: first line`` of a database error (the driver's own when SQLAlchemy wraps one), password hidden."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {hide_secret(lines[0][:200] if lines else '')}"


def check_study_name(key: str, name: object) -> str:
    """A study name follows the run-name rule: the default study of a run is named after its folder."""
    return check_run_name(key, name)


def write_study(run: RunDir, ref: StudyRef) -> None:
    atomic_write_json(run.path / STUDY_FILE, {"study": ref.name, "storage": ref.url})


def read_study(run: RunDir, default_name: str) -> StudyRef:
    """The run's study from ``study.json``; a run from before it was recorded: ``default_name`` in optuna.db."""
    path = run.path / STUDY_FILE
    if not path.is_file():
        return StudyRef(url=None, name=default_name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or set(raw) != {"study", "storage"}:
        raise ConfigError(f"{path}: must be an object with keys 'study' and 'storage'")
    url = raw["storage"]
    if url is not None and (not isinstance(url, str) or not url):
        raise ConfigError(f"{path}: 'storage' must be a database URL or null, got {url!r}")
    if url is not None and _parse(url, str(path)).password:
        raise ConfigError(f"{path}: 'storage' must not hold a password (set {PASSWORD_ENV})")
    return StudyRef(url=url, name=check_study_name(f"{path}: study", raw["study"]))
