"""The frozen-backbone feature cache: real efficientnet_lite0 weights, real Paddle, a real 2-trial Ray search."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from autoft.training import features  # noqa: E402
from autoft.backbones import create  # noqa: E402
from autoft.run.bundle import load_bundle  # noqa: E402
from autoft.config import config_from_dict  # noqa: E402
from autoft.data import load_data  # noqa: E402
from autoft.run.records import read_trials  # noqa: E402
from autoft.training.fit import fit  # noqa: E402

from shapes import make_shapes  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track global mean")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set of this module's own (seed 11), so its feature-cache entries are new in the session's home."""
    return make_shapes(tmp_path_factory.mktemp("feature_shapes"), per_class=20, seed=11)


def head_only_config(shapes: Path, **train: object) -> dict:
    return {
        "name": "heads",
        "data": {"path": str(shapes), "image_size": 32, "val_split": 0.25},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.01, "freeze_backbone": True,
                  "augment": False, **train},
        "search": {"trials": 2, "max_concurrent": 2, "scheduler": "fifo", "seed": 0},
        "space": {"learning_rate": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True}},
    }


def entries_for(fingerprint: str) -> list[Path]:
    root = features.features_dir()
    return [d for d in root.iterdir() if (d / "meta.json").is_file()
            and json.loads((d / "meta.json").read_text())["data_fingerprint"] == fingerprint]


def test_cached_head_training_matches_training_through_the_frozen_backbone(shapes, tmp_path, monkeypatch):
    cfg = config_from_dict(head_only_config(shapes))
    data = load_data(dataset=None, path=str(shapes), image_size=32, val_split=0.25)
    monkeypatch.setenv("AUTOFT_FEATURE_CACHE", "0")
    through = fit(cfg, data, bundle_dir=tmp_path / "through")
    assert not features.features_dir().is_dir() or not entries_for(data.fingerprint)
    monkeypatch.delenv("AUTOFT_FEATURE_CACHE")
    logs: list[str] = []
    cold = fit(cfg, data, bundle_dir=tmp_path / "cold", log=logs.append)
    warm_logs: list[str] = []
    warm = fit(cfg, data, bundle_dir=tmp_path / "warm", log=warm_logs.append)

    assert any(line.startswith("feature cache: computed 60 images") for line in logs), logs
    assert any(line.startswith("feature cache: reusing") for line in warm_logs), warm_logs
    assert len(entries_for(data.fingerprint)) == 1
    for a, b in zip(through.history, cold.history):
        assert a["val_acc"] == b["val_acc"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert [h["val_loss"] for h in warm.history] == [h["val_loss"] for h in cold.history]


def test_head_only_bundle_is_a_full_classifier_that_autoft_predict_serves(shapes, tmp_path):
    cfg = config_from_dict(head_only_config(shapes, epochs=3))
    data = load_data(dataset=None, path=str(shapes), image_size=32, val_split=0.25)
    result = fit(cfg, data, bundle_dir=tmp_path / "bundle")
    weights = load_bundle(result.bundle_path).weights()
    pretrained = create("efficientnet_lite0", 3, "imagenet").state_dict()
    assert set(weights) == set(pretrained)
    for key in (k for k in weights if k.startswith("backbone.")):
        np.testing.assert_array_equal(weights[key], pretrained[key].numpy(), err_msg=key)
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "predict", str(result.bundle_path), str(shapes),
                          "--json", "--top-k", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    preds = [json.loads(line) for line in out.stdout.splitlines()]
    right = sum(p["top"][0]["label"] == Path(p["path"]).parent.name for p in preds)
    assert len(preds) == 60 and right / len(preds) >= 0.8, f"{right}/{len(preds)} right (chance is 1/3)"


def test_the_key_names_backbone_weights_image_size_and_data() -> None:
    base = features.feature_key("efficientnet_lite0", "w" * 64, 32, "d" * 24)
    variants = [features.feature_key("mobilenet_v2", "w" * 64, 32, "d" * 24),
                features.feature_key("efficientnet_lite0", "v" * 64, 32, "d" * 24),
                features.feature_key("efficientnet_lite0", "w" * 64, 64, "d" * 24),
                features.feature_key("efficientnet_lite0", "w" * 64, 32, "e" * 24)]
    assert len({base, *variants}) == 5
    model = create("efficientnet_lite0", 3, "none")
    before = features.weights_digest(model.backbone)
    name, tensor = next(iter(model.backbone.state_dict().items()))
    tensor.set_value(tensor.numpy() + 1)
    assert features.weights_digest(model.backbone) != before, name


@pytest.mark.slow
def test_concurrent_head_only_trials_compute_the_features_once(shapes, tmp_path):
    from autoft.search.run import search

    raw = head_only_config(shapes, epochs=1)
    raw["search"]["seed"] = 3  # another val split: a data fingerprint no other test has features for
    outcome = search(config_from_dict(raw), results_dir=tmp_path, name="heads")
    data = load_data(dataset=None, path=str(shapes), image_size=32, val_split=0.25, seed=3)
    records = read_trials(outcome.run_dir)
    logs = [(outcome.run_dir / "trials" / r.trial_id / "train.log").read_text() for r in records]
    assert len(logs) == 2 and all(r.status.finished for r in records), logs
    assert sum("feature cache: computed" in log for log in logs) == 1, logs
    assert sum("feature cache: reusing" in log for log in logs) == 1, logs
    assert len(entries_for(data.fingerprint)) == 1
    assert load_bundle(outcome.best_model).meta.hparams["freeze_backbone"] is True


def test_a_final_fit_reuses_the_searchs_features_for_train_plus_val(shapes, tmp_path, monkeypatch):
    from autoft.search.reruns import train_plus_val
    from autoft.training import evaluation

    data = load_data(dataset=None, path=str(shapes), image_size=32, val_split=0.25)
    model = create("efficientnet_lite0", data.num_classes, "imagenet")
    cache = tmp_path / "features"
    source = features.load_or_compute(model, data, cache_dir=cache)
    merged = train_plus_val(data)
    assert merged.fingerprint != data.fingerprint and len(merged.train) == len(data.train) + len(data.val)

    def no_backbone_pass(*args, **kwargs):
        raise AssertionError("the backbone ran again")

    monkeypatch.setattr(features, "make_forward", no_backbone_pass)
    monkeypatch.setattr(evaluation, "make_forward", no_backbone_pass)
    logs: list[str] = []
    features.publish_train_plus_val(model, data, merged, cache_dir=cache, log=logs.append)
    again = features.load_or_compute(model, merged, cache_dir=cache)
    assert not again.computed and any("train+val features for the final fit" in line for line in logs)
    np.testing.assert_array_equal(again.train, np.concatenate([source.train, source.val]))
    np.testing.assert_array_equal(again.val, source.val)
    kept = features.load_or_compute(model, data, cache_dir=cache)  # the search's own entry is left as it was
    assert not kept.computed and len(kept.train) == len(data.train)
