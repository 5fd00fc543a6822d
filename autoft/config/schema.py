"""The config's shape: Enums (the one source of sampler, scheduler, strategy, optimizer, device and final-fit
names), frozen dataclasses, and ``config_from_dict`` validating a mapping key by key with the rules in
``config.rules``. Reading YAML is ``config.loader``. Imports neither paddle nor ray."""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoft.config.paddlehub import param_list
from autoft.config.rules import (
    at_least_two,
    auto_or_count,
    backbone_name,
    check_run_name,
    choice,
    epoch_or_steps,
    fraction,
    half_fraction,
    head_width,
    image_size,
    meta,
    non_negative,
    open_fraction,
    parse_duration,
    positive,
    pretrained_source,
    seed_value,
    unknown_key,
)
from autoft.config.space import INT64, MAX_GRID, CategoricalParam, FloatParam, IntParam, SearchSpace, quote
from autoft.errors import ConfigError

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "SearchConfig", "RunConfig", "OPTIMIZERS", "STRATEGIES",
    "SAMPLERS", "SCHEDULERS", "TOP_KEYS", "config_from_dict", "apply_params", "config_to_dict", "resolve_image_size",
    "searched_image_sizes", "first_config", "checked_trial",
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


class EvalEngine(str, enum.Enum):
    """What runs the forward passes that do not train (validation, the feature cache, the dry-run estimate)."""

    AUTO = "auto"            # Paddle's inference engine, the dynamic graph if an export fails
    INFERENCE = "inference"  # Paddle's inference engine on a fresh export of the current weights
    DYGRAPH = "dygraph"      # the training model's own forward


class Depthwise(str, enum.Enum):
    """How a training step runs depthwise convolutions (autoft.training.depthwise)."""

    AUTO = "auto"        # grouped on CPU, Paddle's own kernel on GPU
    GROUPED = "grouped"  # block-diagonal grouped convolution while training (2-7x faster per layer on CPU)
    NATIVE = "native"    # Paddle's depthwise kernel


def names(kind: type[enum.Enum]) -> tuple[str, ...]:
    """The YAML spellings of an Enum, in declaration order (what validation accepts and messages list)."""
    return tuple(member.value for member in kind)


OPTIMIZERS = names(Optimizer)
STRATEGIES = names(StrategyName)
SAMPLERS = names(Sampler)
SCHEDULERS = names(Scheduler)
FINAL_FITS = names(FinalFit)
DEVICES = names(Device)
EVAL_ENGINES = names(EvalEngine)
DEPTHWISE = names(Depthwise)



@dataclass(frozen=True)
class DataConfig:
    dataset: str | None = field(default=None, metadata=meta(help="registry name, e.g. fashion-mnist-demo"))
    path: str | None = field(default=None, metadata=meta(help="ImageFolder, PaddleHub lists or CSV"))
    val_split: float = field(default=0.2, metadata=meta(open_fraction))
    image_size: int | None = field(default=None, metadata=meta(image_size))
    max_train_per_class: int | None = field(default=None, metadata=meta(positive))
    max_val_per_class: int | None = field(default=None, metadata=meta(positive))
    flatten_nested: bool = False


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = field(default="efficientnet_lite0", metadata=meta(backbone_name))
    pretrained: str = field(default="imagenet", metadata=meta(pretrained_source))
    head_hidden: int = field(default=0, metadata=meta(head_width))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=3, metadata=meta(positive))
    batch_size: int = field(default=32, metadata=meta(positive))
    learning_rate: float = field(default=1e-3, metadata=meta(positive))
    regularization_coeff: float = field(default=1e-4, metadata=meta(non_negative))
    optimizer: str = field(default="adam", metadata=meta(choice(OPTIMIZERS)))
    momentum: float = field(default=0.9, metadata=meta(fraction))
    strategy: str = field(default="default", metadata=meta(choice(STRATEGIES)))
    warmup_proportion: float = field(default=0.1, metadata=meta(fraction))
    cut_fraction: float = field(default=0.1, metadata=meta(fraction))
    ratio: float = field(default=32.0, metadata=meta(positive))
    dis_blocks: int = field(default=3, metadata=meta(non_negative))
    factor: float = field(default=2.6, metadata=meta(positive))
    frz_blocks: int = field(default=3, metadata=meta(non_negative))
    dropout: float | None = field(default=None, metadata=meta(fraction))
    augment: bool = True
    eval_interval: int | str = field(default="epoch", metadata=meta(epoch_or_steps))
    log_interval: int = field(default=10, metadata=meta(positive))
    save_ckpt_interval: int | None = field(default=None, metadata=meta(positive))
    checkpoint_dir: str = "autoft_ckpt"
    device: str = field(default="auto", metadata=meta(choice(DEVICES)))
    data_parallel: bool = False
    amp: bool = False
    num_workers: int = field(default=0, metadata=meta(non_negative))
    seed: int = field(default=0, metadata=meta(seed_value))
    freeze_backbone: bool = False
    eval_engine: str = field(default="auto", metadata=meta(choice(EVAL_ENGINES)))
    depthwise: str = field(default="auto", metadata=meta(choice(DEPTHWISE)))


@dataclass(frozen=True)
class Resources:
    cpu: float = field(default=1.0, metadata=meta(positive))
    gpu: float = field(default=0.0, metadata=meta(non_negative))


@dataclass(frozen=True)
class SearchConfig:
    trials: int = field(default=8, metadata=meta(positive))
    sampler: str = field(default="tpe", metadata=meta(choice(SAMPLERS)))
    scheduler: str = field(default="asha", metadata=meta(choice(SCHEDULERS)))
    metric: str = field(default="val_acc", metadata=meta(choice(("val_acc",))))
    max_concurrent: int | str = field(default="auto", metadata=meta(auto_or_count))
    resources_per_trial: Resources = field(default_factory=Resources)
    time_budget: float | None = field(default=None, metadata=meta(parse_duration))
    trial_timeout: float | None = field(default=None, metadata=meta(parse_duration))
    max_failures: int = field(default=0, metadata=meta(non_negative))
    grace_period: int = field(default=1, metadata=meta(positive))
    reduction_factor: int = field(default=2, metadata=meta(at_least_two))
    perturbation_interval: int = field(default=1, metadata=meta(positive, help="pbt: epochs between exploits"))
    quantile_fraction: float = field(default=0.25, metadata=meta(half_fraction, help="pbt: bottom share cloned"))
    seed: int = field(default=0, metadata=meta(seed_value))
    enqueue: tuple[dict[str, Any], ...] = ()
    warm_start_top_k: int = field(default=3, metadata=meta(positive))
    rerun_top_k: int = field(default=0, metadata=meta(non_negative))
    rerun_seeds: int = field(default=3, metadata=meta(positive))
    final_fit: str = field(default="none", metadata=meta(choice(FINAL_FITS)))


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
_MAX_NAME = 100  # characters: the name starts the run folder's name, and a file name has 255 bytes at most
TOP_KEYS = ("name", "data", "model", "train", "search", "space", "param_list")
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
        if rule in (epoch_or_steps, auto_or_count):
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
            raise unknown_key(str(key), list(fields), section)
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
            raise unknown_key(p.name, sorted(k for k in table if "." not in k), "space")
        section, f = table[p.name]
        dotted = f"{section}.{f.name}"
        if dotted in searched:  # `learning_rate` and `train.learning_rate`: one would silently overwrite the other
            raise ConfigError(f"space.{p.name}: {dotted} is already searched as space.{searched[dotted]}")
        searched[dotted] = p.name
        if isinstance(p, CategoricalParam):
            for value in p.choices:
                _field_value(section, f, value)
        elif "int" not in str(f.type) and "float" not in str(f.type):
            raise ConfigError(f"space.{p.name}: {section}.{f.name} is not numeric; use type: categorical")
        elif isinstance(p, FloatParam) and "float" not in str(f.type):
            raise ConfigError(f"space.{p.name}: {section}.{f.name} is an integer; use type: int")
        else:
            _field_value(section, f, p.low if isinstance(p, IntParam) else float(p.low))
            _field_value(section, f, p.high if isinstance(p, IntParam) else float(p.high))


def config_from_dict(raw: Any, source: str = "<dict>") -> RunConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_KEYS:
            raise unknown_key(str(key), TOP_KEYS, source)
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
    hub_list: Any = raw.get("param_list")  # raw YAML: param_list() checks it
    if isinstance(space_raw, Mapping) and list(space_raw) == ["param_list"]:  # `space: {param_list: [...]}`
        if "param_list" in raw:
            raise ConfigError("param_list: give either `space:` or PaddleHub `param_list:`, not both")
        hub_list, space_raw = space_raw["param_list"], {}
    if hub_list is not None or "param_list" in raw:
        if space_raw:
            raise ConfigError("param_list: give either `space:` or PaddleHub `param_list:`, not both")
        space_raw, init, init_keys = param_list(hub_list)
        sections["train"] = _paddlehub_strategy(sections["train"], hub_list, raw.get("train"))
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


def _paddlehub_strategy(train: TrainConfig, hub_list: Sequence[Any], raw_train: Any) -> TrainConfig:
    """PaddleHub's ``weight_decay`` and ``warmup_prop`` were AdamWeightDecayStrategy's: a ``param_list`` searching
    them means ``adamw_decay``, unless the config chose a strategy itself."""
    names = {item.get("name") for item in hub_list if isinstance(item, Mapping)}
    chosen = isinstance(raw_train, Mapping) and "strategy" in raw_train
    if names & {"weight_decay", "warmup_prop"} and not chosen:
        return dataclasses.replace(train, strategy=StrategyName.ADAMW_DECAY.value)
    return train


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
            raise unknown_key(str(name), space.names, where)
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


def resolve_image_size(cfg: RunConfig) -> int:
    """data.image_size, else the backbone's default."""
    from autoft.backbones.registry import get_spec  # paddle-free

    return cfg.data.image_size or get_spec(cfg.model.backbone).default_image_size


MAX_PREDECODED_SIZES = 8


def searched_image_sizes(cfg: RunConfig) -> tuple[int, ...]:
    """The image sizes the space can draw (ascending) when it searches ``data.image_size`` over at most
    MAX_PREDECODED_SIZES values (choices, or an integer range), so the data cache can hold each before trials start;
    () when the size is not searched or has more values than that."""
    param = cfg.space.get("data.image_size")
    if isinstance(param, CategoricalParam) or (isinstance(param, IntParam)
                                               and param.grid_size() <= MAX_PREDECODED_SIZES):
        values = param.choices if isinstance(param, CategoricalParam) else param.grid()
        sizes = sorted({int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 1})
        return tuple(sizes) if len(sizes) <= MAX_PREDECODED_SIZES else ()
    return ()


# train keys that only some strategies read (training.strategies)
_STRATEGY_KEYS = {"warmup_proportion": (StrategyName.ADAMW_DECAY,), "cut_fraction": (StrategyName.ULMFIT,),
                  "ratio": (StrategyName.ULMFIT,), "dis_blocks": (StrategyName.ULMFIT,),
                  "factor": (StrategyName.ULMFIT,), "frz_blocks": (StrategyName.ULMFIT,)}


def inert_searched_keys(cfg: RunConfig) -> list[str]:
    """One line for each searched key that no strategy the search can pick reads (searching it changes nothing)."""
    searched = cfg.space.get("strategy") or cfg.space.get("train.strategy")
    strategies = {str(c) for c in getattr(searched, "choices", ())} or {cfg.train.strategy}
    lines = []
    for name in cfg.space.names:
        key = name.removeprefix("train.")
        readers = [s.value for s in _STRATEGY_KEYS.get(key, ())]
        if readers and not strategies & set(readers):
            lines.append(f"space.{name} has no effect under train.strategy {', '.join(sorted(strategies))} "
                         f"(only {', '.join(readers)} reads it)")
    return lines


def first_config(cfg: RunConfig) -> RunConfig:
    """The run without a search (``autoft train``, the ``--dry-run`` probe): the first trial the search would run
    (``search.enqueue[0]``, which PaddleHub's ``init_value``s are), and for the keys it leaves out each space key's
    first value (first choice, or the middle of its range)."""
    first = dict(cfg.search.enqueue[0]) if cfg.search.enqueue else {}
    return apply_params(cfg, {**cfg.space.first_values(), **first})


def apply_params(cfg: RunConfig, params: Mapping[str, Any]) -> RunConfig:
    """Put sampled values into their sections: {'learning_rate': 0.01, 'data.image_size': 64} → a new RunConfig."""
    table = _searchable_fields()
    changes: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key not in table:
            raise unknown_key(str(key), sorted(k for k in table if "." not in k), "params")
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
