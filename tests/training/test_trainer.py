"""fit / evaluate / train on tiny synthetic colour images with a tiny registered backbone (and one real one)."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
from paddle import nn  # noqa: E402

from autoft.training import fit as trainer  # noqa: E402
from autoft.training import loop  # noqa: E402
from autoft.backbones import create, registry  # noqa: E402
from autoft.backbones.registry import Entry  # noqa: E402
from autoft.run.bundle import load_bundle  # noqa: E402
from autoft.config import config_from_dict  # noqa: E402
from autoft.data import ImageData, Split  # noqa: E402
from autoft.errors import TrialError  # noqa: E402
from autoft.training.fit import TrialResult, fit, select_device  # noqa: E402
from autoft.training.loop import evaluate  # noqa: E402
from tiny import TinyBackbone, tiny_spec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track global mean")

REPORT_KEYS = {"epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "seconds"}
COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]], dtype=np.float64)
SPEC = tiny_spec("tiny_cnn")


@pytest.fixture(autouse=True)
def tiny_backbone(monkeypatch):
    """Registers `tiny_cnn` for the test's duration, so fit builds it through backbones.create."""
    registry.list_backbones()  # load the real providers first
    entry = Entry(SPEC, TinyBackbone, 0.0, imagenet=dict, convert=lambda tensors: tensors)
    monkeypatch.setitem(registry._REGISTRY, SPEC.name, entry)


def colour_split(n: int, seed: int, size: int = 16) -> Split:
    """Three classes: reddish, greenish, bluish noisy squares."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 3
    images = COLOURS[labels][:, None, None, :] + rng.normal(0, 40, (n, size, size, 3))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels)


@pytest.fixture(scope="module")
def data() -> ImageData:
    return ImageData(("red", "green", "blue"), colour_split(60, 1), colour_split(30, 2), None, "fp-colours",
                     "synthetic")


def run_cfg(tmp_path: Path, backbone: str = "tiny_cnn", **train):
    base = {"epochs": 3, "batch_size": 10, "learning_rate": 0.01, "optimizer": "adam", "log_interval": 2,
            "checkpoint_dir": str(tmp_path / "ckpt")}
    return config_from_dict({"model": {"backbone": backbone, "pretrained": "none"}, "train": {**base, **train}})


def test_fit_learns_colours_reports_each_epoch_and_keeps_the_best_bundle(tmp_path, data):
    reports, logs = [], []
    result = fit(run_cfg(tmp_path), data, bundle_dir=tmp_path / "bundle", report=reports.append, log=logs.append)
    assert isinstance(result, TrialResult)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert [r["step"] for r in reports] == [6, 12, 18]
    assert all(set(r) == REPORT_KEYS for r in reports)
    assert all(math.isfinite(v) for r in reports for v in r.values())
    assert result.history == reports
    assert result.best_val_acc >= 0.9  # chance is 1/3
    best = max(reports, key=lambda r: (r["val_acc"], -r["val_loss"]))
    assert (result.best_val_acc, result.best_val_loss, result.best_epoch) == (
        best["val_acc"], best["val_loss"], best["epoch"])
    assert result.epochs_run == 3 and result.bundle_path == tmp_path / "bundle"
    assert len(logs) == 9 and logs[0].startswith("epoch 1 step 2 loss ")  # every log_interval=2 steps

    bundle = load_bundle(result.bundle_path)
    assert bundle.meta.metrics == best
    assert bundle.meta.class_names == ("red", "green", "blue") and bundle.meta.image_size == 16
    assert bundle.meta.data_fingerprint == "fp-colours" and bundle.meta.num_train_samples == 60
    assert bundle.meta.hparams["learning_rate"] == 0.01 and bundle.meta.hparams["backbone"] == "tiny_cnn"
    model = create("tiny_cnn", 3, str(result.bundle_path))
    assert evaluate(model, data.val, SPEC.mean, SPEC.std, 7) == pytest.approx(
        {"val_loss": best["val_loss"], "val_acc": best["val_acc"]}, rel=1e-5)


def test_fit_is_reproducible_from_the_seed(tmp_path, data):
    a = fit(run_cfg(tmp_path, epochs=1), data)
    b = fit(run_cfg(tmp_path, epochs=1), data)
    assert a.history[0]["val_loss"] == b.history[0]["val_loss"]


@pytest.mark.parametrize("interval, steps", [(4, [4, 8, 12]), (5, [5, 10, 12])])
def test_step_based_eval_reports_every_interval_and_at_the_end(tmp_path, data, interval, steps):
    reports = []
    fit(run_cfg(tmp_path, epochs=2, eval_interval=interval), data, report=reports.append)
    assert [r["step"] for r in reports] == steps
    assert [r["epoch"] for r in reports] == pytest.approx([s / 6 for s in steps])


def test_nan_loss_raises_trial_error_at_once_and_never_reports_it(tmp_path, data, monkeypatch):
    reports = []
    monkeypatch.setattr(loop.F, "cross_entropy", lambda logits, label, **kw: logits.sum() * float("nan"))
    with pytest.raises(TrialError, match=r"^loss became nan at epoch 1, step 1$"):
        fit(run_cfg(tmp_path), data, report=reports.append)
    assert reports == []


def test_diverging_learning_rate_raises_trial_error(tmp_path, data):
    reports = []
    with pytest.raises(TrialError, match=r"loss became (nan|inf) at epoch \d, step \d+"):
        fit(run_cfg(tmp_path, learning_rate=1e30, optimizer="sgd", augment=False), data, report=reports.append)
    assert all(math.isfinite(r["train_loss"]) for r in reports)


def test_freeze_backbone_trains_only_the_head(tmp_path, data):
    paddle.seed(7)
    start = create("tiny_cnn", 3, "none")
    from safetensors.numpy import save_file

    save_file({k: v.numpy() for k, v in start.state_dict().items()}, str(tmp_path / "start.safetensors"))
    cfg = run_cfg(tmp_path, epochs=2, freeze_backbone=True)
    cfg = config_from_dict({"model": {"backbone": "tiny_cnn", "pretrained": str(tmp_path / "start.safetensors")},
                            "train": {**cfg.train.__dict__}})
    result = fit(cfg, data, bundle_dir=tmp_path / "bundle")
    weights = load_bundle(result.bundle_path).weights()
    initial = start.state_dict()
    backbone_keys = [k for k in weights if k.startswith("backbone.")]
    assert any(k.endswith("_mean") for k in backbone_keys)  # BatchNorm statistics are checked too
    for key in backbone_keys:
        np.testing.assert_array_equal(weights[key], initial[key].numpy(), err_msg=key)
    assert not np.array_equal(weights["head.fc.weight"], initial["head.fc.weight"].numpy())


@pytest.mark.parametrize("strategy, optimizer", [
    ("ulmfit", "adam"),  # the backbone is frozen at the epoch-1 checkpoint: no accumulators yet
    ("l2sp", "momentum"),  # the anchor must stay the pretrained weights, not the restored ones
    ("adamw_decay", "adamw"), ("default", "rmsprop"), ("default", "adagrad"), ("default", "sgd"),
])
def test_checkpoint_restore_continues_at_the_next_epoch(tmp_path, data, strategy, optimizer):
    train = dict(epochs=3, strategy=strategy, optimizer=optimizer, frz_blocks=1, regularization_coeff=0.5)
    full = []
    fit(run_cfg(tmp_path, save_ckpt_interval=1, **train), data, report=full.append,
        checkpoint_dir=tmp_path / "ckpt")
    first = tmp_path / "ckpt" / "epoch_1"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch_1", "epoch_2", "epoch_3"]
    assert {p.name for p in first.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json"}
    assert json.loads((first / "state.json").read_text())["epoch"] == 1

    resumed = []
    result = fit(run_cfg(tmp_path, **train), data, report=resumed.append, restore=first)
    assert [r["epoch"] for r in resumed] == [2, 3] and result.epochs_run == 3
    assert [r["step"] for r in resumed] == [12, 18]
    # same weights, optimizer moments, lr schedule and per-epoch shuffling: the same run as without the break
    for a, b in zip(resumed, full[1:]):
        assert (a["val_loss"], a["val_acc"], a["lr"]) == pytest.approx((b["val_loss"], b["val_acc"], b["lr"]),
                                                                       rel=1e-4)


def test_restore_keeps_a_better_existing_bundle(tmp_path, data):
    fit(run_cfg(tmp_path, epochs=2, save_ckpt_interval=1), data, bundle_dir=tmp_path / "bundle")
    kept = load_bundle(tmp_path / "bundle").meta.metrics
    result = fit(run_cfg(tmp_path, epochs=2), data, bundle_dir=tmp_path / "bundle",
                 restore=tmp_path / "ckpt" / "epoch_2")
    assert result.history == [] and result.epochs_run == 2
    assert load_bundle(tmp_path / "bundle").meta.metrics == kept


@pytest.mark.parametrize("strategy", ["default", "adamw_decay", "ulmfit", "l2sp"])
def test_every_strategy_fits(tmp_path, data, strategy):
    result = fit(run_cfg(tmp_path, epochs=1, strategy=strategy), data)
    assert len(result.history) == 1 and math.isfinite(result.best_val_loss)


def test_fit_with_a_real_backbone(tmp_path):
    small = ImageData(("red", "green", "blue"), colour_split(12, 3, 32), colour_split(6, 4, 32), None, "fp",
                      "synthetic")
    cfg = config_from_dict({"model": {"backbone": "mobilenet_v3_small", "pretrained": "none"},
                            "train": {"epochs": 1, "batch_size": 6, "dropout": 0.1}})
    reports = []
    result = fit(cfg, small, bundle_dir=tmp_path / "bundle", report=reports.append)
    assert len(reports) == 1 and set(reports[0]) == REPORT_KEYS
    meta = load_bundle(result.bundle_path).meta
    assert meta.backbone == "mobilenet_v3_small" and meta.image_size == 32 and meta.hparams["dropout"] == 0.1


def test_gpu_amp_and_data_parallel_fall_back_to_cpu_with_warnings(tmp_path, data):
    if paddle.is_compiled_with_cuda():
        pytest.skip("this paddle has CUDA")
    with pytest.warns(UserWarning, match="gpu requested"):
        assert select_device("gpu") == "cpu"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(run_cfg(tmp_path, epochs=1, device="auto", amp=True, data_parallel=True), data)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("train.amp:") for m in messages)
    assert any(m.startswith("train.data_parallel:") for m in messages)


def test_train_runs_the_demo_data_into_checkpoint_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFT_HOME", str(tmp_path / "home"))
    cfg = config_from_dict({
        "data": {"dataset": "fashion-mnist-demo", "image_size": 16, "max_train_per_class": 4},
        "model": {"backbone": "tiny_cnn", "pretrained": "none"},
        "train": {"epochs": 1, "batch_size": 8, "checkpoint_dir": str(tmp_path / "run")},
    })
    lines = []
    result = trainer.train(cfg, log=lines.append)
    assert result.bundle_path == tmp_path / "run" / "best_model"
    assert load_bundle(result.bundle_path).meta.image_size == 16
    assert any(line.startswith("epoch 1 step ") and "val_acc" in line for line in lines)


def test_checkpoint_round_trip_restores_weights_optimizer_schedule_and_l2sp_anchor(tmp_path):
    from autoft.training.checkpoint import load_checkpoint, save_checkpoint
    from autoft.training.strategies import build_strategy

    train_cfg = run_cfg(tmp_path, strategy="l2sp", optimizer="adam", regularization_coeff=0.5).train
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype("float32"))
    y = paddle.to_tensor(np.array([0, 1, 2, 0], dtype=np.int64))

    def steps(model, strategy, n):
        for _ in range(n):
            (nn.functional.cross_entropy(model(x), y) + strategy.penalty(model)).backward()
            strategy.step()

    paddle.seed(0)
    a = create("tiny_cnn", 3, "none")
    sa = build_strategy(train_cfg, a, 5, 2)
    anchor = {k: v.numpy().copy() for k, v in a.backbone.state_dict().items()}
    steps(a, sa, 3)
    save_checkpoint(tmp_path / "c", a, sa, {"epoch": 1})

    paddle.seed(1)  # another init: everything must come from the checkpoint
    b = create("tiny_cnn", 3, "none")
    sb = build_strategy(train_cfg, b, 5, 2)
    assert load_checkpoint(tmp_path / "c", b, sb)["epoch"] == 1
    assert sb.global_step == 3
    trainable = {name for name, p in b.backbone.named_parameters() if not p.stop_gradient}
    for name, value in sb.extra_state().items():
        np.testing.assert_array_equal(value, anchor[name.removeprefix("l2sp_anchor.")])
    assert trainable == {k.removeprefix("l2sp_anchor.") for k in sb.extra_state()}
    steps(a, sa, 2)
    steps(b, sb, 2)
    for (key, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(wb.numpy(), wa.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_restore_from_a_missing_checkpoint_is_a_trial_error(tmp_path, data):
    with pytest.raises(TrialError, match=r"checkpoint .*nowhere: missing model.safetensors, optimizer.safetensors"):
        fit(run_cfg(tmp_path), data, restore=tmp_path / "nowhere")


def test_num_workers_prefetch_gives_the_same_run(tmp_path, data):
    """Batches prepared ahead in threads train exactly like batches prepared in line."""
    runs = [fit(run_cfg(tmp_path, epochs=2, num_workers=n), data) for n in (0, 2)]
    assert [h["train_loss"] for h in runs[0].history] == pytest.approx([h["train_loss"] for h in runs[1].history],
                                                                       abs=1e-6)
