"""VisualDL logs of one trial, written as it trains: `autoft dashboard visualdl RUN` shows them.

trials/<id>/visualdl/train holds `loss` and `lr`, trials/<id>/visualdl/val holds `loss`, `acc` and `best_acc`
plus the trial's hyperparameters (VisualDL's hparams view). The same tag in two run folders puts train and
val loss on one chart. VisualDL is imported on first use; a logging failure never fails the trial.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TrialLog", "VISUALDL_DIR", "HPARAM_METRICS"]

VISUALDL_DIR = "visualdl"
HPARAM_METRICS = ("acc", "best_acc", "loss")   # tags of the val run that VisualDL's hparams view tabulates
_TRAIN_TAGS = {"train_loss": "loss", "lr": "lr"}
_VAL_TAGS = {"val_loss": "loss", "val_acc": "acc"}


def hparam_value(value: Any) -> int | float | str:
    """VisualDL stores int, float and str; a bool would pass as an int, anything else as its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return str(value)


class TrialLog:
    """Scalars per evaluation (x = global step) for one trial; `close()` flushes and stops the writer threads."""

    def __init__(self, trial_dir: Path, params: dict[str, Any], warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(trial_dir) / VISUALDL_DIR
        self.params = {k: hparam_value(v) for k, v in params.items()}
        self.warn = warn or (lambda _msg: None)
        self._writers: dict[str, Any] | None = None
        self._broken = False
        self._best = float("-inf")

    def _open(self) -> dict[str, Any]:
        from visualdl import LogWriter

        writers = {split: LogWriter(logdir=str(self.root / split), display_name=f"{self.root.parent.name}/{split}")
                   for split in ("train", "val")}
        writers["val"].add_hparams(self.params, list(HPARAM_METRICS))
        return writers

    def write(self, metrics: dict[str, Any]) -> None:
        """One evaluation's metrics (the trainer's report: epoch, step, train_loss, val_loss, val_acc, lr…)."""
        if self._broken:
            return
        try:
            if self._writers is None:
                self._writers = self._open()
            step = int(metrics.get("step", 0))
            for split, tags in (("train", _TRAIN_TAGS), ("val", _VAL_TAGS)):
                for key, tag in tags.items():
                    if _finite(metrics.get(key)):
                        self._writers[split].add_scalar(tag, float(metrics[key]), step)
            if _finite(metrics.get("val_acc")):
                self._best = max(self._best, float(metrics["val_acc"]))
                self._writers["val"].add_scalar("best_acc", self._best, step)
            for writer in self._writers.values():
                writer.flush()  # a dashboard watching a live run sees each evaluation at once
        except Exception as exc:  # a full disk or a VisualDL bug must not cost the trial its training
            self._broken = True
            self.warn(f"VisualDL logging stopped: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        for writer in (self._writers or {}).values():
            try:
                writer.close()
            except Exception as exc:  # closing is best effort, like writing
                self.warn(f"VisualDL log not closed cleanly: {type(exc).__name__}: {exc}")
        self._writers = None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
