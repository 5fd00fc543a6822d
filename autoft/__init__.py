"""autoft: hyperparameter-search fine-tuning for image classification (PaddlePaddle + Ray Tune + Optuna)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

# Paddle warns at import that it found no ccache (used only to compile C++ extensions, which autoft never does)
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

from autoft.config import load_config  # noqa: E402 - after the filter, which must precede Paddle's import
from autoft.config.space import SearchSpace  # noqa: E402
from autoft.run.bundle import load_bundle  # noqa: E402

if TYPE_CHECKING:
    from autoft.config import RunConfig
    from autoft.search.run import SearchOutcome
    from autoft.training.fit import TrialResult

__all__ = ["search", "train", "load_bundle", "load_config", "SearchSpace", "__version__"]
__version__ = "0.1.0"


def search(cfg: RunConfig | None = None, **kwargs: Any) -> SearchOutcome:
    """Run a search (see autoft.search.run.search); imports ray and optuna on first use."""
    from autoft.search.run import search as _search

    return _search(cfg, **kwargs)


def train(cfg: RunConfig, **kwargs: Any) -> TrialResult:
    """One fine-tune with fixed values (see autoft.training.fit.train); imports paddle on first use."""
    from autoft.training.fit import train as _train

    return _train(cfg, **kwargs)
