"""Typed search-space parameters, validated at construction, turned into Optuna distributions."""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from autoft.errors import ConfigError

__all__ = ["FloatParam", "IntParam", "CategoricalParam", "Param", "SearchSpace", "param_from_dict"]

Scalar = Union[int, float, str, bool]


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.name, self.low, self.high, self.log)
        if self.step is not None and (self.log or self.step <= 0):
            raise ConfigError(f"space.{self.name}: `step` must be > 0 and cannot be used with log, got step={self.step}")

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def first(self) -> float:
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    def grid(self) -> list[Scalar]:
        if self.step is None:
            raise ConfigError(f"space.{self.name}: the grid sampler needs finite values; give `step` or use categorical")
        count = int(round((self.high - self.low) / self.step)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        _check_range(self.name, self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ConfigError(f"space.{self.name}: `step` must be >= 1 (and 1 with log), got step={self.step}")

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def first(self) -> int:
        return self.low

    def grid(self) -> list[Scalar]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ConfigError(f"space.{self.name}: `choices` must not be empty")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ConfigError(f"space.{self.name}: `choices` must be distinct, got {list(self.choices)}")
        for c in self.choices:
            if not isinstance(c, (int, float, str, bool)) or c is None:
                raise ConfigError(f"space.{self.name}: choices must be numbers or strings, got {c!r}")

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def first(self) -> Scalar:
        return self.choices[0]

    def grid(self) -> list[Scalar]:
        return list(self.choices)


Param = Union[FloatParam, IntParam, CategoricalParam]


def _check_range(name: str, low: float, high: float, log: bool) -> None:
    if not low <= high:
        raise ConfigError(f"space.{name}: `low <= high` must hold, got low={low}, high={high}")
    if log and low <= 0:
        raise ConfigError(f"space.{name}: log scale needs low > 0, got low={low}")


_KINDS = ("float", "int", "categorical")


def param_from_dict(name: str, spec: Any) -> Param:
    """Build a parameter from its YAML form, e.g. ``{type: float, low: 1e-5, high: 1e-2, log: true}``."""
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"space.{name}: must be a mapping with `type`, got {spec!r}")
    kind = spec.get("type")
    allowed = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
               "categorical": {"choices"}}
    if kind not in allowed:
        raise ConfigError(f"space.{name}.type: must be one of {', '.join(_KINDS)}, got {kind!r}")
    extra = set(spec) - allowed[kind] - {"type"}
    if extra:
        raise ConfigError(f"space.{name}: unknown key {sorted(extra)[0]!r} for type {kind}; "
                          f"valid: {', '.join(sorted(allowed[kind]))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ConfigError(f"space.{name}.choices: must be a list, got {choices!r}")
        return CategoricalParam(name, tuple(choices))
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"space.{name}: `{key}` is required for type {kind}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"space.{name}.log: must be true or false, got {log!r}")
    if kind == "float":
        low, high, step = (_number(name, k, spec.get(k), float) for k in ("low", "high", "step"))
        return FloatParam(name, low, high, log, step)
    low, high, step = (_number(name, k, spec.get(k), int) for k in ("low", "high", "step"))
    return IntParam(name, low, high, log, 1 if step is None else step)


def _number(name: str, key: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"space.{name}.{key}: must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"space.{name}.{key}: must be an integer for type int, got {value!r}")
    return kind(value)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters; every name in it is searched."""

    params: tuple[Param, ...] = ()

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        return cls(tuple(param_from_dict(str(k), v) for k, v in raw.items()))

    def to_optuna(self) -> dict[str, Any]:
        return {p.name: p.to_optuna() for p in self.params}

    def first_values(self) -> dict[str, Scalar]:
        return {p.name: p.first() for p in self.params}

    def grid(self) -> list[dict[str, Scalar]]:
        axes = [p.grid() for p in self.params]
        return [dict(zip(self.names, combo)) for combo in itertools.product(*axes)]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in self.params:
            if isinstance(p, CategoricalParam):
                out[p.name] = {"type": "categorical", "choices": list(p.choices)}
            else:
                kind = "float" if isinstance(p, FloatParam) else "int"
                d: dict[str, Any] = {"type": kind, "low": p.low, "high": p.high, "log": p.log}
                if p.step is not None and not (kind == "int" and p.step == 1):
                    d["step"] = p.step
                out[p.name] = d
        return out
