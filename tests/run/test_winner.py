"""Honest winner: rerun statistics, the winner by mean, and the final train+val fit with one test evaluation."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autoft.config import config_from_dict
from autoft.run.records import TrialRecord, TrialStatus, read_trials
from autoft.search.run import load_trial_data, search
from autoft.run.selection import rerun_markdown, rerun_stats, select_winner, t_quantile_975
from shapes import make_shapes
from searched_run import shapes_config


def rec(trial_id: str, val_acc: float, status: TrialStatus = TrialStatus.COMPLETED, **extra: object) -> TrialRecord:
    history = ({"epoch": 1, "val_acc": val_acc, "val_loss": 1.0 - val_acc},)
    return TrialRecord(trial_id=trial_id, params={"learning_rate": len(trial_id) * 1e-3}, status=status,
                       history=history, extra=dict(extra))


def test_t_quantiles_match_the_t_distribution() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 30, 31, 45, 100, 1000):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)


def test_winner_is_the_best_mean_not_the_luckiest_run() -> None:
    records = [
        rec("lucky", 0.95), rec("lucky-1", 0.60, rerun_of="lucky", seed=1), rec("lucky-2", 0.62, rerun_of="lucky", seed=2),
        rec("steady", 0.90), rec("steady-1", 0.92, rerun_of="steady", seed=1),
        rec("steady-2", 0.88, rerun_of="steady", seed=2),
        rec("third", 0.80),  # not re-run: not a candidate
    ]
    stats = rerun_stats(records)
    assert [s.trial_id for s in stats] == ["steady", "lucky"]
    steady = stats[0]
    assert steady.runs == ("steady", "steady-1", "steady-2") and steady.n == 3
    assert steady.mean == pytest.approx(0.90) and steady.std == pytest.approx(0.02)
    half = 4.303 * 0.02 / math.sqrt(3)
    assert steady.ci95 == pytest.approx((0.90 - half, 0.90 + half))
    assert stats[1].mean == pytest.approx((0.95 + 0.60 + 0.62) / 3)
    assert select_winner(records).trial_id == "steady-1"  # the best single run of the best-mean configuration
    table = rerun_markdown(records)
    assert "| 1 | steady |" in table and "0.9000 | 0.0200 |" in table


def test_a_stopped_original_does_not_count_and_no_reruns_means_no_override() -> None:
    records = [rec("a", 0.99, TrialStatus.STOPPED), rec("a-1", 0.7, rerun_of="a", seed=1),
               rec("a-2", 0.8, rerun_of="a", seed=2)]
    (stats,) = rerun_stats(records)
    assert stats.runs == ("a-1", "a-2") and stats.mean == pytest.approx(0.75)
    assert select_winner([rec("x", 0.5), rec("y", 0.6)]) is None
    assert rerun_markdown([rec("x", 0.5)]) == ""


@pytest.fixture(scope="module")
def split_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (val split from it) and a held-out test/ folder."""
    root = tmp_path_factory.mktemp("split_shapes")
    make_shapes(root / "train", per_class=16)
    make_shapes(root / "test", per_class=4, seed=1)
    return root


def test_reruns_pick_by_mean_and_final_fit_uses_train_plus_val(split_shapes: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import autoft.serving.evaluate

    calls = []
    real = autoft.serving.evaluate.evaluate_bundle

    def counted(bundle_dir, split="test", **kw):
        calls.append((Path(bundle_dir), split))
        return real(bundle_dir, split, **kw)

    monkeypatch.setattr(autoft.serving.evaluate, "evaluate_bundle", counted)
    raw = shapes_config(split_shapes, trials=2, scheduler="fifo", rerun_top_k=1, rerun_seeds=2,
                        final_fit="train+val")
    raw["train"]["epochs"] = 1
    cfg = config_from_dict(raw)
    outcome = search(cfg, results_dir=tmp_path, name="honest")
    run = outcome.run_dir
    records = read_trials(run)
    reruns = [r for r in records if "rerun_of" in r.extra]
    originals = [r for r in records if "rerun_of" not in r.extra]
    assert len(originals) == 2 and len(reruns) == 2
    top = max(originals, key=lambda r: (r.best["val_acc"], -r.best["val_loss"]))
    assert {r.extra["rerun_of"] for r in reruns} == {top.trial_id}
    assert sorted(r.extra["seed"] for r in reruns) == [1, 2]
    for r in reruns:
        assert r.params["optimizer"] == top.params["optimizer"]
        assert r.params["learning_rate"] == pytest.approx(top.params["learning_rate"])
    assert all(r.status is TrialStatus.COMPLETED for r in reruns)
    assert "Re-runs (winner by mean val_acc)" in (run / "leaderboard.md").read_text()

    winner = select_winner(records)
    selection = json.loads((run / "best_trial_model" / "bundle.json").read_text())
    assert selection["metrics"]["val_acc"] == pytest.approx(winner.best["val_acc"])
    final = json.loads((run / "best_model" / "bundle.json").read_text())
    data = load_trial_data(outcome_cfg(run))
    assert final["num_train_samples"] == len(data.train) + len(data.val)
    assert selection["num_train_samples"] == len(data.train)
    assert final["metrics"]["final_fit"] == "train+val" and final["metrics"]["selection_trial"] == winner.trial_id
    assert final["metrics"]["epoch"] == math.ceil(winner.best["epoch"])
    assert calls == [(run / "best_model", "test")]  # once, on the final model
    assert outcome.test_metrics["n"] == 12
    assert json.loads((run / "test_metrics.json").read_text())["bundle"] == str(run / "best_model")
    # the report's confusion matrix is held out: after a refit on train+val it is drawn on the test split
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert (f"Accuracy {outcome.test_metrics['test_acc']:.4f} on 12 test images. best_model/ was refit on train+val"
            in page), page[page.find("confusion_matrix"):][:600]


def outcome_cfg(run: Path):
    from autoft.search.run import load_run_config

    return load_run_config(run)
