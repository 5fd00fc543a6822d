"""Whether a stored study can go on with a config's space: a resumed run whose config.yaml was edited, or a run
joining a shared study. Optuna's own rule decides (``check_distribution_compatibility``: the same kind of
distribution, the same log setting, the same categorical choices); a range that moved or a parameter added or
dropped is compatible, and is said in a note."""
from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
)

from autoft.errors import ConfigError

__all__ = ["check_study_space", "describe"]


def describe(dist: BaseDistribution) -> str:
    """A distribution as a config would say it: ``categorical [16, 32]``, ``float 1e-05..0.01 (log)``."""
    if isinstance(dist, CategoricalDistribution):
        return f"categorical {list(dist.choices)}"
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        kind = "float" if isinstance(dist, FloatDistribution) else "int"
        return f"{kind} {dist.low:g}..{dist.high:g}{' (log)' if dist.log else ''}"
    return type(dist).__name__


def _stored(study: optuna.Study) -> dict[str, list[BaseDistribution]]:
    """Every distinct distribution the study's trials drew each parameter from, oldest first."""
    seen: dict[str, list[BaseDistribution]] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if dist not in seen.setdefault(name, []):
                seen[name].append(dist)
    return seen


def check_study_space(storage: Any, study_name: str, space: dict[str, BaseDistribution], what: str,
                      fix: str) -> list[str]:
    """Refuse (ConfigError naming the parameter, ``fix`` saying what to do) a space the study's trials cannot be
    continued with; else the notes on what changed compatibly (empty for the same space or no study yet)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    stored = _stored(study)
    for name, new in space.items():
        for old in stored.get(name, []):
            try:
                check_distribution_compatibility(old, new)
            except ValueError:
                raise ConfigError(f"{what}: space.{name} is {describe(new)} but the study's trials drew it from "
                                  f"{describe(old)}; Optuna cannot continue a study whose {name} changes that "
                                  f"way ({fix})") from None
    notes = [f"space.{name}: {describe(stored[name][-1])} in the study's trials, now {describe(new)}"
             for name, new in space.items() if name in stored and stored[name][-1] != new]
    notes += [f"space.{name}: new, not in the study's trials" for name in space if name not in stored and stored]
    notes += [f"space.{name}: no longer searched" for name in stored if name not in space]
    return notes
