"""`autoft dashboard {optuna|ray|visualdl}`: serve a run's dashboards, bound to 127.0.0.1 unless told otherwise."""
from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

from autoft.errors import AutoftError, ConfigError
from autoft.run.layout import RunDir
from autoft.run.storage import driver_url, failure_reason, read_study, shown_url, with_password

__all__ = ["serve", "KINDS", "DEFAULT_PORTS", "ray_dashboard_help"]

KINDS = ("optuna", "ray", "visualdl")
DEFAULT_PORTS = {"optuna": 8080, "visualdl": 8040}


def _run_dir(run: Path | None, kind: str) -> Path:
    if run is None:
        raise AutoftError(f"dashboard {kind}: give a run folder, e.g. results/demo-20260101-120000")
    return RunDir.require(run, f"dashboard {kind}:").path


def _storage_url(run: Path | None, storage: str | None) -> tuple[str, str | None]:
    """The database to serve (with its password, for the server only) and the study the run's study.json names."""
    if storage:
        return with_password(driver_url(storage)), None
    rundir = RunDir(_run_dir(run, "optuna"))
    legacy = rundir.load_config("dashboard optuna").name if rundir.config_file.is_file() else rundir.path.name
    ref = read_study(rundir, legacy)
    if ref.url is not None:
        return with_password(driver_url(ref.url, f"dashboard optuna: {rundir.path.name}'s storage")), ref.name
    if not rundir.optuna_db.is_file():
        raise AutoftError(f"dashboard optuna: no optuna.db in {run}; pass --storage URL if the study lives elsewhere")
    return f"sqlite:///{rundir.optuna_db}", ref.name


def serve(kind: str, run: Path | None, *, host: str = "127.0.0.1", port: int | None = None,
          storage: str | None = None) -> None:
    """Serve until Ctrl-C (optuna, visualdl); for ray, say how to reach the Ray dashboard."""
    if kind not in KINDS:
        raise ConfigError(f"dashboard: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "ray":
        print(ray_dashboard_help())
        return
    port = DEFAULT_PORTS[kind] if port is None else port
    if not 0 < port < 65536:
        raise ConfigError(f"dashboard --port: must be in 1..65535, got {port}")
    _warn_if_exposed(host)
    if kind == "optuna":
        _optuna(*_storage_url(run, storage), host, port)
    else:
        _visualdl(_run_dir(run, kind), host, port)


def _warn_if_exposed(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"warning: serving on {host}: the dashboard has no login; anyone who can reach this port can read "
              "the run", file=sys.stderr)


def _optuna(url: str, study: str | None, host: str, port: int) -> None:
    import optuna
    from optuna_dashboard import run_server

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _refuse_missing_sqlite(url)
    try:
        summaries = optuna.get_all_study_summaries(url, include_best_trial=False)
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL
        raise AutoftError(f"dashboard optuna: cannot open {shown_url(url)} ({failure_reason(exc)})") from None
    studies = ", ".join(f"{s.study_name} ({s.n_trials} trials)" for s in summaries) or "no study yet"
    this = f" this run's study: {study};" if study else ""
    print(f"Optuna dashboard for {shown_url(url)} [{studies}];{this} http://{_url_host(host)}:{port}/  "
          "(Ctrl-C to stop)", flush=True)
    run_server(url, host=host, port=port)


def _refuse_missing_sqlite(url: str) -> None:
    """SQLite makes a missing file, empty: a dashboard for a study that moved would serve nothing and leave an
    empty database behind."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        raise AutoftError(f"dashboard optuna: {parsed.database}: no such file (the study moved? pass --storage URL)")


def _visualdl(run: Path, host: str, port: int) -> None:
    logdir = run / "trials"
    logged = sorted(p.parent.name for p in logdir.glob("*/visualdl")) if logdir.is_dir() else []
    if not logged:
        print(f"note: no trial in {logdir} has VisualDL logs yet; trials write trials/<id>/visualdl/ as they "
              "evaluate", file=sys.stderr)
    print(f"VisualDL for {logdir} ({len(logged)} trials): http://{_url_host(host)}:{port}/  (Ctrl-C to stop)",
          flush=True)
    cmd = [sys.executable, "-m", "visualdl.server.app", "--logdir", str(logdir), "--host", host,
           "--port", str(port), "--language", "en", "--disable-telemetry"]
    try:
        subprocess.run(cmd, check=False)
    except KeyboardInterrupt:
        pass


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ray_dashboard_help() -> str:
    return (
        "The Ray dashboard lives as long as the Ray instance that runs the trials:\n"
        "  local:   autoft search CONFIG --ray-dashboard   (needs: pip install 'autoft[ray-dashboard]', i.e. "
        "ray[default])\n"
        "           prints 'Ray dashboard: http://127.0.0.1:8265' when Ray starts; it closes when the search ends.\n"
        "  cluster: autoft search CONFIG --address HEAD:6379 (or auto) prints the cluster's dashboard URL "
        "when it attaches;\n"
        "           it is usually http://HEAD:8265 and outlives the search.\n"
        "With Ray's token authentication on, the page asks for the token that `ray get-auth-token` prints.")
