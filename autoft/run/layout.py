"""RunDir: every path of a run folder, the one "is this a run" check, its config and its storage URL.

A run folder (``results/<run>/``) holds ``config.yaml`` (the resolved config, as run), ``optuna.db`` (unless the
study lives in a ``--storage`` database), ``study.json`` (where the study lives, without a password, and its name:
autoft.run.storage), ``trials/<id>/`` (trial.json, bundle/, visualdl/, error.txt, crash.txt, train.log),
``interrupted/`` (trials a resume re-runs), ``leaderboard.{csv,md}``, ``best_model/`` (the winner),
``best_trial_model/`` (the selection bundle after a final fit), ``report/``, ``test_metrics.json`` and ``ray/``
(Ray Tune's own experiment folders).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autoft.errors import AutoftError

if TYPE_CHECKING:
    from autoft.config import RunConfig

__all__ = ["RunDir", "CONFIG_FILE", "BEST_DIR", "BEST_TRIAL_DIR", "REPORT_DIR", "TRIAL_FILE", "CRASH_FILE"]

CONFIG_FILE = "config.yaml"
BEST_DIR = "best_model"
BEST_TRIAL_DIR = "best_trial_model"
REPORT_DIR = "report"
TRIAL_FILE = "trial.json"
CRASH_FILE = "crash.txt"


@dataclass(frozen=True)
class RunDir:
    """A run folder by its path; nothing is read or created until asked."""

    path: Path

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        return cls(Path(path).expanduser().resolve())

    @classmethod
    def require(cls, path: str | Path, what: str, error: type[AutoftError] = AutoftError) -> RunDir:
        """The run at ``path``, or one line saying why it is not one (``what`` names the command or flag; ``error``
        is the exception kind the caller's contract names, e.g. ConfigError for a flag's value)."""
        run = cls.at(path)
        if not run.path.is_dir():
            raise error(f"{what} {path}: not a run folder (no such folder)")
        if not run.is_run():
            raise error(f"{what} {path}: not a run folder ({CONFIG_FILE} missing)")
        return run

    def is_run(self) -> bool:
        """A run folder has its config or its trials (a run killed before its config was written has neither)."""
        return self.config_file.is_file() or self.trials.is_dir()

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def optuna_db(self) -> Path:
        return self.path / "optuna.db"

    def storage_url(self, url: str | None = None) -> str:
        """Where the study lives: ``url`` (``--storage``) when given, else the run's own SQLite file."""
        return url or f"sqlite:///{self.optuna_db}"

    @property
    def trials(self) -> Path:
        return self.path / "trials"

    def trial(self, trial_id: str) -> Path:
        return self.trials / trial_id

    def trial_bundle(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "bundle"

    def trial_error(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "error.txt"

    def trial_crash(self, trial_id: str) -> Path:
        """faulthandler's report of the fatal signal that killed the trial's worker (autoft.search.trial)."""
        return self.trial(trial_id) / CRASH_FILE

    def trial_log(self, trial_id: str) -> Path:
        return self.trial(trial_id) / "train.log"

    @property
    def interrupted(self) -> Path:
        return self.path / "interrupted"

    @property
    def best_model(self) -> Path:
        return self.path / BEST_DIR

    @property
    def best_trial_model(self) -> Path:
        return self.path / BEST_TRIAL_DIR

    @property
    def leaderboard_csv(self) -> Path:
        return self.path / "leaderboard.csv"

    @property
    def leaderboard_md(self) -> Path:
        return self.path / "leaderboard.md"

    @property
    def report(self) -> Path:
        return self.path / REPORT_DIR

    @property
    def test_metrics(self) -> Path:
        return self.path / "test_metrics.json"

    @property
    def ray(self) -> Path:
        return self.path / "ray"

    def load_config(self, what: str = "run") -> RunConfig:
        """The config the run was started with (strictly read, like any YAML)."""
        from autoft.config import config_from_dict, read_yaml_file

        if not self.path.is_dir():
            raise AutoftError(f"{what} {self.path}: not a run folder (no such folder)")
        if not self.config_file.is_file():
            raise AutoftError(f"{what} {self.path}: not a run folder ({CONFIG_FILE} missing)")
        return config_from_dict(read_yaml_file(self.config_file), source=str(self.config_file))
