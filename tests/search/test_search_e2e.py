"""A real search end to end: real Ray, real SQLite, real Paddle training on synthetic images."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autoft.config import config_from_dict
from autoft.serving.predict import Predictor, find_inputs
from autoft.run.records import TrialStatus
from autoft.search.run import search

from searched_run import shapes_config


STRATEGIES = ["default", "adamw_decay", "ulmfit", "l2sp"]


@pytest.fixture(scope="module")
def finished_run(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """4 trials, one per fine-tune strategy (enqueued; the other params sampled by TPE)."""
    raw = shapes_config(shapes_dir, trials=4, enqueue=[{"strategy": s} for s in STRATEGIES])
    raw["space"]["strategy"] = {"type": "categorical", "choices": STRATEGIES}
    cfg = config_from_dict(raw)
    events = []
    outcome = search(cfg, results_dir=tmp_path_factory.mktemp("results"), name="e2e", on_progress=events.append)
    return outcome, events


def test_leaderboard_is_ranked_and_complete(finished_run) -> None:
    outcome, events = finished_run
    run = outcome.run_dir
    rows = list(csv.DictReader((run / "leaderboard.csv").open()))
    assert len(rows) == 4
    assert list(rows[0]) == ["rank", "trial_id", "status", "learning_rate", "optimizer", "strategy", "val_acc",
                             "val_loss", "best_epoch", "epochs_run", "seconds", "error"]
    assert sorted(r["strategy"] for r in rows) == sorted(STRATEGIES)
    assert all(r["status"] in (TrialStatus.COMPLETED.value, TrialStatus.STOPPED.value) for r in rows), rows
    accs = [float(r["val_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert len({r["trial_id"] for r in rows}) == 4
    assert all(float(r["seconds"]) > 0 and float(r["epochs_run"]) >= 1 for r in rows)
    assert (run / "config.yaml").is_file() and (run / "leaderboard.md").is_file()
    assert events and events[-1].budget == 4 and events[-1].best_val_acc == pytest.approx(accs[0])


def test_optuna_study_matches_the_trial_folders(finished_run) -> None:
    outcome, _ = finished_run
    run = outcome.run_dir
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'optuna.db'}")  # the run folder's name
    assert json.loads((run / "study.json").read_text()) == {"study": run.name, "storage": None}
    assert len(study.trials) == 4
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == {p.name for p in (run / "trials").iterdir()}
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)
    for t in study.trials:
        record = json.loads((run / "trials" / t.user_attrs["ray_trial_id"] / "trial.json").read_text())
        assert record["params"]["learning_rate"] == pytest.approx(t.params["learning_rate"])
        assert record["number"] == t.number


def test_best_bundle_holds_everything_predict_needs(finished_run, shapes_dir: Path) -> None:
    outcome, _ = finished_run
    best = outcome.best_model
    assert best == outcome.run_dir / "best_model"
    meta = json.loads((best / "bundle.json").read_text())
    assert meta["backbone"] == "efficientnet_lite0" and meta["class_names"] == ["blue", "green", "red"]
    assert meta["image_size"] == 32 and meta["num_classes"] == 3
    assert meta["metrics"]["val_acc"] == pytest.approx(outcome.leaderboard.best.best["val_acc"])
    assert (best / "model.safetensors").stat().st_size > 1_000_000
    paths = find_inputs([shapes_dir]).paths
    preds = Predictor(best).predict(paths, top_k=2)
    right = sum(p.label == Path(p.path).parent.name for p in preds)
    assert right / len(preds) >= 0.7, f"{right}/{len(preds)} right (chance is 1/3)"


def test_cli_predict_and_leaderboard(finished_run, shapes_dir: Path, tmp_path: Path) -> None:
    outcome, _ = finished_run
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    one = next((shapes_dir / "red").iterdir())
    cmd = [sys.executable, "-m", "autoft.cli"]
    out = subprocess.run(cmd + ["predict", str(outcome.best_model), str(one), str(bad), "--json", "--top-k", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "notes.txt" in out.stderr, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert lines[0]["path"] == str(one) and len(lines[0]["top"]) == 2 and lines[0]["error"] is None
    assert "not a readable image" in lines[1]["error"]
    board = subprocess.run(cmd + ["leaderboard", str(outcome.run_dir)], capture_output=True, text=True, timeout=60)
    assert board.returncode == 0 and outcome.leaderboard.records[0].trial_id in board.stdout
