"""What the driver knows about each trial while Tune runs: ``Recorder`` keeps trial.json current (the driver is
its only writer) and feeds the live display through ``Progress`` snapshots; ``RecorderCallback`` is the Tune
callback that calls it. A worker that died outside Python is named by its signal: a native crash by its crash
report (``CRASH_FILE``), an out-of-memory kill by the kernel's count, another vanished worker as SIGKILL; else the
last line of Ray's error file."""
from __future__ import annotations

import dataclasses
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ray.tune import Callback
from ray.tune.experiment import Trial

from autoft.config import RunConfig
from autoft.run.layout import CRASH_FILE, RunDir
from autoft.run.records import TrialRecord, TrialStatus, read_trials
from autoft.search.progress import Progress
from autoft.search.trial import out_of_memory_line

__all__ = ["Progress", "WORKER_KEYS", "TrialNumbers", "Recorder", "RecorderCallback", "os_oom_kills",
           "ray_error_line", "crash_line", "signal_name"]

# what a trial says about its worker, kept in trial.json `extra`
WORKER_KEYS = ("cpu_threads", "gpu_ids", "node_id", "hostname", "pid", "cost_per_epoch")


class TrialNumbers(Protocol):
    """What the recorder asks a searcher: the Optuna trial number behind a Ray trial (None before it has one)."""

    def optuna_number(self, trial_id: str) -> int | None: ...


class Recorder:
    """A Ray Tune callback: keeps trial.json current (the driver is its only writer) and feeds the display."""

    def __init__(self, run_dir: Path, cfg: RunConfig, searcher: TrialNumbers,
                 on_progress: Callable[[Progress], None] | None, started: float) -> None:
        self.run_dir, self.cfg, self.searcher = run_dir, cfg, searcher
        self.on_progress, self.started = on_progress, started
        self.records: dict[str, TrialRecord] = {r.trial_id: r for r in read_trials(run_dir)}
        self.oom_kills = os_oom_kills()  # a worker death is an OOM kill if the kernel's count rose since

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; a live display (locks, terminals) stays behind.
        return {**self.__dict__, "on_progress": None}

    def _save(self, record: TrialRecord, event: str) -> None:
        self.records[record.trial_id] = record
        record.save(RunDir(self.run_dir).trial(record.trial_id))
        if self.on_progress is not None:
            self.on_progress(self.snapshot(event))

    def snapshot(self, event: str = "") -> Progress:
        recs = list(self.records.values())
        count = Counter(r.status for r in recs)
        scored = [r for r in recs if r.best is not None and r.status.finished]  # as the leaderboard ranks them
        best = max(scored, key=lambda r: r.require_best()["val_acc"], default=None)
        return Progress(budget=self.cfg.search.trials, done=count[TrialStatus.COMPLETED],
                        running=count[TrialStatus.RUNNING], stopped=count[TrialStatus.STOPPED],
                        failed=count[TrialStatus.FAILED], interrupted=count[TrialStatus.INTERRUPTED],
                        best_val_acc=best.require_best()["val_acc"] if best else None,
                        best_params=best.params if best else {}, elapsed=time.time() - self.started,
                        last_event=event)

    def start(self, trial: Trial) -> None:
        params = {k: trial.config[k] for k in self.cfg.space.names if k in trial.config}
        old = self.records.get(trial.trial_id)
        # a restart (a pbt exploit, a max_failures retry) continues the same record
        record = TrialRecord(trial_id=trial.trial_id, params=params, status=TrialStatus.RUNNING,
                             number=self.searcher.optuna_number(trial.trial_id),
                             started=old.started if old else time.time(), history=old.history if old else (),
                             extra=old.extra if old else {})
        self._save(record, f"{trial.trial_id} {'restarted' if old else 'started'}")

    def annotate(self, trial_id: str, extra: dict[str, Any]) -> None:
        """Merge ``extra`` into the trial's record (a rerun's origin and seed)."""
        record = self.records.get(trial_id)
        if record is not None:
            self._save(dataclasses.replace(record, extra={**record.extra, **extra}), f"{trial_id} {extra}")

    def exploit(self, trial_id: str, entry: dict[str, Any]) -> None:
        """A pbt exploit: ``trial_id`` took ``entry['donor']``'s weights and perturbed params."""
        record = self.records.get(trial_id)
        if record is not None:
            extra = {**record.extra, "exploits": [*record.extra.get("exploits", []), entry]}
            self._save(dataclasses.replace(record, extra=extra), f"{trial_id} cloned {entry['donor']}")

    def result(self, trial: Trial, result: dict[str, Any]) -> None:
        keep = ("epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "seconds", "compute")
        record = self.records.get(trial.trial_id)
        if record is not None:
            extra = {**record.extra, **{k: result[k] for k in WORKER_KEYS if k in result}}
            record = dataclasses.replace(record.with_result({k: result[k] for k in keep if k in result}), extra=extra)
            self._save(record,
                       f"{trial.trial_id} epoch {result.get('epoch')}: val_acc {result.get('val_acc', 0):.3f}")

    def complete(self, trial: Trial) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        early = record.epochs_run < self.cfg.train.epochs
        status = TrialStatus.STOPPED if early else TrialStatus.COMPLETED
        number = record.number if record.number is not None else self.searcher.optuna_number(trial.trial_id)
        self._save(dataclasses.replace(record, status=status, seconds=time.time() - record.started, number=number),
                   f"{trial.trial_id} {status.value}")

    def error(self, trial: Trial) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        run = RunDir(self.run_dir)
        crash = run.trial_crash(trial.trial_id)
        text = _text(run.trial_error(trial.trial_id)) or crash_line(_text(crash))
        if crash.is_file() and crash.stat().st_size == 0:
            crash.unlink()  # opened for a report that never came: the worker died without one (SIGKILL)
        if not text:
            text, self.oom_kills = ray_error_line(trial, self.oom_kills)
        self._save(dataclasses.replace(record, status=TrialStatus.FAILED, error=text,
                                       seconds=time.time() - record.started), f"{trial.trial_id} failed: {text}")

    def interrupt_running(self) -> bool:
        """Mark trials still running when Tune returned (Ctrl-C stops them); True if there were any."""
        running = [r for r in self.records.values() if r.status is TrialStatus.RUNNING]
        for record in running:
            self._save(dataclasses.replace(record, status=TrialStatus.INTERRUPTED, seconds=time.time() - record.started,
                                           error="interrupted: the search stopped while it ran"),
                       f"{record.trial_id} interrupted")
        return bool(running)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else ""


_RAY_OOM = re.compile(r"OutOfMemoryError|running low on memory", re.IGNORECASE)  # Ray's memory monitor
_WORKER_DIED = re.compile(r"ActorDiedError|WorkerCrashedError|worker (process )?(has )?died|SIGKILL", re.IGNORECASE)
# the raylet's words for a worker whose connection ended without a goodbye: the process vanished
_VANISHED = re.compile(r"unexpectedly exits with a connection error", re.IGNORECASE)
# faulthandler's header for each fatal signal it reports (CPython's own table), and what such a signal means here
_FAULTHANDLER = {"Segmentation fault": signal.SIGSEGV, "Bus error": signal.SIGBUS,
                 "Floating-point exception": signal.SIGFPE, "Aborted": signal.SIGABRT,
                 "Illegal instruction": signal.SIGILL}
_CAUSES = {signal.SIGSEGV: "a crash inside native code (Paddle)", signal.SIGBUS: "a crash inside native code (Paddle)",
           signal.SIGFPE: "an arithmetic fault inside native code (Paddle)",
           signal.SIGABRT: "native code aborted (a failed check inside Paddle)",
           signal.SIGILL: "an instruction this CPU lacks (a Paddle build for another CPU)"}


def signal_name(signum: int) -> str:
    """``SIGKILL (signal 9)``."""
    return f"{signal.Signals(signum).name} (signal {int(signum)})"


def crash_line(report: str) -> str:
    """The line for a worker killed by a fatal signal, from its crash report (faulthandler's text, see
    ``autoft.search.trial.crash_report``): the signal, what it means, and where the crashing thread was in Python;
    "" when the report is empty or is not faulthandler's."""
    header = re.search(r"^Fatal Python error: (.+)$", report, re.MULTILINE)
    if header is None:
        return ""
    signum = _FAULTHANDLER.get(header.group(1).strip())
    line = f"worker killed by {signal_name(signum)}: {_CAUSES[signum]}" if signum else f"worker crashed: {header[1]}"
    # the crashing thread's innermost frame (none when the signal came in a thread without Python, e.g. OpenMP's)
    frame = re.search(r'^Current thread .*\n\s+File "(.+)", line (\d+) in (.+)$', report, re.MULTILINE)
    where = f" at {_short(frame[1])}:{frame[2]} in {frame[3].strip()}" if frame else ""
    return f"{line}{where} (every thread's stack in the trial's {CRASH_FILE})"


def _short(path: str) -> str:
    """A source path from its package on (``paddle/jit/api.py``), the file's name outside site-packages."""
    return path.rsplit("site-packages/", 1)[1] if "site-packages/" in path else Path(path).name


def os_oom_kills() -> int | None:
    """How many processes the Linux OOM killer has ended (cgroup kills included); None where it is not known."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def ray_error_line(trial: Trial, oom_kills: int | None) -> tuple[str, int | None]:
    """The line for a trial that died outside Python and left no crash report: an OOM death or a SIGKILL says so,
    else the last line of Ray's error file.

    Ray words a vanished worker as "the worker died" with a list of possible causes and never the signal (the
    raylet only sees the worker's connection end). A worker that vanished leaving neither a Python error nor a
    crash report died of the one signal it cannot catch, SIGKILL (or of an ``os._exit``, which nothing in a trial
    calls); the kernel's OOM-kill count tells whether the out-of-memory killer sent it. Returns the line and the
    count to compare the next death against.
    """
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        text = ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else "the trial's worker died"
    now = os_oom_kills()
    if _RAY_OOM.search(text):
        return out_of_memory_line(f"Ray's memory monitor killed the trial's worker: {line[:160]}"), now
    counted = now is not None and oom_kills is not None
    if (not text or _WORKER_DIED.search(text)) and now is not None and oom_kills is not None and now > oom_kills:
        return out_of_memory_line("the operating system's out-of-memory killer ended the trial's worker with "
                                  f"{signal_name(signal.SIGKILL)}"), now
    if _VANISHED.search(text):
        who = "kill -9 or ray stop --force" if counted else "kill -9, ray stop --force or the out-of-memory killer"
        return (f"worker killed by {signal_name(signal.SIGKILL)} ({who}): it left no Python error and no crash "
                "report"), now
    return line, now


class RecorderCallback(Callback):
    """Tune's trial events, handed to the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.recorder.start(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        self.recorder.result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.recorder.complete(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.recorder.error(trial)
