"""The dashboards against a real finished run: optuna-dashboard and VisualDL started by the CLI, asked over HTTP,
and the Optuna page rendered by headless Chromium."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import free_port
from searched_run import STUDY, run_config, searched_run

from autoft.run.records import TrialRecord, TrialStatus
from autoft.search.run import SearchOutcome

CHROMIUM = Path("/usr/bin/chromium")
OPTUNA_STATE = {TrialStatus.COMPLETED: "Complete", TrialStatus.STOPPED: "Pruned", TrialStatus.FAILED: "Fail"}


@pytest.fixture(scope="session")
def finished(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SearchOutcome:
    return searched_run(shapes_dir, tmp_path_factory)



def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Server:
    """`python -m autoft.cli dashboard ...` in its own process group, killed (group and all) at the end."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "autoft.cli", "dashboard", *args], stdout=log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, url: str, timeout: float = 60) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dashboard exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                return get_json(url)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        pytest.fail(f"{url} did not answer in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def optuna_server(finished: SearchOutcome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server]]:
    port = free_port()
    server = Server(["optuna", str(finished.run_dir), "--port", str(port)],
                    tmp_path_factory.mktemp("optuna_dash") / "out.log")
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_for(f"{base}/api/studies")
        yield base, server
    finally:
        server.stop()


def _records(run: Path) -> dict[str, TrialRecord]:
    return {p.name: TrialRecord.load(p) for p in (run / "trials").iterdir()}


def _study_id(base: str) -> int:
    studies = get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [STUDY]
    return studies[0]["study_id"]


def test_optuna_dashboard_lists_the_runs_trials_with_states_params_and_epochs(optuna_server, finished) -> None:
    base, server = optuna_server
    assert f"Optuna dashboard for sqlite:///{finished.run_dir / 'optuna.db'}" in server.log.read_text()
    assert f"{STUDY} (4 trials)" in server.log.read_text() and f"{base}/" in server.log.read_text()
    detail = get_json(f"{base}/api/studies/{_study_id(base)}")
    trials = detail["trials"]
    assert len(trials) == 4
    records = _records(finished.run_dir)
    for trial in trials:
        record = records[{a["key"]: a["value"] for a in trial["user_attrs"]}["ray_trial_id"]]
        assert trial["state"] == OPTUNA_STATE[record.status], (trial["number"], record.status)
        assert {p["name"] for p in trial["params"]} == {"learning_rate", "optimizer"}
        # one intermediate val_acc per epoch the trial ran, including the last one and a pruned trial's last
        steps = {v["step"]: v["value"] for v in trial["intermediate_values"]}
        assert sorted(steps) == list(range(1, int(record.epochs_run) + 1))
        assert [steps[s] for s in sorted(steps)] == pytest.approx([h["val_acc"] for h in record.history])
    states = [t["state"] for t in trials]
    assert set(states) <= {"Complete", "Pruned", "Fail"} and states.count("Fail") == 1 and "Complete" in states


def test_optuna_dashboard_is_bound_to_loopback_by_default(optuna_server) -> None:
    base, _ = optuna_server
    port = int(base.rsplit(":", 1)[1])
    other = [ip for ip in _local_ips() if not ip.startswith("127.")]
    if not other:
        pytest.skip("this machine has no non-loopback address to try")
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((other[0], port)) != 0, f"port {port} answers on {other[0]}"


def _local_ips() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ip for ip in out.split() if "." in ip]


def test_visualdl_serves_each_trials_curves_and_the_hparams_view(finished, tmp_path: Path) -> None:
    port = free_port()
    server = Server(["visualdl", str(finished.run_dir), "--port", str(port)], tmp_path / "vdl.log")
    base = f"http://127.0.0.1:{port}/app/api"
    try:
        runs = server.wait_for(f"{base}/runs")["data"]
        records = _records(finished.run_dir)
        ids = sorted(i for i, r in records.items() if r.history)  # the failed trial never finished an epoch
        assert len(ids) == 3
        assert sorted(runs) == sorted(f"{i}/{split}" for i in ids for split in ("train", "val"))
        tags = get_json(f"{base}/scalar/tags")["data"]
        by_run = dict(zip(tags["runs"], map(set, tags["tags"])))
        for trial_id in ids:
            assert by_run[f"{trial_id}/train"] == {"loss", "lr"}
            assert by_run[f"{trial_id}/val"] == {"loss", "acc", "best_acc"}
        first = ids[0]
        acc = get_json(f"{base}/scalar/list?run={first}/val&tag=acc")["data"]
        assert [row[1] for row in acc] == [h["step"] for h in records[first].history]
        assert [row[2] for row in acc] == pytest.approx([h["val_acc"] for h in records[first].history], abs=1e-6)
        hparams = get_json(f"{base}/hparams/indicators")["data"]
        assert {h["name"] for h in hparams["hparams"]} == {"learning_rate", "optimizer"}
        assert {m["name"] for m in hparams["metrics"]} == {"acc", "best_acc", "loss"}
        assert len(get_json(f"{base}/hparams/list")["data"]) == 3
        printed = f"VisualDL for {finished.run_dir / 'trials'} (3 trials): http://127.0.0.1:{port}/"
        assert printed in server.log.read_text()
    finally:
        server.stop()


def test_ray_dashboard_command_explains_how_to_get_it() -> None:
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "dashboard", "ray"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "autoft search CONFIG --ray-dashboard" in out.stdout and "--address" in out.stdout
    assert "ray[default]" in out.stdout


def test_ray_dashboard_without_its_extra_is_a_one_line_user_error(shapes_dir: Path, tmp_path: Path) -> None:
    try:
        import ray.dashboard.optional_deps  # noqa: F401
        pytest.skip("ray[default] is installed here; the missing-extra message cannot be shown")
    except ImportError:
        pass
    import yaml

    config = tmp_path / "shapes.yaml"
    config.write_text(yaml.safe_dump(run_config(shapes_dir)))
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "search", str(config), "--ray-dashboard",
                          "--results-dir", str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "autoft: error: --ray-dashboard: the Ray dashboard needs ray[default]; pip install 'autoft[ray-dashboard]'"]
    assert not (tmp_path / "results").exists()  # checked before any run folder is made


def test_unknown_kind_and_missing_run_are_user_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "autoft.cli", "dashboard"]
    bad = subprocess.run(cmd + ["tensorboard"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown kind 'tensorboard'; valid: optuna, ray, visualdl" in bad.stderr
    missing = subprocess.run(cmd + ["optuna", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "not a run folder (config.yaml missing)" in missing.stderr


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install -y chromium)")
def test_optuna_dashboard_page_renders_the_trials_in_a_browser(optuna_server, finished) -> None:
    base, _ = optuna_server
    study_id = _study_id(base)
    text = visible_text(chromium_dom(f"{base}/dashboard/studies/{study_id}/trials"))
    assert f"{STUDY} (id={study_id})" in text and "4 Trials" in text, text[:1000]
    for record in _records(finished.run_dir).values():  # the trial list: "Trial 0 Fail", "Trial 1 Complete"…
        assert f"Trial {record.number} {OPTUNA_STATE[record.status]}" in text, text[:1000]


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def chromium_dom(url: str) -> str:
    """The DOM after the page's scripts ran (virtual time lets the SPA fetch and render)."""
    with tempfile.TemporaryDirectory(prefix="autoft-chromium-") as profile:
        out = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_plain_progress_shows_counts_of_the_budget_best_params_elapsed_and_eta(capsys) -> None:
    from rich.console import Console

    from autoft.cli.display import Display as _Display, progress_line as _progress_line
    from autoft.search.run import Progress

    p = Progress(budget=8, done=2, running=2, stopped=1, failed=1, interrupted=0, best_val_acc=0.8125,
                 best_params={"learning_rate": 0.00354, "optimizer": "adam"}, elapsed=125.0,
                 last_event="ab12 completed")
    line = ("trials 4/8: 2 done, 1 stopped early, 2 running, 1 failed | best val_acc 0.8125 "
            "(learning_rate=0.00354, optimizer=adam) | 2m05s eta ~2m05s")
    assert _progress_line(p) == line
    with _Display(Console(), quiet=False, plain=True) as plain:
        plain.update(p)
    with _Display(Console(), quiet=True, plain=True) as quiet:
        quiet.update(p)
        quiet.note("Ray dashboard: http://127.0.0.1:8265")  # asked for, so shown even with -q
    assert capsys.readouterr().out.splitlines() == [f"{line} | ab12 completed", "Ray dashboard: http://127.0.0.1:8265"]
    start = Progress(budget=3, done=0, running=1, stopped=0, failed=0, interrupted=0, best_val_acc=None,
                     best_params={}, elapsed=3.0)
    assert _progress_line(start) == ("trials 0/3: 0 done, 0 stopped early, 1 running, 0 failed | best val_acc - () "
                                     "| 0m03s")


def test_visualdl_logging_failure_warns_once_and_never_fails_the_trial(tmp_path: Path) -> None:
    from autoft.observe.visuallog import TrialLog, hparam_value

    blocker = tmp_path / "trial"
    blocker.write_text("a file where the trial folder should be")
    warnings: list[str] = []
    log = TrialLog(blocker, {"learning_rate": 0.01}, warn=warnings.append)
    for step in (4, 8):
        log.write({"epoch": step / 4, "step": step, "train_loss": 1.0, "val_loss": 1.1, "val_acc": 0.5, "lr": 0.01})
    log.close()
    assert len(warnings) == 1 and warnings[0].startswith("VisualDL logging stopped: "), warnings
    assert [hparam_value(v) for v in (True, 3, 0.5, "adam", None)] == ["True", 3, 0.5, "adam", "None"]


def test_optuna_dashboard_for_a_study_that_moved_creates_no_database(tmp_path: Path) -> None:
    """study.json names an SQLite file that is gone: one line, and no empty database is made in its place."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: moved\ndata: {dataset: fashion-mnist-demo}\n")
    gone = tmp_path / "elsewhere" / "study.db"
    gone.parent.mkdir()
    (run / "study.json").write_text(json.dumps({"study": "moved", "storage": f"sqlite:///{gone}"}))
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "dashboard", "optuna", str(run)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"autoft: error: dashboard optuna: {gone}: no such file (the study moved? pass --storage URL)"], out.stderr
    assert not gone.exists()
