"""`autoft dashboard {optuna|ray|visualdl}`: serve a run's dashboards on 127.0.0.1 by default."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from autoft.errors import AutoftError, ConfigError

__all__ = ["serve", "KINDS"]

KINDS = ("optuna", "ray", "visualdl")


def _run_dir(run: Path | None, kind: str) -> Path:
    if run is None:
        raise AutoftError(f"dashboard {kind}: give a run folder, e.g. results/demo-20260101-120000")
    if not (Path(run) / "config.yaml").is_file():
        raise AutoftError(f"{run}: not a run folder (config.yaml missing)")
    return Path(run)


def _storage_url(run: Path | None, storage: str | None) -> str:
    if storage:
        return storage
    db = _run_dir(run, "optuna") / "optuna.db"
    if not db.is_file():
        raise AutoftError(f"{run}: no optuna.db in the run folder; pass --storage URL if the study lives elsewhere")
    return f"sqlite:///{db.resolve()}"


def serve(kind: str, run: Path | None, *, host: str = "127.0.0.1", port: int = 8080, storage: str | None = None) -> None:
    if kind not in KINDS:
        raise ConfigError(f"dashboard: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind == "optuna":
        _optuna(_storage_url(run, storage), host, port)
    elif kind == "visualdl":
        _visualdl(_run_dir(run, kind), host, port)
    else:
        print("The Ray dashboard lives while Ray runs: start a search with `autoft search --ray-dashboard` "
              "(needs `pip install 'ray[default]'`) and open the URL it prints (usually http://127.0.0.1:8265). "
              "With --address, open your cluster's dashboard.")


def _optuna(url: str, host: str, port: int) -> None:
    from optuna_dashboard import run_server

    print(f"Optuna dashboard for {url}: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    run_server(url, host=host, port=port)


def _visualdl(run: Path, host: str, port: int) -> None:
    logdir = run / "trials"
    exe = shutil.which("visualdl") or str(Path(sys.executable).with_name("visualdl"))
    print(f"VisualDL for {logdir}: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    cmd = [exe, "--logdir", str(logdir), "--host", host, "--port", str(port), "--language", "en",
           "--disable-telemetry"]
    try:
        subprocess.run(cmd, check=False)
    except KeyboardInterrupt:
        pass
