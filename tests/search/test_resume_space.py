"""--resume after config.yaml's space was edited: a change Optuna cannot continue is one line naming the
parameter (nothing in the run changes); a compatible one goes on and is said."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest
import yaml

from autoft.config import config_from_dict
from autoft.config.schema import config_to_dict
from autoft.errors import ConfigError
from autoft.search.study_space import check_study_space

from cli_helpers import assert_one_line_exit_2, run as cli
from searched_run import shapes_config

ORIGINAL = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}}


def _study(url: str, name: str) -> None:
    """A real study with two finished trials drawn from ORIGINAL."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    space = config_from_dict({"name": "x", "data": {"dataset": "fashion-mnist-demo"}, "space": ORIGINAL}).space
    for value in (0.5, 0.6):
        trial = study.ask(space.to_optuna())
        study.tell(trial, value)


def _space(edit: dict) -> dict:
    cfg = config_from_dict({"name": "x", "data": {"dataset": "fashion-mnist-demo"}, "space": {**ORIGINAL, **edit}})
    return cfg.space.to_optuna()


INCOMPATIBLE = [
    ("choices", {"optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}}, "space.optimizer"),
    ("kind", {"learning_rate": {"type": "categorical", "choices": [0.001, 0.01]}}, "space.learning_rate"),
    ("log", {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": False}}, "space.learning_rate"),
]


@pytest.mark.parametrize("edit, needle", [(e, n) for _, e, n in INCOMPATIBLE], ids=[i for i, _, _ in INCOMPATIBLE])
def test_an_incompatible_space_is_refused_naming_the_parameter(edit: dict, needle: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(url, "s")
    with pytest.raises(ConfigError, match=f"{needle} is .* but the study's trials drew it from"):
        check_study_space(url, "s", _space(edit), "--resume R", "edit it back")


def test_a_compatible_edit_is_said_and_allowed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _study(url, "s")
    assert check_study_space(url, "s", _space({}), "w", "f") == []
    notes = check_study_space(url, "s", _space({
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "batch_size": {"type": "categorical", "choices": [8, 16]}}), "w", "f")
    assert notes == ["space.learning_rate: float 0.001..0.01 (log) in the study's trials, now float 0.0001..0.01 (log)",
                     "space.batch_size: new, not in the study's trials"]
    assert check_study_space(url, "no-such-study", _space({}), "w", "f") == []


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_resume_with_an_edited_space_is_one_line_and_changes_nothing(shapes_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "results" / "edited"
    (run / "trials").mkdir(parents=True)
    raw = config_to_dict(config_from_dict({**shapes_config(shapes_dir), "space": ORIGINAL}))
    _study(f"sqlite:///{run / 'optuna.db'}", "edited")
    (run / "study.json").write_text(json.dumps({"study": "edited", "storage": None}))
    raw["space"]["optimizer"]["choices"] = ["adam", "rmsprop"]  # the user edits config.yaml, then resumes
    (run / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    before = _digest(run)
    out = cli("search", "--resume", str(run), "--quiet")
    assert_one_line_exit_2(out, "config.yaml: space.optimizer is categorical ['adam', 'rmsprop'] but the study's "
                                "trials drew it from categorical ['adam', 'momentum']")
    assert _digest(run) == before
