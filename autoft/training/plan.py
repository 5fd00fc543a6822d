"""`autoft search --dry-run`: validate everything, probe two training steps, estimate the search. No ray import."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from autoft.config import RunConfig, first_config

__all__ = ["Plan", "make_plan", "format_plan"]


@dataclass(frozen=True)
class Plan:
    backbone: str
    image_size: int
    classes: int
    n_train: int
    n_val: int
    trials: int
    concurrency: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    step_seconds: float      # one training step, measured (the second of two)
    eval_seconds: float      # one pass over the validation split, estimated from one batch
    warnings: tuple[str, ...] = ()

    @property
    def trial_seconds(self) -> float:
        """A trial that runs every epoch (early stopping only makes it shorter)."""
        return self.epochs * (self.steps_per_epoch * self.step_seconds + self.eval_seconds)

    @property
    def total_seconds(self) -> float:
        return math.ceil(self.trials / self.concurrency) * self.trial_seconds


def _concurrency(cfg: RunConfig) -> int:
    if cfg.search.max_concurrent != "auto":
        return int(cfg.search.max_concurrent)
    return max(1, int((os.cpu_count() or 1) // cfg.search.resources_per_trial.cpu))


def make_plan(cfg: RunConfig) -> Plan:
    """Load the data (filling the cache), build the model with its weights, time two steps of the first config."""
    import paddle

    from autoft.data import load_for_config
    from autoft.data.check import check_for_config
    from autoft.training.depthwise import configure
    from autoft.training.fit import build_model
    from autoft.training.loop import TrainLoop, steps_per_epoch, train_step
    from autoft.training.strategies import build_strategy

    report = check_for_config(cfg)
    report.raise_for_errors()
    first = first_config(cfg)
    data = load_for_config(first)
    device = "cpu" if not paddle.is_compiled_with_cuda() else "gpu"
    paddle.set_device(device)
    model = build_model(first, data.num_classes)
    t = first.train
    configure(model, t.depthwise, device)  # as the trials train
    spe = steps_per_epoch(len(data.train), t.batch_size)
    loop = TrainLoop(cfg=t, model=model, net=model, strategy=build_strategy(t, model, spe, t.epochs), data=data,
                     mean=tuple(model.spec.mean), std=tuple(model.spec.std), steps_per_epoch=spe,
                     on_eval=lambda *_: None, log=lambda _m: None)
    batch = _first_batch(data, t.batch_size)
    model.train()
    train_step(loop, *batch, 1)
    started = time.perf_counter()
    train_step(loop, *batch, 1)
    step = time.perf_counter() - started
    eval_pass = _eval_seconds(model, data, t.eval_engine, max(64, t.batch_size * 2))
    return Plan(backbone=first.model.backbone, image_size=data.image_size, classes=data.num_classes,
                n_train=len(data.train), n_val=len(data.val), trials=cfg.search.trials,
                concurrency=_concurrency(cfg), epochs=t.epochs, steps_per_epoch=spe, batch_size=t.batch_size,
                step_seconds=step,
                eval_seconds=eval_pass, warnings=tuple(report.warnings))


def _eval_seconds(model: Any, data: Any, engine: str, batch_size: int) -> float:
    """One validation pass, estimated the way trials run it (train.eval_engine): the export and engine build
    once per evaluation, then the forward on a probe of the validation images scaled to the whole split."""
    from autoft.training.evaluation import EngineForward, make_forward

    started = time.perf_counter()
    forward = make_forward(model, tuple(model.spec.mean), tuple(model.spec.std), data.image_size, engine)
    build = time.perf_counter() - started
    try:
        probe = data.val.images[:batch_size]
        forward(probe, batch_size)  # warm-up: the engine's first run allocates
        started = time.perf_counter()
        forward(probe, batch_size)
        per_image = (time.perf_counter() - started) / max(1, len(probe))
    finally:
        if isinstance(forward, EngineForward):
            forward.close()
    return build + per_image * len(data.val)


def _first_batch(data: Any, batch_size: int) -> tuple[Any, Any]:
    n = min(batch_size, len(data.train))
    return data.train.images[:n], data.train.labels[:n]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_plan(cfg: RunConfig, plan: Plan) -> str:
    space = ", ".join(cfg.space.names) or "(nothing: every trial uses the config's values)"
    lines = [
        f"config        {cfg.source}: valid",
        f"data          {plan.classes} classes, {plan.n_train} train / {plan.n_val} val images at "
        f"{plan.image_size}px (cache ready)",
        f"model         {plan.backbone}, pretrained={cfg.model.pretrained} (weights loaded)",
        f"space         {space}",
        f"search        {plan.trials} trials, {plan.concurrency} at a time, sampler {cfg.search.sampler}, "
        f"scheduler {cfg.search.scheduler}",
        f"probe         {plan.step_seconds:.2f} s per training step (batch {plan.batch_size}), "
        f"{plan.steps_per_epoch} steps per epoch, {plan.eval_seconds:.1f} s per validation pass",
        f"estimate      {_duration(plan.trial_seconds)} per trial of {plan.epochs} epochs; "
        f"at most {_duration(plan.total_seconds)} in all (early stopping makes it shorter)",
    ]
    lines += [f"data warning  {w}" for w in plan.warnings]
    return "\n".join(lines)
