"""PaddleHub AutoDL Finetuner files as a PaddleHub user has them: an ``hparam.yaml`` holding only ``param_list:``
beside their config, reached by ``space: hparam.yaml`` or ``--param-file``; PaddleHub's names with PaddleHub's
meaning; the values ``autoft train`` and the ``--dry-run`` probe use."""
from __future__ import annotations

from pathlib import Path

import pytest

from autoft.config import first_config, inert_searched_keys, load_config
from autoft.config.space import FloatParam, IntParam
from autoft.errors import ConfigError

from cli_helpers import assert_one_line_exit_2, run

# PaddleHub's own example (seed tutorial): the AdamWeightDecayStrategy names, init values mid-way to nothing
HPARAM = """\
param_list:
- name : learning_rate
  init_value : 0.001
  type : float
  lower_than : 0.01
  greater_than : 0.0001
- name : weight_decay
  init_value : 0.0001
  type : float
  lower_than : 1.0
  greater_than : 0.0
- name : batch_size
  init_value : 16
  type : int
  lower_than : 32
  greater_than : 8
"""


def _files(tmp: Path, config: str) -> Path:
    (tmp / "hparam.yaml").write_text(HPARAM)
    (tmp / "config.yaml").write_text(config)
    return tmp / "config.yaml"


def test_space_names_an_hparam_file_beside_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _files(tmp_path, "name: flowers\nspace: hparam.yaml\n")
    monkeypatch.chdir(tmp_path)  # PaddleHub users run from the folder that holds both files
    cfg = load_config(path)
    assert cfg.space.params == (FloatParam("learning_rate", 1e-4, 0.01), FloatParam("regularization_coeff", 0.0, 1.0),
                                IntParam("batch_size", 8, 32))
    assert cfg.train.strategy == "adamw_decay"  # PaddleHub's weight_decay belonged to AdamWeightDecayStrategy
    first = first_config(cfg)  # what `autoft train` and the --dry-run probe run
    assert (first.train.learning_rate, first.train.regularization_coeff, first.train.batch_size) == (0.001, 1e-4, 16)


def test_param_file_replaces_the_configs_space_and_the_strategy_chosen_is_kept(tmp_path: Path) -> None:
    path = _files(tmp_path, "train: {strategy: l2sp}\nspace:\n  dropout: {type: float, low: 0.1, high: 0.5}\n")
    cfg = load_config(path, param_file=tmp_path / "hparam.yaml")
    assert cfg.space.names == ["learning_rate", "regularization_coeff", "batch_size"]
    assert cfg.train.strategy == "l2sp"  # the config said so
    assert cfg.search.enqueue[0] == {"learning_rate": 0.001, "regularization_coeff": 0.0001, "batch_size": 16}


def test_a_param_list_inside_space_is_read_as_paddlehubs(tmp_path: Path) -> None:
    inline = "space:\n  " + HPARAM.replace("\n", "\n  ")
    cfg = load_config(_files(tmp_path, inline))
    assert cfg.space.names == ["learning_rate", "regularization_coeff", "batch_size"]


def test_without_init_values_ints_start_in_the_middle_and_floats_at_the_midpoint(tmp_path: Path) -> None:
    path = _files(tmp_path, "space: {batch_size: {type: int, low: 8, high: 32},"
                            " learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true},"
                            " dis_blocks: {type: int, low: 1, high: 9, log: true}}\n")
    first = first_config(load_config(path))
    assert first.train.batch_size == 20 and first.train.dis_blocks == 3
    assert first.train.learning_rate == pytest.approx(1e-3)


def test_a_searched_key_no_strategy_reads_is_named(tmp_path: Path) -> None:
    path = _files(tmp_path, "space: {warmup_proportion: {type: float, low: 0.0, high: 0.3},"
                            " cut_fraction: {type: float, low: 0.05, high: 0.2}}\n")
    lines = inert_searched_keys(load_config(path))
    assert lines == ["space.warmup_proportion has no effect under train.strategy default (only adamw_decay reads it)",
                     "space.cut_fraction has no effect under train.strategy default (only ulmfit reads it)"]
    searched = load_config(path, ["space.strategy=[default, ulmfit]"])
    assert [line.split()[0] for line in inert_searched_keys(searched)] == ["space.warmup_proportion"]
    hub = tmp_path / "hub.yaml"
    hub.write_text(HPARAM + "- name : warmup_prop\n  type : float\n  lower_than : 0.2\n  greater_than : 0.0\n")
    assert inert_searched_keys(load_config(path, param_file=hub)) == []  # PaddleHub's names: adamw_decay


@pytest.mark.parametrize("config, flags, needle", [
    ("space: nothere.yaml\n", [], "space nothere.yaml: file not found (a relative path means the current folder"),
    ("space: other.yaml\n", [], "a space file holds `param_list:` (PaddleHub's hparam.yaml) or `space:`"),
    ("name: x\n", ["--param-file", "other.yaml"], "a space file holds `param_list:`"),
    ("name: x\n", ["--param-file", "config.yaml"], "got keys ['name']"),
])
def test_bad_space_files_are_one_line(tmp_path: Path, config: str, flags: list[str], needle: str) -> None:
    _files(tmp_path, config)
    (tmp_path / "other.yaml").write_text("learning_rate: {type: float, low: 0.1, high: 0.2}\nextra: 1\n")
    out = run("search", "config.yaml", "--dry-run", *flags, cwd=tmp_path)
    assert_one_line_exit_2(out, needle)


def test_resume_refuses_a_param_file(tmp_path: Path) -> None:
    out = run("search", "--resume", str(tmp_path), "--param-file", "hparam.yaml")
    assert_one_line_exit_2(out, "drop CONFIG, --set, --param-file, --dataset, --time-budget and --trials")
    with pytest.raises(ConfigError, match="param_list: give either"):
        load_config(_files(tmp_path, "space: {param_list: []}\nparam_list: []\n"))
