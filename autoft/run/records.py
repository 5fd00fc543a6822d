"""trial.json: one small JSON file per trial. The driver is its only writer; resume and the leaderboard read it."""
from __future__ import annotations

import enum
import json
import logging
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoft._fs import atomic_write_json
from autoft.run.layout import TRIAL_FILE, RunDir

__all__ = ["TrialStatus", "TrialRecord", "read_trials", "TRIAL_FILE"]


log = logging.getLogger(__name__)
_REPORTED: set[Path] = set()  # damaged files already named in this process: leaderboard, report and resume all read
MAX_BYTES = 16 * 2 ** 20  # a trial.json holds a few hundred bytes per evaluation; more is not one autoft wrote


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

    def require_best(self) -> dict[str, Any]:
        """``best`` of a trial the caller knows has scored (ranked, selected, filtered on ``best``)."""
        best = self.best
        if best is None:
            raise ValueError(f"trial {self.trial_id} has no evaluation with a finite val_acc")
        return best

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
    def from_json(cls, raw: Any) -> TrialRecord:
        """A record from trial.json's object; ValueError naming the first field of the wrong type."""
        _check_fields(raw)
        return cls(trial_id=raw["trial_id"], params=dict(raw.get("params") or {}),
                   status=TrialStatus(raw.get("status", "running")), number=raw.get("number"),
                   history=tuple(raw.get("history") or ()), error=raw.get("error"),
                   started=float(raw.get("started") or 0.0), seconds=float(raw.get("seconds") or 0.0),
                   extra=dict(raw.get("extra") or {}))

    def save(self, trial_dir: Path) -> None:
        atomic_write_json(Path(trial_dir) / TRIAL_FILE, self.to_json())

    @classmethod
    def load(cls, trial_dir: Path) -> TrialRecord:
        """The record in ``trial_dir``, whose name must be its trial_id: the leaderboard and best_model/ find a
        trial's bundle by its id, so an id naming another folder would promote a bundle from elsewhere."""
        path = Path(trial_dir) / TRIAL_FILE
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES // 2 ** 20} MiB")
        record = cls.from_json(_utf8(json.loads(path.read_text(encoding="utf-8"))))
        if record.trial_id != _utf8(path.parent.name):
            raise ValueError(f"field 'trial_id' must be its folder's name {path.parent.name!r}, "
                             f"got {_shown(record.trial_id)}")
        return record


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utf8(value: Any) -> Any:
    """``value`` with each lone surrogate as its backslash escape (``\\udcff``): JSON can escape one (an error
    naming a file whose name is not UTF-8), but no UTF-8 file, pandas table or terminal can hold it."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    return value


def _shown(value: Any) -> str:
    """A value as a message quotes it: short (reprlib cuts long and deep values) and escaped (repr's \\n, \\x1b)."""
    return reprlib.repr(value)


# What each field must hold (a check and the rule a message states) where a reader assumes its type; fields and
# extra keys that autoft does not read are kept as they are.
_Rule = tuple[Callable[[Any], bool], str]
_FIELDS: dict[str, _Rule] = {
    "trial_id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "number": (lambda v: v is None or _integer(v), "an integer or null"),
    "status": (lambda v: v in {s.value for s in TrialStatus}, "one of " + ", ".join(s.value for s in TrialStatus)),
    "params": (lambda v: isinstance(v, dict), "an object of parameter values"),
    "history": (lambda v: isinstance(v, list), "a list of evaluations"),
    "error": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "started": (lambda v: v is None or _finite(v), "a finite number"),
    "seconds": (lambda v: v is None or _finite(v), "a finite number"),
    "extra": (lambda v: isinstance(v, dict), "an object"),
}
_PARAM: _Rule = (lambda v: v is None or isinstance(v, (str, int, float)), "a string, a number, true/false or null")
_METRICS = ("epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "seconds", "compute")  # as trials report them
_EXTRA: dict[str, _Rule] = {  # what the leaderboard and the reruns read
    "rerun_of": (lambda v: v is None or isinstance(v, str), "a trial id or null"),
    "seed": (lambda v: v is None or _integer(v), "an integer or null"),
    "cost_per_epoch": (lambda v: v is None or _finite(v), "a finite number or null"),
}


def _check_fields(raw: Any) -> None:
    """Each field has the type its readers assume, else ValueError naming the first that does not: a hand-edited
    or damaged trial.json is one skipped trial, never a traceback in the leaderboard, the report or a resume."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    if "trial_id" not in raw:
        raise ValueError("field 'trial_id' is missing")
    _check("", raw, _FIELDS)
    _check("'params'", raw.get("params") or {}, dict.fromkeys(raw.get("params") or {}, _PARAM))
    for i, entry in enumerate(raw.get("history") or ()):
        if not isinstance(entry, dict):
            raise ValueError(f"field 'history'[{i}] must be an object of metrics, got {_shown(entry)}")
        _check(f"'history'[{i}]", entry, dict.fromkeys(_METRICS, (_number, "a number")))
    _check("'extra'", raw.get("extra") or {}, _EXTRA)


def _check(where: str, values: dict[str, Any], rules: dict[str, _Rule]) -> None:
    for key, (ok, rule) in rules.items():
        if key in values and not ok(values[key]):
            name = f"{where}[{key!r}]" if where else repr(key)
            raise ValueError(f"field {name} must be {rule}, got {_shown(values[key])}")


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError,
            RecursionError) as exc:  # RecursionError: JSON nested past Python's recursion limit
        path = trial_dir / TRIAL_FILE
        if path not in _REPORTED:
            _REPORTED.add(path)
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            log.warning("warning: %s: cannot read this trial record (%s); skipped", path, reason)
        return None
