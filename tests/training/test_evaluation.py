"""Evaluation through Paddle's inference engine (train.eval_engine): the engine's logits and metrics match the
dynamic graph's, training after an export goes on exactly as without one, and `auto` falls back on a failed export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
from paddle import nn  # noqa: E402

from autoft.backbones import create  # noqa: E402
from autoft.config import config_from_dict  # noqa: E402
from autoft.data import ImageData, Split, normalize  # noqa: E402
from autoft.errors import ConfigError  # noqa: E402
from autoft.serving.engine import TOLERANCE  # noqa: E402
from autoft.training.evaluation import (EngineForward, Forward, StaticTwin, engine_batch,  # noqa: E402
                                        make_evaluator, make_forward, metrics_from_logits)
from autoft.training.fit import fit  # noqa: E402
from autoft.training.loop import evaluate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track global mean")


def noisy_split(n: int, seed: int, size: int = 32, classes: int = 4) -> Split:
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % classes
    base = (labels[:, None, None, None] * 50 + 40).astype(np.float64)
    images = base + rng.normal(0, 45, (n, size, size, 3))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels)


@pytest.fixture(scope="module")
def lite0() -> nn.Layer:
    """A real EfficientNet-Lite0 (random init: the download-free weights) after a few training steps, so its
    BatchNorm statistics are not the initial ones."""
    paddle.seed(0)
    model = create("efficientnet_lite0", 4, "none")
    opt = paddle.optimizer.Adam(parameters=model.parameters(), learning_rate=1e-3)
    split = noisy_split(16, 0)
    x = paddle.to_tensor(normalize(split.images, model.spec.mean, model.spec.std))
    model.train()
    for _ in range(3):
        loss = paddle.nn.functional.cross_entropy(model(x), paddle.to_tensor(split.labels))
        loss.backward()
        opt.step()
        opt.clear_grad()
    return model


def test_engine_logits_and_features_match_the_dynamic_graph(lite0: nn.Layer) -> None:
    images = noisy_split(24, 1).images
    mean, std = tuple(lite0.spec.mean), tuple(lite0.spec.std)
    for layer in (lite0, lite0.backbone):
        reference = Forward(layer, mean, std)(images, 8)
        with EngineForward(layer, mean, std, 32) as engine:
            fast = engine(images, 8)
            folder = engine.folder
        assert fast.shape == reference.shape
        scale = max(1.0, float(np.abs(reference).max()))
        assert float(np.abs(fast - reference).max()) <= TOLERANCE * scale
        assert not folder.exists()  # the private export is gone once closed


def test_engine_metrics_match_evaluate_and_follow_the_weights(lite0: nn.Layer) -> None:
    split = noisy_split(40, 2)
    mean, std = tuple(lite0.spec.mean), tuple(lite0.spec.std)
    engine = make_evaluator("inference", 32)
    before = evaluate(lite0, split, mean, std, 16)
    assert engine(lite0, split, mean, std, 16) == pytest.approx(before, rel=1e-4, abs=1e-6)
    with paddle.no_grad():  # new weights: the next evaluation exports them, it does not reuse the last program
        for weight in lite0.head.parameters():
            weight.set_value(weight * 40.0 + 0.05)
    after = evaluate(lite0, split, mean, std, 16)
    assert after["val_loss"] != pytest.approx(before["val_loss"], rel=1e-3)
    assert engine(lite0, split, mean, std, 16) == pytest.approx(after, rel=1e-4, abs=1e-6)


class CountingTwin(StaticTwin):
    traces = 0

    def _forward(self, x: paddle.Tensor) -> paddle.Tensor:
        CountingTwin.traces += 1  # runs in Python only while the program is traced
        return StaticTwin._forward(self, x)


def test_the_twin_traces_once_and_every_export_carries_the_current_weights() -> None:
    paddle.seed(1)
    model = create("efficientnet_lite0", 4, "none")
    images = noisy_split(20, 8).images
    mean, std = tuple(model.spec.mean), tuple(model.spec.std)
    twin = CountingTwin(model, 32)
    for step in range(3):
        with paddle.no_grad():
            for weight in model.head.parameters():
                weight.set_value(weight * 3.0 + 0.01 * step)
        reference = Forward(model, mean, std)(images, 8)
        with EngineForward(model, mean, std, 32, twin=twin) as engine:
            fast = engine(images)
        scale = max(1.0, float(np.abs(reference).max()))
        assert float(np.abs(fast - reference).max()) <= TOLERANCE * scale
    assert CountingTwin.traces == 1


def test_the_evaluator_traces_again_when_the_model_s_layers_are_replaced() -> None:
    """A replaced layer brings new parameters the traced program does not hold: the evaluator must not save the
    old program (it would report the old head's metrics)."""
    paddle.seed(2)
    model = create("efficientnet_lite0", 4, "none")
    split = noisy_split(24, 9)
    mean, std = tuple(model.spec.mean), tuple(model.spec.std)
    engine = make_evaluator("inference", 32)
    assert engine(model, split, mean, std, 8) == pytest.approx(evaluate(model, split, mean, std, 8), rel=1e-4,
                                                                abs=1e-6)
    model.head = nn.Sequential(nn.Linear(model.spec.feature_dim, 4), nn.Tanh())  # new layers, new parameters
    after = evaluate(model, split, mean, std, 8)
    assert engine(model, split, mean, std, 8) == pytest.approx(after, rel=1e-4, abs=1e-6)


def test_engine_batches_hold_about_a_quarter_million_pixels() -> None:
    assert [engine_batch(s) for s in (16, 32, 48, 64, 96, 224, 600)] == [256, 256, 128, 64, 32, 16, 16]


def test_metrics_from_logits_is_cross_entropy_and_accuracy() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.2, 3.0], [5.0, 4.0, 0.0]], np.float32)
    labels = np.array([0, 1, 1])
    expected = paddle.nn.functional.cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(labels))
    got = metrics_from_logits(logits, labels)
    assert got["val_loss"] == pytest.approx(float(expected), rel=1e-6)
    assert got["val_acc"] == pytest.approx(1 / 3)


def _data() -> ImageData:
    return ImageData(("a", "b", "c", "d"), noisy_split(32, 3), noisy_split(24, 4), None, "fp-eval-engine", "synthetic")


@pytest.mark.parametrize("strategy", ["default", "l2sp"])
def test_a_fit_evaluated_by_the_engine_matches_one_evaluated_by_the_dynamic_graph(tmp_path: Path,
                                                                                  strategy: str) -> None:
    """Same seed, same steps: the engine's exports leave training untouched and report the same metrics."""
    data = _data()
    results = {}
    for engine in ("inference", "dygraph"):
        cfg = config_from_dict({"model": {"backbone": "efficientnet_lite0", "pretrained": "none"},
                                "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.003, "strategy": strategy,
                                          "eval_engine": engine, "checkpoint_dir": str(tmp_path / engine)}})
        results[engine] = fit(cfg, data)
    fast, slow = results["inference"].history, results["dygraph"].history
    assert [r["step"] for r in fast] == [r["step"] for r in slow] == [4, 8]
    for a, b in zip(fast, slow):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)  # the same training
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert a["val_acc"] == b["val_acc"]


class Untraceable(nn.Layer):
    """A layer that runs only in the dynamic graph (as a custom layer with Python-side logic may): its static
    export fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not paddle.in_dynamic_mode():
            raise NotImplementedError("this layer runs only in the dynamic graph")
        return self.fc(x.mean(axis=[2, 3]))


def test_auto_falls_back_to_the_dynamic_graph_when_the_export_fails_and_inference_refuses() -> None:
    layer = Untraceable()
    images = noisy_split(6, 5, size=16).images
    said: list[str] = []
    forward = make_forward(layer, (127.5,) * 3, (64.0,) * 3, 16, "auto", said.append)
    assert type(forward) is Forward and len(said) == 1 and "evaluating with the dynamic graph" in said[0]
    assert forward(images, 4).shape == (6, 2)
    with pytest.raises(NotImplementedError):
        make_forward(layer, (127.5,) * 3, (64.0,) * 3, 16, "inference")
    evaluator = make_evaluator("auto", 16, said.append)
    split = Split(images, np.array([0, 1, 0, 1, 0, 1]))
    first = evaluator(layer, split, (127.5,) * 3, (64.0,) * 3, 4)
    assert evaluator(layer, split, (127.5,) * 3, (64.0,) * 3, 4) == first
    assert len(said) == 2  # the failed export is said once per evaluator, then the dynamic graph is kept


def test_eval_engine_is_checked_in_the_config() -> None:
    assert config_from_dict({"train": {"eval_engine": "dygraph"}}).train.eval_engine == "dygraph"
    assert config_from_dict({}).train.eval_engine == "auto"
    with pytest.raises(ConfigError, match=r"train.eval_engine: unknown value 'static'.*auto, inference, dygraph"):
        config_from_dict({"train": {"eval_engine": "static"}})


def test_the_engines_gpu_config_runs_on_a_cpu_build_as_far_as_it_can(lite0: nn.Layer) -> None:
    """The GPU branch of the engine (enable_use_gpu) is exercised here: on a CPU-only Paddle it falls back to the
    CPU and must give the CPU's logits. On a real GPU it is untested (no GPU machine was available)."""
    if paddle.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA: the fallback cannot be seen")
    images = noisy_split(16, seed=7).images
    spec = lite0.spec
    with EngineForward(lite0, tuple(spec.mean), tuple(spec.std), 32, gpu=False, threads=1) as cpu:
        expected = cpu(images, 8)
    with EngineForward(lite0, tuple(spec.mean), tuple(spec.std), 32, gpu=True, threads=1) as gpu:
        got = gpu(images, 8)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
