from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoft.run.bundle import BundleMeta, copy_bundle, is_bundle, load_bundle, save_bundle
from autoft.errors import BundleError
from autoft.run.leaderboard import promote_best, write_leaderboard
from autoft.run.records import TrialRecord, TrialStatus, read_trials


def meta(**kw: object) -> BundleMeta:
    base = dict(backbone="mobilenet_v3_small", num_classes=2, class_names=("a", "b"), image_size=32,
                mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), metrics={"val_acc": 0.5})
    base.update(kw)
    return BundleMeta(**base)  # type: ignore[arg-type]


def test_record_round_trip(tmp_path: Path) -> None:
    rec = TrialRecord("t1", {"learning_rate": 0.1, "optimizer": "adam"}, TrialStatus.STOPPED, number=3,
                      history=({"epoch": 1, "val_acc": 0.4, "val_loss": 1.0}, {"epoch": 2, "val_acc": 0.6, "val_loss": 0.9}),
                      error=None, started=5.0, seconds=12.5)
    rec.save(tmp_path / "t1")  # a record lives in the folder named after its id
    assert TrialRecord.load(tmp_path / "t1") == rec
    assert rec.best == {"epoch": 2, "val_acc": 0.6, "val_loss": 0.9} and rec.epochs_run == 2


def make_trial(run: Path, tid: str, status: TrialStatus, accs: list[float], losses: list[float] | None = None,
               seconds: float = 10, error: str | None = None, bundle: bool = True) -> None:
    losses = losses or [1.0] * len(accs)
    hist = tuple({"epoch": i + 1, "val_acc": a, "val_loss": l} for i, (a, l) in enumerate(zip(accs, losses)))
    TrialRecord(tid, {"learning_rate": 0.01, "batch_size": 16}, status, history=hist, error=error,
                started=float(len(list((run / "trials").glob("*")))), seconds=seconds).save(run / "trials" / tid)
    if bundle:
        save_bundle(run / "trials" / tid / "bundle", {"w": np.full((2,), len(tid), np.float32)},
                    meta(metrics={"val_acc": max(accs, default=0)}))


def test_ranking_ties_and_failures_last(tmp_path: Path) -> None:
    make_trial(tmp_path, "a", TrialStatus.COMPLETED, [0.5, 0.7], [1.0, 0.8])
    make_trial(tmp_path, "bb", TrialStatus.STOPPED, [0.7], [0.6])            # same acc, lower loss → above a
    make_trial(tmp_path, "ccc", TrialStatus.FAILED, [0.9], error="TrialError: loss became nan")
    make_trial(tmp_path, "dddd", TrialStatus.COMPLETED, [0.7], [0.6], seconds=5)  # tie on loss, faster → first
    board = write_leaderboard(tmp_path)
    assert [r.trial_id for r in board.records] == ["dddd", "bb", "a", "ccc"]
    csv = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert csv[0] == "rank,trial_id,status,learning_rate,batch_size,val_acc,val_loss,best_epoch,epochs_run,seconds,error"
    assert csv[4].startswith("4,ccc,failed") and csv[4].endswith("TrialError: loss became nan")
    assert "| 1 | dddd | completed |" in (tmp_path / "leaderboard.md").read_text()
    best = promote_best(tmp_path, board)
    assert best == tmp_path / "best_model" and load_bundle(best).weights()["w"][0] == 4


def test_scored_trials_rank_above_unscored_ones_and_counts_are_integers(tmp_path: Path) -> None:
    make_trial(tmp_path, "quick", TrialStatus.INTERRUPTED, [], seconds=1, bundle=False)  # never evaluated
    make_trial(tmp_path, "slow", TrialStatus.INTERRUPTED, [0.4, 0.523], seconds=50)
    make_trial(tmp_path, "done", TrialStatus.COMPLETED, [0.3, 0.5], seconds=60)
    board = write_leaderboard(tmp_path)
    assert [r.trial_id for r in board.records] == ["done", "slow", "quick"]
    rows = (tmp_path / "leaderboard.csv").read_text().splitlines()
    header = rows[0].split(",")
    cells = [dict(zip(header, row.split(","))) for row in rows[1:]]
    assert [(c["best_epoch"], c["epochs_run"]) for c in cells] == [("2", "2"), ("2", "2"), ("", "0")]
    assert "<NA>" not in (tmp_path / "leaderboard.md").read_text()


def test_no_finished_trial_means_no_best(tmp_path: Path) -> None:
    make_trial(tmp_path, "x", TrialStatus.FAILED, [], error="ValueError: boom", bundle=False)
    board = write_leaderboard(tmp_path)
    assert board.best is None and promote_best(tmp_path, board) is None
    assert not (tmp_path / "best_model").exists()
    assert read_trials(tmp_path)[0].error == "ValueError: boom"


def test_bundle_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = save_bundle(tmp_path / "b", {"x": np.arange(4, dtype=np.float32)}, meta())
    loaded = load_bundle(path)
    assert loaded.meta.class_names == ("a", "b") and loaded.meta.created and loaded.meta.autoft_version
    np.testing.assert_array_equal(loaded.weights()["x"], np.arange(4, dtype=np.float32))
    save_bundle(tmp_path / "b", {"x": np.zeros(4, np.float32)}, meta())
    assert load_bundle(path).weights()["x"].sum() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or old folders left behind
    copy_bundle(path, tmp_path / "c")
    assert is_bundle(tmp_path / "c")


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "bundle.json").write_text("{oops")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_bundle_json_is_plain_json(tmp_path: Path) -> None:
    save_bundle(tmp_path / "b", {"x": np.ones(1, np.float32)}, meta(hparams={"learning_rate": np.float64(0.1)}))
    raw = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert raw["hparams"] == {"learning_rate": 0.1} and raw["mean"] == [1.0, 2.0, 3.0]
