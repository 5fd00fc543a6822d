"""Failures are recorded and the search goes on; a SIGKILLed search resumes; the time budget stops launching."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from safetensors.numpy import save_file

from autoft.config import config_from_dict
from autoft.run.records import TrialStatus, read_trials
from autoft.search.run import search

from searched_run import shapes_config
from servers import kill_marked, marked_pids


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoft.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def bad_weights(tmp_path: Path) -> Path:
    """A weights file whose stem convolution has the wrong shape: loading it fails inside the trial."""
    path = tmp_path / "bad.safetensors"
    save_file({"backbone.stem.conv.weight": np.zeros((3, 3, 1, 1), np.float32)}, str(path))
    return path


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(shapes_dir: Path, bad_weights: Path,
                                                                    tmp_path: Path) -> None:
    raw = shapes_config(shapes_dir, trials=3, enqueue=[
        {"learning_rate": 0.003, "pretrained": "imagenet"},
        {"learning_rate": 1.0e30, "pretrained": "imagenet"},
        {"learning_rate": 0.003, "pretrained": str(bad_weights)},
    ])
    raw["train"]["epochs"] = 1
    raw["space"] = {"learning_rate": {"type": "categorical", "choices": [0.003, 1.0e30]},
                    "pretrained": {"type": "categorical", "choices": ["imagenet", str(bad_weights)]}}
    outcome = search(config_from_dict(raw), results_dir=tmp_path, name="fail")
    rows = {r["learning_rate"] + "|" + Path(r["pretrained"]).name: r
            for r in csv.DictReader((outcome.run_dir / "leaderboard.csv").open())}
    assert rows["0.003|imagenet"]["status"] == "completed" and rows["0.003|imagenet"]["rank"] == "1"
    nan = rows["1e+30|imagenet"]
    assert nan["status"] == "failed" and "loss became nan" in nan["error"] and nan["val_acc"] == ""
    bad = rows["0.003|bad.safetensors"]
    assert bad["status"] == "failed" and "WeightsError" in bad["error"] and "\n" not in bad["error"]
    study = optuna.load_study(study_name=outcome.run_dir.name, storage=f"sqlite:///{outcome.run_dir / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]
    for record in read_trials(outcome.run_dir):
        on_disk = json.loads((outcome.run_dir / "trials" / record.trial_id / "trial.json").read_text())
        assert on_disk["status"] == record.status.value and (record.error is None) == (record.status.finished)
    assert outcome.best_model is not None and not outcome.all_failed


def test_every_trial_failing_exits_1_with_the_most_common_error(shapes_dir: Path, tmp_path: Path) -> None:
    raw = shapes_config(shapes_dir, trials=2)
    raw["train"]["epochs"] = 1
    raw["space"] = {"learning_rate": {"type": "categorical", "choices": [1.0e30, 1.0e31]}}
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = cli("search", str(path), "--results-dir", str(tmp_path / "results"), "--quiet")
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("autoft: error: every trial failed; most common error: "
                                                          "TrialError: loss became nan")
    assert "Traceback" not in out.stderr
    rows = list(csv.DictReader(next((tmp_path / "results").iterdir()).joinpath("leaderboard.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"]


def start_search(cfg_path: Path, results: Path, name: str, *flags: str) -> tuple[subprocess.Popen, str]:
    """`autoft search` in its own session, every process of it marked (see kill_marked) → (process, marker)."""
    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "autoft.cli", "search", str(cfg_path), "--name", name,
                             "--results-dir", str(results), *flags], env={**os.environ, "AUTOFT_TEST_MARKER": marker},
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return proc, f"AUTOFT_TEST_MARKER={marker}"


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the search ended before {what}"
        if time.time() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s")
        time.sleep(0.2)


def test_sigkill_then_resume_finishes_the_budget_without_duplicates(shapes_dir: Path, tmp_path: Path) -> None:
    raw = shapes_config(shapes_dir, trials=4, max_concurrent=1)
    raw["train"]["epochs"] = 1
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "results" / "killed"
    proc, marker = start_search(path, tmp_path / "results", "killed", "--quiet")
    try:
        def finished_and_running() -> bool:
            records = read_trials(run)
            return any(r.status.finished for r in records) and any(r.status is TrialStatus.RUNNING for r in records)

        wait_until(finished_and_running, "finished trial while another runs", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        kill_marked(marker)
    before = {r.trial_id: r for r in read_trials(run) if r.status.finished}
    assert before, "at least one trial finished before the kill"
    out = cli("search", "--resume", str(run), "--quiet")
    assert out.returncode == 0, out.stderr
    after = read_trials(run)
    counted = [r for r in after if r.status.finished or r.status is TrialStatus.FAILED]
    assert len(counted) == 4, [(r.trial_id, r.status) for r in after]
    for tid, rec in before.items():
        assert next(r for r in after if r.trial_id == tid).history == rec.history
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4 and all(r["status"] != "interrupted" for r in rows)
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'optuna.db'}")
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(t.user_attrs["ray_trial_id"] for t in done) == sorted(ids)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


def test_time_budget_stops_launching_new_trials(shapes_dir: Path, tmp_path: Path) -> None:
    raw = shapes_config(shapes_dir, trials=20, max_concurrent=1, time_budget="8s")
    raw["train"]["epochs"] = 1
    outcome = search(config_from_dict(raw), results_dir=tmp_path, name="budget")
    assert outcome.stopped_on_budget
    assert 1 <= len(outcome.leaderboard.records) < 20


def test_ctrl_c_marks_running_trials_writes_the_leaderboard_and_says_how_to_resume(shapes_dir: Path,
                                                                                    tmp_path: Path) -> None:
    raw = shapes_config(shapes_dir, trials=4, max_concurrent=2)
    raw["train"]["epochs"] = 4
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "results" / "ctrlc"
    proc, marker = start_search(path, tmp_path / "results", "ctrlc", "--plain")
    try:
        wait_until(lambda: any(r.history for r in read_trials(run) if r.status is TrialStatus.RUNNING),
                   "running trial with a reported epoch", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        kill_marked(marker)
    assert proc.returncode == 130, stderr[-3000:]
    assert f"Resume with: autoft search --resume {run}" in stdout
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    assert "interrupted" in {r["status"] for r in rows}
    assert all(r["error"].startswith("interrupted") for r in rows if r["status"] == "interrupted")
    assert "Traceback" not in stderr


def test_max_failures_retries_a_killed_trial_from_its_last_epoch(shapes_dir: Path, tmp_path: Path) -> None:
    """A trial whose worker dies (a preempted node, an OOM kill) is retried and continues from its checkpoint."""
    raw = shapes_config(shapes_dir, trials=1, max_concurrent=1, max_failures=1, scheduler="fifo")
    raw["train"]["epochs"] = 3
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "results" / "retry"
    proc, marker = start_search(path, tmp_path / "results", "retry", "--quiet")
    try:
        wait_until(lambda: any(len(r.history) == 1 for r in read_trials(run)), "first epoch", proc)
        workers = [pid for pid in marked_pids(marker) if b"ImplicitFunc" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        kill_marked(marker)
    assert proc.returncode == 0, stderr[-3000:]
    (record,) = read_trials(run)
    assert record.status is TrialStatus.COMPLETED and record.epochs_run == 3
    epochs = [h["epoch"] for h in record.history]
    assert epochs[0] == 1 and epochs[-1] == 3 and 1 not in epochs[1:], epochs  # epoch 1 was not trained again
    assert "restor" in (run / "trials" / record.trial_id / "train.log").read_text().lower()
