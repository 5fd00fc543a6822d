"""YAML → frozen RunConfig, validated key by key. Imports neither paddle nor ray."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from autoft.errors import ConfigError
from autoft.space import CategoricalParam, FloatParam, IntParam, SearchSpace

__all__ = [
    "DataConfig", "ModelConfig", "TrainConfig", "SearchConfig", "RunConfig", "OPTIMIZERS", "STRATEGIES",
    "SAMPLERS", "SCHEDULERS", "load_config", "config_from_dict", "apply_params", "parse_set", "config_to_dict",
    "demo_config_path", "parse_duration", "resolve_image_size", "first_config",
]

OPTIMIZERS = ("adam", "adamw", "momentum", "sgd", "rmsprop", "adagrad")
STRATEGIES = ("default", "adamw_decay", "ulmfit", "l2sp")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc", "gp")
SCHEDULERS = ("asha", "median", "hyperband", "fifo", "pbt")
FINAL_FITS = ("none", "train+val")
DEVICES = ("auto", "cpu", "gpu")


def _meta(rule: Callable[[str, Any], Any] | None = None, help: str = "") -> dict[str, Any]:
    return {"rule": rule, "help": help}


def _choice(options: Sequence[str]) -> Callable[[str, Any], Any]:
    def rule(key: str, value: Any) -> Any:
        if value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"{key}: unknown value {value!r}{did} valid: {', '.join(options)}")
        return value
    return rule


def _positive(key: str, value: Any) -> Any:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")
    return value


def _non_negative(key: str, value: Any) -> Any:
    if value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value!r}")
    return value


def _fraction(key: str, value: Any) -> Any:
    if not 0 <= value < 1:
        raise ConfigError(f"{key}: must be in [0, 1), got {value!r}")
    return value


def _open_fraction(key: str, value: Any) -> Any:
    if not 0 < value < 1:
        raise ConfigError(f"{key}: must be in (0, 1), got {value!r}")
    return value


def _half_fraction(key: str, value: Any) -> Any:
    if not 0 < value <= 0.5:
        raise ConfigError(f"{key}: must be in (0, 0.5], got {value!r}")
    return value


def _epoch_or_steps(key: str, value: Any) -> Any:
    if value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'epoch' or a positive step count, got {value!r}")


def _auto_or_count(key: str, value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ConfigError(f"{key}: must be 'auto' or a positive integer, got {value!r}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value: Any) -> float | None:
    """'30m', '2h', '90s', '1.5h' or a number of seconds → seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(f"{key}: must be a duration like 90s, 30m, 2h or 1d, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{key}: must be a positive duration, got {value!r}")
    return seconds


@dataclass(frozen=True)
class DataConfig:
    dataset: str | None = field(default=None, metadata=_meta(help="registry name, e.g. fashion-mnist-demo"))
    path: str | None = field(default=None, metadata=_meta(help="ImageFolder, PaddleHub lists or CSV"))
    val_split: float = field(default=0.2, metadata=_meta(_open_fraction))
    image_size: int | None = field(default=None, metadata=_meta(_positive))
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
    if value in ("imagenet", "none") or Path(value).expanduser().exists():
        return value
    raise ConfigError(f"{key}: must be imagenet, none, or an existing weights file or bundle folder; "
                      f"no such path {value!r}")


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
    seed: int = 0
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
    reduction_factor: int = field(default=2, metadata=_meta(_positive))
    perturbation_interval: int = field(default=1, metadata=_meta(_positive, help="pbt: epochs between exploits"))
    quantile_fraction: float = field(default=0.25, metadata=_meta(_half_fraction, help="pbt: bottom share cloned"))
    seed: int = 0
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
    hint = difflib.get_close_matches(key, valid, n=1)
    did = f"; did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"{where}: unknown key {key!r}{did} valid: {', '.join(valid)}")


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
        return float(value)
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
        raise ConfigError(f"{key}: must be {words}, got {value!r}")
    if rule is not None and checked is not None:
        return rule(key, checked)
    return checked


def _build_section(section: str, cls: type, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{section}: must be a mapping of keys, got {raw!r}")
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
        raise ConfigError(f"{key}: must be a list of parameter mappings, got {value!r}")
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
    for p in space:
        if p.name not in table:
            raise _unknown(p.name, sorted(k for k in table if "." not in k), "space")
        section, f = table[p.name]
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


def _param_list(raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """PaddleHub AutoDL Finetuner `param_list` → (space mapping, init values)."""
    if not isinstance(raw, list):
        raise ConfigError(f"param_list: must be a list of parameters, got {raw!r}")
    space: dict[str, Any] = {}
    init: dict[str, Any] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"param_list[{i}]: must be a mapping with `name`, got {item!r}")
        valid = ("name", "init_value", "type", "greater_than", "lower_than")
        for key in item:
            if key not in valid:
                raise _unknown(str(key), valid, f"param_list[{i}]")
        name = _PADDLEHUB_ALIASES.get(str(item["name"]), str(item["name"]))
        kind = item.get("type", "float")
        if kind not in ("float", "int"):
            raise ConfigError(f"param_list[{i}].type: must be float or int, got {kind!r}")
        for key in ("greater_than", "lower_than"):
            if key not in item:
                raise ConfigError(f"param_list[{i}]: `{key}` is required")
        space[name] = {"type": kind, "low": item["greater_than"], "high": item["lower_than"]}
        if "init_value" in item:
            init[name] = item["init_value"]
    return space, init


def config_from_dict(raw: Any, source: str = "<dict>") -> RunConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise _unknown(str(key), _TOP_KEYS, source)
    name = raw.get("name", "autoft")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"name: must be letters, digits, '_', '-' or '.', got {name!r}")
    sections = {s: _build_section(s, cls, raw.get(s)) for s, cls in _SECTIONS.items()}
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, Mapping):
        raise ConfigError(f"space: must be a mapping of parameters, got {space_raw!r}")
    search = sections["search"]
    if "param_list" in raw:
        if space_raw:
            raise ConfigError("param_list: give either `space:` or PaddleHub `param_list:`, not both")
        space_raw, init = _param_list(raw["param_list"])
        if init:
            search = dataclasses.replace(search, enqueue=(init, *search.enqueue))
    space = SearchSpace.from_dict(space_raw)
    _check_space(space)
    data = sections["data"]
    if (data.dataset is None) == (data.path is None):
        if data.dataset is None:
            data = dataclasses.replace(data, dataset="fashion-mnist-demo")
        else:
            raise ConfigError("data: give either `dataset` or `path`, not both")
    for i, params in enumerate(search.enqueue):
        for key in params:
            if key not in space.names:
                raise _unknown(str(key), space.names, f"search.enqueue[{i}]")
    search = _check_strategy(search, space, sections["train"], explicit_trials="trials" in (raw.get("search") or {}))
    return RunConfig(name=name, data=data, model=sections["model"], train=sections["train"], search=search,
                     space=space, source=source)


def _check_strategy(search: SearchConfig, space: SearchSpace, train: TrainConfig,
                    explicit_trials: bool) -> SearchConfig:
    """A grid's budget is its size (never more: a repeat teaches nothing); pbt checkpoints at epoch ends."""
    if search.sampler == "grid":
        if not len(space):
            raise ConfigError("search.sampler: grid needs a non-empty `space:`")
        size = len(space.grid())  # raises for a float without `step`
        trials = min(search.trials, size) if explicit_trials else size
        search = dataclasses.replace(search, trials=trials)
    if search.scheduler == "pbt" and train.eval_interval != "epoch":
        raise ConfigError(f"search.scheduler: pbt exploits at epoch ends; set train.eval_interval: epoch, "
                          f"got {train.eval_interval!r}")
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
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        out.append((key.strip(), value))
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML file (the demo when None), apply `--set` overrides, validate."""
    path = Path(path) if path is not None else demo_config_path()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
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
