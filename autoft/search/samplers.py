"""Optuna samplers by ``search.sampler``: one factory per ``Sampler`` member (tests check the registry covers the
Enum that config validation reads). Optuna is imported when a sampler is built."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from autoft.config import RunConfig
from autoft.config.schema import Sampler
from autoft.config.space import CategoricalParam
from autoft.errors import ConfigError

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

__all__ = ["SAMPLER_FACTORIES", "make_sampler", "tpe_sampler"]

SamplerFactory = Callable[[RunConfig, int], "BaseSampler"]


def tpe_sampler(trials: int, seed: int, *, startup: int | None = None, multivariate: bool = True,
                group: bool = False, constant_liar: bool = True) -> BaseSampler:
    """autoft's TPE: these defaults are what ``search.sampler: tpe`` builds; the replay benchmark scores others.
    ``startup`` (random trials before TPE models) defaults to half the budget, 2 to 10 (the replay benchmark: with
    20 trials, 10 start-up trials reached random search's median best in 22 of 30 seeds on the demo table, 6 in
    15); ``group`` implies ``multivariate`` (Optuna's group decomposition is of the multivariate model)."""
    import optuna

    if startup is None:
        startup = max(2, min(10, trials // 2))
    return optuna.samplers.TPESampler(seed=seed, multivariate=multivariate or group, group=group,
                                      constant_liar=constant_liar, n_startup_trials=startup)


def _tpe(cfg: RunConfig, seed: int) -> BaseSampler:
    return tpe_sampler(cfg.search.trials, seed)


def _random(cfg: RunConfig, seed: int) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(cfg: RunConfig, seed: int) -> BaseSampler:
    import optuna

    return optuna.samplers.GridSampler({p.name: p.grid() for p in cfg.space}, seed=seed)


def _say_categoricals_are_independent(cfg: RunConfig) -> None:
    categorical = [p.name for p in cfg.space if isinstance(p, CategoricalParam)]
    if categorical:  # Optuna's own warning would repeat at every trial
        logging.getLogger("autoft").info(f"search.sampler: {cfg.search.sampler} samples {', '.join(categorical)} "
                                         "independently (at random): it models only numeric parameters")


def _cmaes(cfg: RunConfig, seed: int) -> BaseSampler:
    import optuna

    _say_categoricals_are_independent(cfg)
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _qmc(cfg: RunConfig, seed: int) -> BaseSampler:
    import optuna

    _say_categoricals_are_independent(cfg)
    # scrambled: unscrambled, Optuna's Sobol points after the first trial are the same whatever search.seed is
    return optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)


def _gp(cfg: RunConfig, seed: int) -> BaseSampler:
    import importlib.util

    import optuna

    if importlib.util.find_spec("torch") is None:  # Optuna's GPSampler needs PyTorch
        raise ConfigError("search.sampler: 'gp' needs PyTorch (pip install torch); use tpe, random, grid, cmaes "
                          "or qmc")
    return optuna.samplers.GPSampler(seed=seed)


SAMPLER_FACTORIES: dict[Sampler, SamplerFactory] = {
    Sampler.TPE: _tpe, Sampler.RANDOM: _random, Sampler.GRID: _grid, Sampler.CMAES: _cmaes, Sampler.QMC: _qmc,
    Sampler.GP: _gp,
}


def make_sampler(cfg: RunConfig, seed: int) -> BaseSampler:
    return SAMPLER_FACTORIES[Sampler(cfg.search.sampler)](cfg, seed)
