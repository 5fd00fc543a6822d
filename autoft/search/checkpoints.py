"""The checkpoints of one trial that PBT exploits and ``search.max_failures`` retries restore: ``fit`` saves them
(``autoft.training.checkpoint``) every interval, they go to Ray with ``tune.report(..., checkpoint=...)``, and a
trial that starts with ``tune.get_checkpoint()`` continues from one."""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from safetensors.numpy import load_file

from autoft._fs import write_safetensors
from autoft.config import RunConfig
from autoft.config.schema import Scheduler

__all__ = ["TrialCheckpoints", "OWNER_FILE"]

OWNER_FILE = "owner.json"  # inside a checkpoint: which trial wrote it, at which epoch, with which params
# Keys whose change makes a donor's optimizer state meaningless (other accumulators, other param groups).
_OPTIMIZER_KEYS = ("optimizer", "strategy", "freeze_backbone", "train.optimizer", "train.strategy",
                   "train.freeze_backbone")


@dataclasses.dataclass
class TrialCheckpoints:
    """Checkpoints of one trial: saved by ``fit`` every ``interval`` epochs, reported to Ray, restored on restart.

    ``interval`` 0 means none (asha, median, fifo without ``search.max_failures``): reports carry no checkpoint
    and nothing is restored.
    """

    interval: int
    trial_id: str
    log: Callable[[str], None]
    directory: Path | None = None
    restore: Path | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_trial(cls, cfg: RunConfig, trial_id: str, log: Callable[[str], None]) -> TrialCheckpoints:
        if Scheduler(cfg.search.scheduler) is Scheduler.PBT:
            interval = cfg.search.perturbation_interval
        else:  # HyperBand pauses trials between rungs; a retry resumes
            interval = 1 if cfg.search.max_failures > 0 or Scheduler(cfg.search.scheduler) is Scheduler.HYPERBAND else 0
        return cls(interval=interval, trial_id=trial_id, log=log)

    def configure(self, cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
        """``cfg`` with fit saving checkpoints at the interval into a private folder; fetches Ray's checkpoint."""
        if not self.interval:
            return cfg
        self.params = dict(params)
        self.directory = directory = Path(tempfile.mkdtemp(prefix=f"autoft-ckpt-{self.trial_id}-"))
        given = tune.get_checkpoint()
        if given is not None:
            self.restore = self._fetch(given, directory)
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, save_ckpt_interval=self.interval))

    def _fetch(self, checkpoint: Any, directory: Path) -> Path:
        local = Path(checkpoint.to_directory(str(directory / "restore")))
        owner = json.loads((local / OWNER_FILE).read_text()) if (local / OWNER_FILE).is_file() else {}
        self.log(f"restoring the checkpoint of trial {owner.get('trial_id', '?')} at epoch {owner.get('epoch', '?')}")
        changed = [k for k in _OPTIMIZER_KEYS if k in self.params and k in owner.get("params", {})
                   and owner["params"][k] != self.params[k]]
        if changed:
            _drop_optimizer_state(local)
            self.log(f"{', '.join(changed)} changed: weights kept, optimizer state starts fresh")
        return local

    def for_report(self, metrics: dict[str, Any]) -> Any:
        """A ``tune.Checkpoint`` when ``fit`` just saved one for this evaluation's epoch, else None."""
        from autoft.training.checkpoint import checkpoint_path  # paddle: in the trial's worker only

        epoch = metrics.get("epoch")
        if not self.interval or self.directory is None or not isinstance(epoch, (int, float)):
            return None
        if not float(epoch).is_integer() or int(epoch) % self.interval:
            return None
        where = checkpoint_path(self.directory, int(epoch))
        if not where.is_dir():
            return None
        (where / OWNER_FILE).write_text(json.dumps({"trial_id": self.trial_id, "epoch": int(epoch),
                                                    "params": self.params}))
        return tune.Checkpoint.from_directory(str(where))

    def after_report(self, metrics: dict[str, Any]) -> None:
        """Ray has copied the checkpoint into the run's storage: the local one can go."""
        from autoft.training.checkpoint import checkpoint_path

        if self.directory is not None and isinstance(metrics.get("epoch"), (int, float)):
            shutil.rmtree(checkpoint_path(self.directory, int(metrics["epoch"])), ignore_errors=True)

    def cleanup(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _drop_optimizer_state(path: Path) -> None:
    """Keep weights, schedule position and strategy extras (the L2-SP anchor); forget optimizer accumulators."""
    from autoft.training.checkpoint import OPTIMIZER_FILE, STATE_FILE

    extras = {k: v for k, v in load_file(str(path / OPTIMIZER_FILE)).items() if k.startswith("extra::")}
    write_safetensors(path / OPTIMIZER_FILE, extras)
    state = json.loads((path / STATE_FILE).read_text())
    state["optimizer"] = {}
    (path / STATE_FILE).write_text(json.dumps(state))
