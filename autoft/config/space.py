"""Typed search-space parameters, validated at construction, turned into Optuna distributions."""
from __future__ import annotations

import itertools
import math
import reprlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from autoft.errors import ConfigError

__all__ = ["FloatParam", "IntParam", "CategoricalParam", "Param", "SearchSpace", "param_from_dict", "quote",
           "INT64", "MAX_GRID"]

Scalar = int | float | str | bool
MAX_GRID = 100_000  # points a grid search may have: each is a fine-tune, and Optuna's GridSampler lists them all
INT64 = 2**63  # Optuna stores params as float64 and Paddle takes int64: a bigger int cannot reach a trial


class _Short(reprlib.Repr):
    """reprlib with a cheap int: repr() of a huge int is slow, and past 4300 digits it raises."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of about {round(x.bit_length() * math.log10(2))} digits>"
        return super().repr_int(x, level)


_QUOTE = _Short()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxlong, _QUOTE.maxother = 3, 40, 30, 40
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = _QUOTE.maxset = 5


def quote(value: Any, limit: int = 60) -> str:
    """A repr for error messages: at most ``limit`` characters, computed without walking the whole value.

    A YAML value can be a billion-laughs structure or a megabyte string; the CLI prints one line.
    """
    if isinstance(value, str):  # whole when it fits, else its two ends: a path is told apart by its tail
        half = (limit - 5) // 2
        return repr(value if len(value) <= limit else f"{value[:half]}...{value[-half:]}")
    text = _QUOTE.repr(value)
    return text if len(text) <= limit else text[:limit - 4] + " ..."


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.name, self.low, self.high, self.log)
        if self.step is not None and (self.log or not math.isfinite(self.step) or self.step <= 0):
            raise ConfigError(f"space.{self.name}: `step` must be a finite number > 0 and cannot be used with log, "
                              f"got step={self.step}")

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def first(self) -> float:
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    def grid(self) -> list[Scalar]:
        size, step = self.grid_size(), self.step  # grid_size refuses a missing step
        assert step is not None
        return [round(self.low + i * step, 12) for i in range(size)]

    def grid_size(self) -> int:
        if self.step is None:
            raise ConfigError(f"space.{self.name}: the grid sampler needs finite values; give `step` or use "
                              "categorical")
        count = (self.high - self.low) / self.step  # inf when a tiny step meets a huge range
        return int(round(count)) + 1 if count < sys.maxsize else sys.maxsize

    def check(self, key: str, value: Any) -> float:
        """``value`` as a point of this range (an enqueued trial), else ConfigError naming ``key``."""
        number = _real(key, value)
        if not self.low <= number <= self.high:
            raise ConfigError(f"{key}: must be within space.{self.name}'s [{self.low:g}, {self.high:g}], "
                              f"got {quote(value)}")
        if self.step is not None:
            k = (number - self.low) / self.step
            if abs(k - round(k)) >= 1e-8:  # Optuna's own test for a stepped float
                raise ConfigError(f"{key}: must be {self.low:g} + a multiple of space.{self.name}'s step "
                                  f"{self.step:g}, got {quote(value)}")
        return number


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
        """The middle of the range (geometric with ``log``), on the step grid."""
        if self.log:
            return min(self.high, max(self.low, round(math.sqrt(self.low * self.high))))
        return self.low + self.step * round((self.high - self.low) // self.step / 2)

    def grid(self) -> list[Scalar]:
        return list(range(self.low, self.high + 1, self.step))

    def grid_size(self) -> int:
        return (self.high - self.low) // self.step + 1  # len(range(...)) overflows past sys.maxsize

    def check(self, key: str, value: Any) -> int:
        """``value`` as a point of this range (an enqueued trial), else ConfigError naming ``key``."""
        number = _real(key, value)
        if not self.low <= number <= self.high:  # first: inf and nan are out of range, not "not integers"
            raise ConfigError(f"{key}: must be within space.{self.name}'s [{self.low}, {self.high}], "
                              f"got {quote(value)}")
        if not number.is_integer():
            raise ConfigError(f"{key}: must be an integer for space.{self.name}, got {quote(value)}")
        whole = int(value)  # exact: `number` is a float and would round a big int
        if (whole - self.low) % self.step:
            raise ConfigError(f"{key}: must be {self.low} + a multiple of space.{self.name}'s step {self.step}, "
                              f"got {quote(value)}")
        return whole


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ConfigError(f"space.{self.name}: `choices` must not be empty")
        for c in self.choices:  # before the repr below: a nested choice can be huge
            if not isinstance(c, (int, float, str, bool)) or c is None:
                raise ConfigError(f"space.{self.name}: choices must be numbers or strings, got {quote(c)}")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ConfigError(f"space.{self.name}: `choices` must be distinct, got {quote(list(self.choices))}")

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def first(self) -> Scalar:
        return self.choices[0]

    def grid(self) -> list[Scalar]:
        return list(self.choices)

    def grid_size(self) -> int:
        return len(self.choices)

    def check(self, key: str, value: Any) -> Scalar:
        """The choice ``value`` names (an enqueued trial), else ConfigError naming ``key``."""
        for c in self.choices:
            # True == 1 in Python, but a flag is not a count: Optuna would take the wrong choice
            if isinstance(c, bool) == isinstance(value, bool) and type(value) in (int, float, str, bool) and c == value:
                return c
        raise ConfigError(f"{key}: must be one of space.{self.name}'s choices {quote(list(self.choices))}, "
                          f"got {quote(value)}")


Param = FloatParam | IntParam | CategoricalParam


def _check_range(name: str, low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):  # nan compares false to all, inf breaks sampling
        raise ConfigError(f"space.{name}: bounds must be finite numbers, got low={low}, high={high}")
    if not low <= high:
        raise ConfigError(f"space.{name}: `low <= high` must hold, got low={low}, high={high}")
    if log and low <= 0:
        raise ConfigError(f"space.{name}: log scale needs low > 0, got low={low}")


def _real(key: str, value: Any) -> float:
    """An enqueued number as a float (a huge int becomes inf: out of any range, as nan is), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number, got {quote(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


_KINDS = ("float", "int", "categorical")


def param_from_dict(name: str, spec: Any) -> Param:
    """Build a parameter from its YAML form, e.g. ``{type: float, low: 1e-5, high: 1e-2, log: true}``."""
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"space.{name}: must be a mapping with `type`, got {quote(spec)}")
    kind = spec.get("type")
    allowed = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
               "categorical": {"choices"}}
    if not isinstance(kind, str) or kind not in allowed:  # a list is unhashable: test the type first
        raise ConfigError(f"space.{name}.type: must be one of {', '.join(_KINDS)}, got {quote(kind)}")
    extra = set(spec) - allowed[kind] - {"type"}
    if extra:
        raise ConfigError(f"space.{name}: unknown key {quote(sorted(extra, key=str)[0])} for type {kind}; "
                          f"valid: {', '.join(sorted(allowed[kind]))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ConfigError(f"space.{name}.choices: must be a list, got {quote(choices)}")
        return CategoricalParam(name, tuple(choices))
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"space.{name}: `{key}` is required for type {kind}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"space.{name}.log: must be true or false, got {quote(log)}")
    if kind == "float":
        low, high, step = (_number(name, k, spec.get(k), float) for k in ("low", "high", "step"))
        return FloatParam(name, low, high, log, step)
    low, high, step = (_number(name, k, spec.get(k), int) for k in ("low", "high", "step"))
    return IntParam(name, low, high, log, 1 if step is None else step)


def _number(name: str, key: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"space.{name}.{key}: must be a number, got {quote(value)}")
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an int past 1e308: the finite-bounds check names it
            return math.inf
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"space.{name}.{key}: must be an integer for type int, got {quote(value)}")
    if not -INT64 <= int(value) < INT64:
        raise ConfigError(f"space.{name}.{key}: must fit in a 64-bit integer, got {quote(value)}")
    return int(value)


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

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def grid_size(self) -> int:
        """Points of the grid, counted without listing them (raises for a float without `step`)."""
        return math.prod(p.grid_size() for p in self.params)

    def grid(self) -> list[dict[str, Scalar]]:
        size = self.grid_size()
        if size > MAX_GRID:
            raise ConfigError(f"space: the grid has {quote(size)} points, more than the {MAX_GRID} a grid search "
                              "may have; use coarser steps, fewer choices or another sampler")
        axes = [p.grid() for p in self.params]
        return [dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes)]

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
