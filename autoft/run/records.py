"""trial.json: one small JSON file per trial. The driver is its only writer; resume and the leaderboard read it."""
from __future__ import annotations

import enum
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoft._fs import atomic_write_json
from autoft.run.layout import TRIAL_FILE, RunDir

__all__ = ["TrialStatus", "TrialRecord", "read_trials", "TRIAL_FILE"]


log = logging.getLogger(__name__)
_REPORTED: set[Path] = set()  # damaged files already named in this process: leaderboard, report and resume all read


class TrialStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"        # ran every epoch
    STOPPED = "stopped_early"      # the scheduler (ASHA…) stopped it; its metrics count
    FAILED = "failed"
    INTERRUPTED = "interrupted"    # the search was stopped (Ctrl-C, crash) while it ran

    @property
    def finished(self) -> bool:
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED)


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: TrialStatus = TrialStatus.RUNNING
    number: int | None = None                 # the Optuna trial number
    history: tuple[dict[str, Any], ...] = ()  # one entry per evaluation
    error: str | None = None
    started: float = 0.0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, Any] | None:
        """The evaluation with the highest val_acc (ties: lower val_loss)."""
        good = [h for h in self.history if _finite(h.get("val_acc"))]
        if not good:
            return None
        return max(good, key=lambda h: (h["val_acc"], -float(h.get("val_loss", math.inf))))

    @property
    def epochs_run(self) -> float:
        return max((float(h.get("epoch", 0)) for h in self.history), default=0.0)

    def with_result(self, metrics: dict[str, Any]) -> TrialRecord:
        return replace(self, history=(*self.history, metrics), seconds=float(metrics.get("seconds", self.seconds)))

    def to_json(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "number": self.number, "status": self.status.value,
                "params": self.params, "history": list(self.history), "error": self.error,
                "started": self.started, "seconds": self.seconds, "extra": self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrialRecord:
        if not isinstance(raw, dict) or not all(isinstance(h, dict) for h in raw.get("history") or ()):
            raise ValueError("expected an object whose history is a list of objects")
        return cls(trial_id=str(raw["trial_id"]), params=dict(raw.get("params") or {}),
                   status=TrialStatus(raw.get("status", "running")), number=raw.get("number"),
                   history=tuple(raw.get("history") or ()), error=raw.get("error"),
                   started=float(raw.get("started") or 0.0), seconds=float(raw.get("seconds") or 0.0),
                   extra=dict(raw.get("extra") or {}))

    def save(self, trial_dir: Path) -> None:
        atomic_write_json(Path(trial_dir) / TRIAL_FILE, self.to_json())

    @classmethod
    def load(cls, trial_dir: Path) -> TrialRecord:
        return cls.from_json(json.loads((Path(trial_dir) / TRIAL_FILE).read_text(encoding="utf-8")))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def read_trials(run_dir: Path) -> list[TrialRecord]:
    """Every readable trial.json under run_dir/trials/, in start order; a damaged one is named once and skipped."""
    trials_dir = RunDir(Path(run_dir)).trials
    if not trials_dir.is_dir():
        return []
    loaded = (_load_or_skip(d) for d in sorted(trials_dir.iterdir()) if (d / TRIAL_FILE).is_file())
    return sorted((r for r in loaded if r is not None), key=lambda r: (r.started, r.trial_id))


def _load_or_skip(trial_dir: Path) -> TrialRecord | None:
    """A truncated or hand-edited trial.json must not stop a leaderboard, a report or a resume of the others."""
    try:
        return TrialRecord.load(trial_dir)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        path = trial_dir / TRIAL_FILE
        if path not in _REPORTED:
            _REPORTED.add(path)
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            log.warning("warning: %s: cannot read this trial record (%s); skipped", path, reason)
        return None
