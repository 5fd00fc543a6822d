"""autoft: hyperparameter-search fine-tuning for image classification (PaddlePaddle + Ray Tune + Optuna)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoft.bundle import load_bundle
from autoft.config import load_config
from autoft.space import SearchSpace

if TYPE_CHECKING:
    from autoft.config import RunConfig
    from autoft.search import SearchOutcome
    from autoft.trainer import TrialResult

__all__ = ["search", "train", "load_bundle", "load_config", "SearchSpace", "__version__"]
__version__ = "0.1.0"


def search(cfg: RunConfig | None = None, **kwargs: Any) -> SearchOutcome:
    """Run a search (see autoft.search.search); imports ray and optuna on first use."""
    from autoft.search import search as _search

    return _search(cfg, **kwargs)


def train(cfg: RunConfig, **kwargs: Any) -> TrialResult:
    """One fine-tune with fixed values (see autoft.trainer.train); imports paddle on first use."""
    from autoft.trainer import train as _train

    return _train(cfg, **kwargs)
