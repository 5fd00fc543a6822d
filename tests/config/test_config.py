from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoft.config import (apply_params, config_from_dict, config_to_dict, load_config, parse_duration,
                           demo_config_path)
from autoft.errors import ConfigError
from autoft.config.space import CategoricalParam, FloatParam, IntParam, SearchSpace


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads() -> None:
    cfg = load_config(None)
    assert cfg.source == str(demo_config_path())
    assert set(cfg.space.names) >= {"learning_rate", "regularization_coeff", "batch_size", "optimizer"}
    assert cfg.search.trials >= 6 and cfg.search.sampler == "tpe" and cfg.search.scheduler == "asha"


def test_defaults_and_types() -> None:
    cfg = config_from_dict({"train": {"epochs": 2, "learning_rate": 1}, "search": {"time_budget": "30m"}})
    assert cfg.train.epochs == 2 and cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.search.time_budget == 1800.0
    assert cfg.data.dataset == "fashion-mnist-demo"


def test_exponent_floats_without_a_dot_are_numbers_as_in_yaml_1_2(tmp_path: Path) -> None:
    """PyYAML's YAML 1.1 reads 1e-4 as a string; a config (and --set) reads it as the number users mean."""
    path = write(tmp_path, "train: {learning_rate: 1e-4, regularization_coeff: 5E-3}\nspace:\n"
                           "  learning_rate: {type: float, low: 1e-5, high: .5e-1, log: true}\n"
                           "  batch_size: {type: categorical, choices: [8, 16]}\n")
    cfg = load_config(path, ["train.warmup_proportion=1e-1"])
    assert cfg.train.learning_rate == 1e-4 and cfg.train.regularization_coeff == 5e-3
    assert cfg.train.warmup_proportion == pytest.approx(0.1)
    assert cfg.space.params[0] == FloatParam("learning_rate", 1e-5, 0.05, log=True)
    with pytest.raises(ConfigError, match="must be a number"):  # a quoted exponent is still a string
        load_config(write(tmp_path, "train: {learning_rate: '1e-4'}\n"))


def test_set_overrides_dotted(tmp_path: Path) -> None:
    path = write(tmp_path, "train: {epochs: 3}\nspace:\n  learning_rate: {type: float, low: 0.001, high: 0.1}\n")
    cfg = load_config(path, ["train.epochs=1", "search.trials=2", "space.learning_rate.log=true", "name=x1"])
    assert cfg.train.epochs == 1 and cfg.search.trials == 2 and cfg.name == "x1"
    assert cfg.space.params[0] == FloatParam("learning_rate", 0.001, 0.1, log=True)


def test_round_trip_of_resolved_config() -> None:
    cfg = load_config(None, ["search.time_budget=2h", "train.eval_interval=5"])
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg))))
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("raw, match", [
    ({"trian": {}}, r"unknown key 'trian'; did you mean 'train'\?"),
    ({"train": {"epoch": 1}}, r"train: unknown key 'epoch'; did you mean 'epochs'\?"),
    ({"train": {"epochs": "many"}}, r"train.epochs: must be an integer, got 'many'"),
    ({"train": {"epochs": 0}}, r"train.epochs: must be > 0"),
    ({"train": {"optimizer": "adamm"}}, r"train.optimizer: unknown value 'adamm'; did you mean 'adam'\?.*rmsprop"),
    ({"train": {"strategy": "ulmfitt"}}, r"train.strategy: unknown value 'ulmfitt'.*l2sp"),
    ({"search": {"sampler": "tpee"}}, r"search.sampler: unknown value 'tpee'.*random"),
    ({"search": {"scheduler": "ash"}}, r"search.scheduler: unknown value 'ash'.*median"),
    ({"search": {"time_budget": "soon"}}, r"search.time_budget: must be a duration"),
    ({"train": {"eval_interval": "often"}}, r"train.eval_interval: must be 'epoch' or a positive step count"),
    ({"data": {"dataset": "x", "path": "y"}}, r"data: give either `dataset` or `path`"),
    ({"space": {"learning_rate": {"type": "float", "low": 1, "high": 0.1}}}, r"space.learning_rate: `low <= high`"),
    ({"space": {"learning_rate": {"type": "float", "low": 0, "high": 0.1, "log": True}}}, r"log scale needs low > 0"),
    ({"space": {"optimizer": {"type": "categorical", "choices": []}}}, r"space.optimizer: `choices` must not be empty"),
    ({"space": {"optimizer": {"type": "categorical", "choices": ["adam", "lion"]}}}, r"train.optimizer: unknown value 'lion'"),
    ({"space": {"learnin_rate": {"type": "float", "low": 0.1, "high": 1}}}, r"space: unknown key 'learnin_rate'; did you mean 'learning_rate'"),
    ({"space": {"batch_size": {"type": "float", "low": 8, "high": 64}}}, r"space.batch_size: train.batch_size is an integer"),
    ({"space": {"lr": {"type": "floaty"}}}, r"space.lr.type: must be one of float, int, categorical"),
    ({"name": "bad name!"}, r"name: must be letters"),
])
def test_bad_configs_name_the_key(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml: YAML syntax error at line \d+, column \d+"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_paddlehub_param_list_is_a_space_and_enqueues_init_values(tmp_path: Path) -> None:
    path = write(tmp_path, """
param_list:
- name : learning_rate
  init_value : 0.001
  type : float
  lower_than : 0.05
  greater_than : 0.000005
- name : batch_size
  init_value : 12
  type : int
  lower_than : 20
  greater_than : 10
""")
    cfg = load_config(path)
    assert cfg.space.params == (FloatParam("learning_rate", 5e-6, 0.05), IntParam("batch_size", 10, 20))
    assert cfg.search.enqueue[0] == {"learning_rate": 0.001, "batch_size": 12}


def test_apply_params_routes_to_sections() -> None:
    cfg = config_from_dict({})
    new = apply_params(cfg, {"learning_rate": 0.5, "backbone": "resnet18", "data.image_size": 48, "batch_size": 8})
    assert (new.train.learning_rate, new.model.backbone, new.data.image_size, new.train.batch_size) == (0.5, "resnet18", 48, 8)
    assert cfg.train.learning_rate == 1e-3  # frozen original untouched


def test_space_to_optuna_and_grid() -> None:
    space = SearchSpace.from_dict({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                   "batch_size": [16, 32], "dis_blocks": {"type": "int", "low": 1, "high": 3}})
    dists = space.to_optuna()
    assert dists["learning_rate"].log and dists["batch_size"].choices == (16, 32)
    assert dists["dis_blocks"].low == 1 and dists["dis_blocks"].high == 3
    with pytest.raises(ConfigError, match="grid sampler needs finite values"):
        space.grid()
    grid = SearchSpace((CategoricalParam("a", ("x", "y")), IntParam("b", 1, 3))).grid()
    assert len(grid) == 6 and {"a": "y", "b": 3} in grid


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5h", 5400), (45, 45)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration("k", text) == seconds


def test_grid_is_counted_before_it_is_listed() -> None:
    huge = SearchSpace((IntParam("epochs", 1, 10**9), FloatParam("learning_rate", 0.0, 1.0, step=1e-300)))
    assert huge.grid_size() > 10**9  # counted, not listed: this returns at once
    with pytest.raises(ConfigError, match=r"space: the grid has .* points, more than the 100000"):
        huge.grid()
    assert SearchSpace((IntParam("b", 8, 32, step=8), FloatParam("m", 0.5, 0.9, step=0.2))).grid_size() == 12


@pytest.mark.parametrize("param, value, expected", [
    (FloatParam("learning_rate", 1e-4, 1e-2, log=True), 1e-3, 1e-3),
    (FloatParam("momentum", 0.5, 0.9, step=0.2), 0.7, 0.7),
    (IntParam("batch_size", 8, 32, step=8), 24.0, 24),
    (CategoricalParam("optimizer", ("adam", "sgd")), "sgd", "sgd"),
    (CategoricalParam("lr", (0.1, 1.0)), 1, 1.0),
])
def test_param_check_accepts_points_of_the_space(param: object, value: object, expected: object) -> None:
    checked = param.check("search.enqueue[0].x", value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize("param, value, match", [
    (FloatParam("momentum", 0.5, 0.9, step=0.2), 0.6, r"k: must be 0\.5 \+ a multiple of space\.momentum's step 0\.2"),
    (IntParam("batch_size", 8, 32), 10**400, r"k: must be within space\.batch_size's \[8, 32\]"),
    (CategoricalParam("optimizer", ("adam",)), ["adam"], r"k: must be one of space\.optimizer's choices"),
])
def test_param_check_names_the_key_and_the_rule(param: object, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        param.check("k", value)


def test_space_refuses_non_finite_bounds_with_the_finite_rule() -> None:
    for low, high in ((float("nan"), 1.0), (0.0, float("inf")), (float("-inf"), 0.0)):
        with pytest.raises(ConfigError, match=r"space\.x: bounds must be finite numbers"):
            FloatParam("x", low, high)
