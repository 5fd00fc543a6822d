"""The zero-config portfolio (issue 17): the shipped configurations are what the greedy selection chooses from the
committed measurements (benchmarks/data/portfolio-*.json); tests/training/test_autoplan.py checks they are points
of the space the plan searches."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoft.training.autoplan import PORTFOLIO
from benchmarks.portfolio import DATASETS, candidates, greedy, leave_one_out, scores, select

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"


def _matrix(mode: str) -> dict:
    return json.loads((DATA / f"portfolio-{mode}.json").read_text())


def test_greedy_selection_covers_datasets_before_repeating_a_strength() -> None:
    # c0 is best on a, c1 on b; c2 is the best on average but the best nowhere
    norm = {"a": [1.0, 0.0, 0.8, 0.1], "b": [0.0, 1.0, 0.8, 0.2], "c": [0.5, 0.5, 0.9, 1.0]}
    assert greedy(norm, 1) == [2]  # alone: the best on average
    # then c0 (a: 0.8 -> 1) or c1 (b: 0.8 -> 1), tied in gain and mean: the lower index; c3 gains only 0.1 on c
    assert greedy(norm, 2) == [2, 0]
    assert greedy(norm, 3) == [2, 0, 1]
    assert sorted(greedy(norm, 4)) == [0, 1, 2, 3]


def test_scores_scale_each_dataset_and_count_a_failure_as_its_worst() -> None:
    matrix = {"candidates": [{}, {}, {}], "datasets": {"a": {}, "b": {}},
              "rows": [{"dataset": "a", "index": 0, "val_acc": [0.2, 0.5], "error": None},
                       {"dataset": "a", "index": 1, "val_acc": [0.9], "error": None},
                       {"dataset": "a", "index": 2, "val_acc": [], "error": "TrialError: loss became nan"},
                       {"dataset": "b", "index": 0, "val_acc": [0.3], "error": None},
                       {"dataset": "b", "index": 1, "val_acc": [0.3], "error": None},
                       {"dataset": "b", "index": 2, "val_acc": [0.6], "error": None}]}
    norm = scores(matrix)
    assert norm["a"] == pytest.approx([0.5 / 0.9, 1.0, 0.0])
    assert norm["b"] == pytest.approx([0.0, 0.0, 1.0])


@pytest.mark.parametrize("mode", ["full", "head"])
def test_the_shipped_portfolio_is_what_the_measurements_choose(mode: str) -> None:
    matrix = _matrix(mode)
    assert matrix["candidates"] == candidates(mode)
    assert set(matrix["datasets"]) == set(DATASETS[mode]) and len(matrix["datasets"]) >= 4
    done = {(r["dataset"], r["index"]) for r in matrix["rows"]}
    assert done == {(d, i) for d in DATASETS[mode] for i in range(len(matrix["candidates"]))}  # complete
    assert [dict(p) for p in PORTFOLIO[mode]] == select(matrix)
    assert "photos" not in matrix["datasets"]  # held out for benchmarks/zero_config.py


@pytest.mark.parametrize("mode", ["full", "head"])
def test_a_portfolio_chosen_without_a_dataset_is_near_the_best_there(mode: str) -> None:
    """Leave one dataset out: the portfolio chosen on the others is at least the median candidate there."""
    for dataset, r in leave_one_out(_matrix(mode)).items():
        assert r["portfolio_best"] >= r["median_candidate"], (dataset, r)
