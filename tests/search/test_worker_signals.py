"""A trial whose worker dies by a signal (a native crash, a kill -9) is recorded as failed with the signal named and
its curve so far, and the search goes on within its budget. Real Ray workers of a real search, really signalled;
a real segfault in a real process for the crash report."""
from __future__ import annotations

import csv
import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from searched_run import shapes_config

from autoft.config import config_from_dict
from autoft.run.layout import CRASH_FILE
from autoft.run.records import TrialRecord, TrialStatus, read_trials
from autoft.search.recorder import crash_line
from autoft.search.run import search
from autoft.search.trial import crash_report

# what a trial's worker runs before fit, then a real segfault inside native code (ctypes writes to address 0)
CRASHING_WORKER = """
import ctypes, sys
from pathlib import Path
import paddle
from autoft.search.trial import crash_report

paddle.disable_signal_handler()


def crash_here():
    ctypes.memset(0, 0, 1)


with crash_report(Path(sys.argv[1])):
    crash_here()
"""


def test_a_segfault_in_native_code_leaves_a_crash_report_that_names_the_signal(tmp_path: Path) -> None:
    """As in a Ray worker: faulthandler already on (-X faulthandler), Paddle imported and its handler disabled."""
    script, report = tmp_path / "worker.py", tmp_path / CRASH_FILE
    script.write_text(CRASHING_WORKER)
    done = subprocess.run([sys.executable, "-X", "faulthandler", str(script), str(report)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -signal.SIGSEGV, done.stderr[-2000:]  # it still dies of the signal, as Ray sees it
    text = report.read_text()
    assert text.startswith("Fatal Python error: Segmentation fault")
    assert crash_line(text) == ("worker killed by SIGSEGV (signal 11): a crash inside native code (Paddle) at "
                                f"worker.py:11 in crash_here (every thread's stack in the trial's {CRASH_FILE})")


def test_no_crash_leaves_no_report_and_faulthandler_as_it_was(tmp_path: Path) -> None:
    was = faulthandler.is_enabled()
    with crash_report(tmp_path / CRASH_FILE):
        assert faulthandler.is_enabled()
    assert not (tmp_path / CRASH_FILE).exists() and faulthandler.is_enabled() == was
    assert crash_line("") == crash_line("Traceback (most recent call last):\n  ValueError") == ""


class Killer(threading.Thread):
    """Sends ``signum`` to the worker of the first trial that reported an evaluation, while it still runs."""

    def __init__(self, run_dir: Path, signum: int) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.signum = run_dir, signum
        self.victim: TrialRecord | None = None
        self.failure = ""

    def run(self) -> None:
        deadline = time.time() + 400
        while time.time() < deadline:
            running = [r for r in read_trials(self.run_dir) if r.status is TrialStatus.RUNNING and r.history]
            if running and "pid" in running[0].extra:
                self.victim = running[0]
                os.kill(int(self.victim.extra["pid"]), self.signum)
                return
            time.sleep(0.1)
        self.failure = "no running trial with a reported evaluation within 400 s"


@pytest.mark.slow
@pytest.mark.parametrize("signum, line", [
    (signal.SIGKILL, "worker killed by SIGKILL (signal 9) (kill -9 or ray stop --force): it left no Python error "
                     "and no crash report"),
    (signal.SIGSEGV, "worker killed by SIGSEGV (signal 11): a crash inside native code (Paddle) at "),
])
def test_a_signalled_worker_fails_its_trial_with_the_signal_and_its_curve(shapes_dir: Path, tmp_path: Path,
                                                                          signum: int, line: str) -> None:
    raw = shapes_config(shapes_dir, trials=2, max_concurrent=1, scheduler="fifo")
    raw["train"]["epochs"] = 3  # two epochs after the first report: time to kill the trial while it runs
    killer = Killer(tmp_path / "signals", signum)
    killer.start()
    outcome = search(config_from_dict(raw), results_dir=tmp_path, name="signals")
    killer.join(timeout=5)
    assert killer.victim is not None, killer.failure
    records = {r.trial_id: r for r in read_trials(outcome.run_dir)}
    assert len(records) == 2  # the budget: the failed trial counts, none is started in its place
    dead = records.pop(killer.victim.trial_id)
    assert dead.status is TrialStatus.FAILED and dead.error.startswith(line), dead.error
    assert dead.history[:len(killer.victim.history)] == killer.victim.history  # the curve before the death is kept
    assert dead.history[0]["epoch"] == 1 and 0.0 <= dead.history[0]["val_acc"] <= 1.0
    crash = outcome.run_dir / "trials" / dead.trial_id / CRASH_FILE
    assert crash.is_file() == (signum == signal.SIGSEGV)  # nothing runs in a SIGKILLed worker: no report
    for other in records.values():
        assert other.status is TrialStatus.COMPLETED and other.epochs_run == 3 and other.error is None
        assert int(other.extra["pid"]) != int(killer.victim.extra["pid"])
        assert not (outcome.run_dir / "trials" / other.trial_id / CRASH_FILE).exists()
    rows = list(csv.DictReader((outcome.run_dir / "leaderboard.csv").open()))
    assert [r["status"] for r in rows] == ["completed", "failed"] and rows[-1]["error"] == dead.error
    study = optuna.load_study(study_name="signals", storage=f"sqlite:///{outcome.run_dir / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    assert outcome.best_model is not None and not outcome.all_failed
