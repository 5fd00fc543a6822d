"""YAML → frozen RunConfig, validated key by key. Imports neither paddle nor ray."""
from __future__ import annotations

import copy
import enum
import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from autoft.config.rules import check_run_name
from autoft.errors import ConfigError
from autoft.config.space import INT64, MAX_GRID, CategoricalParam, FloatParam, IntParam, SearchSpace, quote

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "SearchConfig", "RunConfig", "OPTIMIZERS", "STRATEGIES",
    "SAMPLERS", "SCHEDULERS", "load_config", "config_from_dict", "apply_params", "parse_set", "config_to_dict",
    "demo_config_path", "parse_duration", "resolve_image_size", "first_config", "checked_trial",
]

class Optimizer(str, enum.Enum):
    ADAM = "adam"
    ADAMW = "adamw"
    MOMENTUM = "momentum"
    SGD = "sgd"
    RMSPROP = "rmsprop"
    ADAGRAD = "adagrad"


class StrategyName(str, enum.Enum):
    """PaddleHub's fine-tune strategies; training.strategies implements each."""

    DEFAULT = "default"
    ADAMW_DECAY = "adamw_decay"
    ULMFIT = "ulmfit"
    L2SP = "l2sp"


class Sampler(str, enum.Enum):
    """Optuna samplers; search.samplers builds each."""

    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"
    CMAES = "cmaes"
    QMC = "qmc"
    GP = "gp"


class Scheduler(str, enum.Enum):
    """Ray Tune trial schedulers; search.schedulers builds each."""

    ASHA = "asha"
    MEDIAN = "median"
    HYPERBAND = "hyperband"
    FIFO = "fifo"
    PBT = "pbt"


class FinalFit(str, enum.Enum):
    NONE = "none"
    TRAIN_VAL = "train+val"


class Device(str, enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"


def names(kind: type[enum.Enum]) -> tuple[str, ...]:
    """The YAML spellings of an Enum, in declaration order (what validation accepts and messages list)."""
    return tuple(member.value for member in kind)


OPTIMIZERS = names(Optimizer)
STRATEGIES = names(StrategyName)
SAMPLERS = names(Sampler)
SCHEDULERS = names(Scheduler)
FINAL_FITS = names(FinalFit)
DEVICES = names(Device)
IMAGE_SIZES = (16, 1024)  # pixels per side: below, the backbones pool to nothing; above, one image fills a GPU
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".pdparams")  # what backbones.loading reads
_SEEDS = 2**31  # numpy's RandomState takes < 2**32; search.seed + trials done and train.seed + k must fit too
_MAX_ALIASED = 10_000  # YAML nodes that aliases (*name) may add in all: a config reuses a list, not a billion
_MAX_DEPTH = 32  # YAML nesting: a config is a few levels deep, and deeper ones overflow Python's recursion
_MAX_NAME = 100  # characters: the name starts the run folder's name, and a file name has 255 bytes at most


class _Refusal(Exception):
    """Well-formed YAML that a config must not be: a duplicate key, an alias bomb, runaway nesting."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader (no python/* tags) that refuses what it would otherwise accept silently or choke on."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) → nodes it expands to, aliases counted in full
        self._aliased = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _Refusal(f"nesting deeper than {_MAX_DEPTH} levels", self.peek_event().start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        """Refuse an alias before the walk: sizes are known while composing, so the bomb is never built."""
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # the composer says "found undefined alias"
        size = self._sizes.get(id(node))
        if size is None:  # its anchor is still open: the node would contain itself
            raise _Refusal(f"alias *{event.anchor[:40]} is inside its own anchor (a recursive structure)",
                           event.start_mark)
        self._aliased += size
        if self._aliased > _MAX_ALIASED:
            raise _Refusal(f"aliases may add at most {_MAX_ALIASED} YAML nodes in all, but *{event.anchor[:40]} "
                           f"takes them to {self._aliased} (an alias bomb?)", event.start_mark)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then a key is YAML's override, not a duplicate
            key = self.construct_object(key_node)
            if key in first:
                raise _Refusal(f"duplicate key {quote(key)} (first at line {first[key]}); a key may appear once "
                               "in a mapping", key_node.start_mark)
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # a 5000-digit int, a date like 2024-13-45
            what = node.value if isinstance(node, yaml.ScalarNode) else node.tag
            raise _Refusal(f"cannot read {quote(what)}: {str(exc).splitlines()[0][:120]}", node.start_mark) from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no python/* tags, so no code runs


def _meta(rule: Callable[[str, Any], Any] | None = None, help: str = "") -> dict[str, Any]:
    return {"rule": rule, "help": help}


def _choice(options: Sequence[str]) -> Callable[[str, Any], Any]:
    def rule(key: str, value: Any) -> Any:
        if value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1) if len(str(value)) < 100 else []
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{key}: unknown value {quote(value)}{did} valid: {', '.join(options)}")
        return value
    return rule


def _positive(key: str, value: Any) -> Any:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {quote(value)}")
    return value


def _non_negative(key: str, value: Any) -> Any:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {quote(value)}")
    return value


def _fraction(key: str, value: Any) -> Any:
    if not 0 <= value < 1:
        raise ConfigError(f"{key}: must be in [0, 1), got {quote(value)}")
    return value


def _open_fraction(key: str, value: Any) -> Any:
    if not 0 < value < 1:
        raise ConfigError(f"{key}: must be in (0, 1), got {quote(value)}")
    return value


def _half_fraction(key: str, value: Any) -> Any:
    if not 0 < value <= 0.5:
        raise ConfigError(f"{key}: must be in (0, 0.5], got {quote(value)}")
    return value


def _epoch_or_steps(key: str, value: Any) -> Any:
    if value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'epoch' or a positive step count, got {quote(value)}")


def _at_least_two(key: str, value: Any) -> Any:
    if value < 2:  # ASHA and HyperBand keep 1/reduction_factor of the trials: 1 keeps all and divides by log 1
        raise ConfigError(f"{key}: must be >= 2, got {quote(value)}")
    return value


def _seed(key: str, value: Any) -> Any:
    if not 0 <= value < _SEEDS:
        raise ConfigError(f"{key}: must be in [0, 2**31), got {quote(value)}")
    return value


def _image_size(key: str, value: Any) -> Any:
    low, high = IMAGE_SIZES
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be in [{low}, {high}] pixels, got {quote(value)}")
    return value


def _auto_or_count(key: str, value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'auto' or a positive integer, got {quote(value)}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value: Any) -> float | None:
    """'30m', '2h', '90s', '1.5h' or a number of seconds → seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past 1e308
            seconds = math.inf
    else:
        m = _DURATION.match(str(value)) if isinstance(value, str) else None
        if not m:
            raise ConfigError(f"{key}: must be a duration like 90s, 30m, 2h or 1d, got {quote(value)}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):  # nan passes `<= 0`; inf is "no limit", which is null
        raise ConfigError(f"{key}: must be a positive, finite duration (null for no limit), got {quote(value)}")
    return seconds


@dataclass(frozen=True)
class DataConfig:
    dataset: str | None = field(default=None, metadata=_meta(help="registry name, e.g. fashion-mnist-demo"))
    path: str | None = field(default=None, metadata=_meta(help="ImageFolder, PaddleHub lists or CSV"))
    val_split: float = field(default=0.2, metadata=_meta(_open_fraction))
    image_size: int | None = field(default=None, metadata=_meta(_image_size))
    max_train_per_class: int | None = field(default=None, metadata=_meta(_positive))
    max_val_per_class: int | None = field(default=None, metadata=_meta(_positive))
    flatten_nested: bool = False


def _backbone(key: str, value: Any) -> Any:
    from autoft.backbones.registry import get_spec  # paddle-free: names and specs only

    try:
        get_spec(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return value


def _pretrained(key: str, value: Any) -> Any:
    """Checked here, once: a path the loader cannot read would otherwise fail every trial, one by one.

    Only names and suffixes are looked at; the file is not opened (backbones.loading reads it, safely).
    """
    if value in ("imagenet", "none"):
        return value
    path = Path(value).expanduser()  # relative to the current folder, as search._absolute_paths resolves it
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"{key}: a folder must be a bundle holding model.safetensors, got {quote(value, 200)}")
        return value
    if not path.is_file():
        raise ConfigError(f"{key}: must be imagenet, none, or an existing weights file or bundle folder; "
                          f"no such path {quote(value, 200)}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"{key}: a weights file must end in {', '.join(WEIGHT_SUFFIXES)}, got {quote(value, 200)}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = field(default="efficientnet_lite0", metadata=_meta(_backbone))
    pretrained: str = field(default="imagenet", metadata=_meta(_pretrained))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=3, metadata=_meta(_positive))
    batch_size: int = field(default=32, metadata=_meta(_positive))
    learning_rate: float = field(default=1e-3, metadata=_meta(_positive))
    regularization_coeff: float = field(default=1e-4, metadata=_meta(_non_negative))
    optimizer: str = field(default="adam", metadata=_meta(_choice(OPTIMIZERS)))
    momentum: float = field(default=0.9, metadata=_meta(_fraction))
    strategy: str = field(default="default", metadata=_meta(_choice(STRATEGIES)))
    warmup_proportion: float = field(default=0.1, metadata=_meta(_fraction))
    cut_fraction: float = field(default=0.1, metadata=_meta(_fraction))
    ratio: float = field(default=32.0, metadata=_meta(_positive))
    dis_blocks: int = field(default=3, metadata=_meta(_non_negative))
    factor: float = field(default=2.6, metadata=_meta(_positive))
    frz_blocks: int = field(default=3, metadata=_meta(_non_negative))
    dropout: float | None = field(default=None, metadata=_meta(_fraction))
    augment: bool = True
    eval_interval: int | str = field(default="epoch", metadata=_meta(_epoch_or_steps))
    log_interval: int = field(default=10, metadata=_meta(_positive))
    save_ckpt_interval: int | None = field(default=None, metadata=_meta(_positive))
    checkpoint_dir: str = "autoft_ckpt"
    device: str = field(default="auto", metadata=_meta(_choice(DEVICES)))
    data_parallel: bool = False
    amp: bool = False
    num_workers: int = field(default=0, metadata=_meta(_non_negative))
    seed: int = field(default=0, metadata=_meta(_seed))
    freeze_backbone: bool = False


@dataclass(frozen=True)
class Resources:
    cpu: float = field(default=1.0, metadata=_meta(_positive))
    gpu: float = field(default=0.0, metadata=_meta(_non_negative))


@dataclass(frozen=True)
class SearchConfig:
    trials: int = field(default=8, metadata=_meta(_positive))
    sampler: str = field(default="tpe", metadata=_meta(_choice(SAMPLERS)))
    scheduler: str = field(default="asha", metadata=_meta(_choice(SCHEDULERS)))
    metric: str = field(default="val_acc", metadata=_meta(_choice(("val_acc",))))
    max_concurrent: int | str = field(default="auto", metadata=_meta(_auto_or_count))
    resources_per_trial: Resources = field(default_factory=Resources)
    time_budget: float | None = field(default=None, metadata=_meta(parse_duration))
    trial_timeout: float | None = field(default=None, metadata=_meta(parse_duration))
    max_failures: int = field(default=0, metadata=_meta(_non_negative))
    grace_period: int = field(default=1, metadata=_meta(_positive))
    reduction_factor: int = field(default=2, metadata=_meta(_at_least_two))
    perturbation_interval: int = field(default=1, metadata=_meta(_positive, help="pbt: epochs between exploits"))
    quantile_fraction: float = field(default=0.25, metadata=_meta(_half_fraction, help="pbt: bottom share cloned"))
    seed: int = field(default=0, metadata=_meta(_seed))
    enqueue: tuple[dict[str, Any], ...] = ()
    warm_start_top_k: int = field(default=3, metadata=_meta(_positive))
    rerun_top_k: int = field(default=0, metadata=_meta(_non_negative))
    rerun_seeds: int = field(default=3, metadata=_meta(_positive))
    final_fit: str = field(default="none", metadata=_meta(_choice(FINAL_FITS)))


@dataclass(frozen=True)
class RunConfig:
    name: str = "autoft"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    space: SearchSpace = field(default_factory=SearchSpace)
    source: str = "<dict>"

    @property
    def image_size(self) -> int | None:
        return self.data.image_size


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "search": SearchConfig}
_TOP_KEYS = ("name", "data", "model", "train", "search", "space", "param_list")
# PaddleHub AutoDL Finetuner names → ours.
_PADDLEHUB_ALIASES = {"weight_decay": "regularization_coeff", "num_epoch": "epochs", "warmup_prop": "warmup_proportion",
                      "lr": "learning_rate"}


def _unknown(key: str, valid: Sequence[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, valid, n=1) if len(key) < 100 else []  # difflib is quadratic
    did = f"; did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"{where}: unknown key {quote(key)}{did} valid: {', '.join(valid)}")


def _type_ok(value: Any, annotation: str) -> Any:
    """Check a YAML value against a field annotation string such as 'int | None'; returns the coerced value."""
    kinds = [a.strip() for a in annotation.split("|")]
    if value is None:
        return value if "None" in kinds else _BAD
    if isinstance(value, bool):
        return value if "bool" in kinds else _BAD
    if isinstance(value, int) and "int" in kinds:
        return value
    if isinstance(value, (int, float)) and "float" in kinds:
        try:
            return float(value)
        except OverflowError:  # an int past 1e308: inf, which _field_value refuses as not finite
            return math.inf
    if isinstance(value, str) and "str" in kinds:
        return value
    return _BAD


_BAD = object()
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "None": "null"}


def _field_value(section: str, f: dataclasses.Field, value: Any) -> Any:
    key = f"{section}.{f.name}"
    rule = f.metadata.get("rule")
    if rule is parse_duration:
        return rule(key, value)
    checked = _type_ok(value, str(f.type))
    if checked is _BAD:
        words = " or ".join(_TYPE_WORDS.get(k.strip(), k.strip()) for k in str(f.type).split("|"))
        if rule in (_epoch_or_steps, _auto_or_count):
            return rule(key, value)
        raise ConfigError(f"{key}: must be {words}, got {quote(value)}")
    if isinstance(checked, float) and not math.isfinite(checked):  # nan slips through every `<` rule
        raise ConfigError(f"{key}: must be a finite number, got {quote(value)}")
    if isinstance(checked, int) and not isinstance(checked, bool) and not -INT64 <= checked < INT64:
        raise ConfigError(f"{key}: must fit in a 64-bit integer, got {quote(value)}")
    if rule is not None and checked is not None:
        return rule(key, checked)
    return checked


def _build_section(section: str, cls: type, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: must be a mapping of keys, got {quote(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown(str(key), list(fields), section)
        f = fields[key]
        if f.name == "resources_per_trial":
            values[key] = _build_section(f"{section}.{key}", Resources, value)
        elif f.name == "enqueue":
            values[key] = _enqueue(f"{section}.{key}", value)
        else:
            values[key] = _field_value(section, f, value)
    return cls(**values)


def _enqueue(key: str, value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{key}: must be a list of parameter mappings, got {quote(value)}")
    return tuple(dict(v) for v in value)


def _searchable_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Space key → (section, field). Bare names resolve to train then model; dotted names to any section."""
    table: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in ("data", "model", "train"):
        for f in dataclasses.fields(_SECTIONS[section]):
            table[f"{section}.{f.name}"] = (section, f)
    for section in ("model", "train"):
        for f in dataclasses.fields(_SECTIONS[section]):
            table.setdefault(f.name, (section, f))
    return table


def _check_space(space: SearchSpace) -> None:
    table = _searchable_fields()
    searched: dict[str, str] = {}  # section.field → the space key that sets it
    for p in space:
        if p.name not in table:
            raise _unknown(p.name, sorted(k for k in table if "." not in k), "space")
        section, f = table[p.name]
        dotted = f"{section}.{f.name}"
        if dotted in searched:  # `learning_rate` and `train.learning_rate`: one would silently overwrite the other
            raise ConfigError(f"space.{p.name}: {dotted} is already searched as space.{searched[dotted]}")
        searched[dotted] = p.name
        if isinstance(p, CategoricalParam):
            for choice in p.choices:
                _field_value(section, f, choice)
        elif "int" not in str(f.type) and "float" not in str(f.type):
            raise ConfigError(f"space.{p.name}: {section}.{f.name} is not numeric; use type: categorical")
        elif isinstance(p, FloatParam) and "float" not in str(f.type):
            raise ConfigError(f"space.{p.name}: {section}.{f.name} is an integer; use type: int")
        else:
            _field_value(section, f, p.low if isinstance(p, IntParam) else float(p.low))
            _field_value(section, f, p.high if isinstance(p, IntParam) else float(p.high))


def _param_list(raw: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """PaddleHub AutoDL Finetuner `param_list` → (space mapping, init values, the key each init value came from)."""
    if not isinstance(raw, list):
        raise ConfigError(f"param_list: must be a list of parameters, got {quote(raw)}")
    space: dict[str, Any] = {}
    init: dict[str, Any] = {}
    keys: dict[str, str] = {}
    given: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"param_list[{i}]: must be a mapping with `name`, got {quote(item)}")
        valid = ("name", "init_value", "type", "greater_than", "lower_than")
        for key in item:
            if key not in valid:
                raise _unknown(str(key), valid, f"param_list[{i}]")
        if not isinstance(item["name"], str):
            raise ConfigError(f"param_list[{i}].name: must be a string, got {quote(item['name'])}")
        name = _PADDLEHUB_ALIASES.get(item["name"], item["name"])
        if name in given:  # `lr` and `learning_rate` are one parameter
            raise ConfigError(f"param_list[{i}].name: {name} is already given by param_list[{given[name]}]")
        given[name] = i
        kind = item.get("type", "float")
        if kind not in ("float", "int"):
            raise ConfigError(f"param_list[{i}].type: must be float or int, got {quote(kind)}")
        for key in ("greater_than", "lower_than"):
            if key not in item:
                raise ConfigError(f"param_list[{i}]: `{key}` is required")
        space[name] = {"type": kind, "low": item["greater_than"], "high": item["lower_than"]}
        if "init_value" in item:
            init[name] = item["init_value"]
            keys[name] = f"param_list[{i}].init_value"
    return space, init, keys


def config_from_dict(raw: Any, source: str = "<dict>") -> RunConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise _unknown(str(key), _TOP_KEYS, source)
    name = raw.get("name", "autoft")
    check_run_name("name", name)
    if len(name) > _MAX_NAME:
        raise ConfigError(f"name: must be at most {_MAX_NAME} characters (it names the run folder), "
                          f"got {len(name)}: {quote(name)}")
    sections = {s: _build_section(s, cls, raw.get(s)) for s, cls in _SECTIONS.items()}
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, Mapping):
        raise ConfigError(f"space: must be a mapping of parameters, got {quote(space_raw)}")
    search = sections["search"]
    init: dict[str, Any] = {}
    init_keys: dict[str, str] = {}
    if "param_list" in raw:
        if space_raw:
            raise ConfigError("param_list: give either `space:` or PaddleHub `param_list:`, not both")
        space_raw, init, init_keys = _param_list(raw["param_list"])
    space = SearchSpace.from_dict(space_raw)
    _check_space(space)
    search = dataclasses.replace(search, enqueue=_enqueued(space, search.enqueue, init, init_keys))
    data = sections["data"]
    if (data.dataset is None) == (data.path is None):
        if data.dataset is None:
            data = dataclasses.replace(data, dataset="fashion-mnist-demo")
        else:
            raise ConfigError("data: give either `dataset` or `path`, not both")
    search = _check_strategy(search, space, sections["train"], explicit_trials="trials" in (raw.get("search") or {}))
    return RunConfig(name=name, data=data, model=sections["model"], train=sections["train"], search=search,
                     space=space, source=source)


def _enqueued(space: SearchSpace, enqueue: Sequence[Mapping[Any, Any]], init: Mapping[str, Any],
              init_keys: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    """search.enqueue checked against the space; PaddleHub's init_values, when given, are the first trial."""
    checked = tuple(checked_trial(space, params, f"search.enqueue[{i}]") for i, params in enumerate(enqueue))
    return (checked_trial(space, init, "param_list", init_keys), *checked) if init else checked


def checked_trial(space: SearchSpace, params: Mapping[Any, Any], where: str,
                   keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An enqueued trial, each value checked against its space parameter (else Optuna fails inside the search).

    A value is named ``where.name``, or ``keys[name]`` where it came from elsewhere (a PaddleHub init_value).
    """
    checked: dict[str, Any] = {}
    for name, value in params.items():
        param = space.get(name) if isinstance(name, str) else None
        if param is None:
            if not len(space):
                raise ConfigError(f"{where}: {quote(name)} is not searched: the space is empty")
            raise _unknown(str(name), space.names, where)
        checked[name] = param.check(keys[name] if keys else f"{where}.{name}", value)
    return checked


def _check_strategy(search: SearchConfig, space: SearchSpace, train: TrainConfig,
                    explicit_trials: bool) -> SearchConfig:
    """A grid's budget is its size (never more: a repeat teaches nothing); pbt checkpoints at epoch ends."""
    if search.sampler == "grid":
        if not len(space):
            raise ConfigError("search.sampler: grid needs a non-empty `space:`")
        size = space.grid_size()  # raises for a float without `step`; counted, not listed
        if size > MAX_GRID:
            raise ConfigError(f"search.sampler: grid over a space of {quote(size)} points, more than the {MAX_GRID} "
                              "a grid search may have; use coarser steps, fewer choices or another sampler")
        trials = min(search.trials, size) if explicit_trials else size
        search = dataclasses.replace(search, trials=trials)
    if search.scheduler == "pbt" and train.eval_interval != "epoch":
        raise ConfigError(f"search.scheduler: pbt exploits at epoch ends; set train.eval_interval: epoch, "
                          f"got {quote(train.eval_interval)}")
    return search


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_set(items: Sequence[str]) -> list[tuple[str, Any]]:
    """`key=value` strings → (dotted key, YAML-parsed value)."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: must look like key=value, e.g. train.epochs=1")
        try:
            value = _yaml_load(text) if text.strip() else None
        except _Refusal as exc:
            raise ConfigError(f"--set {quote(item, 200)}: {exc.problem}") from None
        except yaml.YAMLError:
            value = text
        out.append((key.strip(), value))
    return out


def read_yaml_file(path: Path) -> Any:
    """A YAML file read strictly (no duplicate keys, no alias bombs); every failure is one line naming the file."""
    try:
        return _yaml_load(path.read_text(encoding="utf-8"))
    except _Refusal as exc:
        raise ConfigError(f"{path}: line {exc.line}: {exc.problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML file (the demo when None), apply `--set` overrides, validate."""
    path = Path(path) if path is not None else demo_config_path()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = read_yaml_file(path)
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else raw
    if overrides:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        for key, value in parse_set(overrides):
            if key.split(".")[0] not in _TOP_KEYS:
                raise _unknown(key.split(".")[0], _TOP_KEYS, "--set")
            _set_dotted(raw, key, value)
    try:
        return config_from_dict(raw, source=str(path))
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def demo_config_path() -> Path:
    """search_spaces/demo.yaml, installed as the package `autoft.search_spaces`."""
    from importlib.resources import files

    return Path(str(files("autoft.search_spaces") / "demo.yaml"))


def resolve_image_size(cfg: RunConfig) -> int:
    """data.image_size, else the backbone's default."""
    from autoft.backbones.registry import get_spec  # paddle-free

    return cfg.data.image_size or get_spec(cfg.model.backbone).default_image_size


def first_config(cfg: RunConfig) -> RunConfig:
    """The run without a search: each space key at its first value (first choice, or the middle of its range)."""
    return apply_params(cfg, cfg.space.first_values())


def apply_params(cfg: RunConfig, params: Mapping[str, Any]) -> RunConfig:
    """Put sampled values into their sections: {'learning_rate': 0.01, 'data.image_size': 64} → a new RunConfig."""
    table = _searchable_fields()
    changes: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key not in table:
            raise _unknown(str(key), sorted(k for k in table if "." not in k), "params")
        section, f = table[key]
        changes.setdefault(section, {})[f.name] = _field_value(section, f, value)
    updated = {s: dataclasses.replace(getattr(cfg, s), **c) for s, c in changes.items()}
    return dataclasses.replace(cfg, **updated)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (what config.yaml in a run folder holds)."""
    out: dict[str, Any] = {"name": cfg.name}
    for section in _SECTIONS:
        d = dataclasses.asdict(getattr(cfg, section))
        if section == "search":
            d["enqueue"] = [dict(e) for e in cfg.search.enqueue]
        out[section] = d
    out["space"] = cfg.space.to_dict()
    return out
