"""One fine-tune: ``fit(cfg, data)`` trains a backbone + new head and keeps the best evaluation as a bundle.

``fit`` wires the epoch loop and evaluation (``training.loop``) to the strategy, the report callback, bundles
and checkpoints. No ray import: ``search`` wraps ``fit``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paddle
from paddle import nn

from autoft.backbones.factory import create
from autoft.config import RunConfig, TrainConfig
from autoft.data import ImageData
from autoft.errors import TrialError
from autoft.run.bundle import BundleMeta, is_bundle, load_bundle, save_bundle
from autoft.training import depthwise, features
from autoft.training.checkpoint import checkpoint_path, load_checkpoint, model_weights, save_checkpoint
from autoft.training.evaluation import Evaluator, make_evaluator
from autoft.training.loop import Log, TrainLoop, evaluate, steps_per_epoch, train_one_epoch
from autoft.training.strategies import Strategy, build_strategy

__all__ = ["TrialResult", "build_model", "fit", "train", "select_device"]

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrialResult:
    best_val_acc: float
    best_val_loss: float
    best_epoch: int
    epochs_run: int  # the last epoch number reached (it continues a restored checkpoint's count)
    seconds: float
    history: list[dict] = field(default_factory=list)  # one dict per evaluation, as reported
    bundle_path: Path | None = None


def select_device(requested: str) -> str:
    """'cpu' or 'gpu' for train.device auto | cpu | gpu; gpu without a CUDA build or device falls back to CPU.

    CUDA_VISIBLE_DEVICES (Ray sets it to the GPUs it assigned the trial) is honoured: paddle numbers only the
    visible devices, so 'gpu' (= gpu:0) is the trial's own GPU, and an empty value means no GPU. A GPU assigned
    this way with a CPU-only paddle is a fallback worth a warning even for `auto`.
    """
    has_gpu = paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    assigned = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1")
    if (requested == "gpu" or (requested == "auto" and assigned)) and not has_gpu:
        warnings.warn("train.device: gpu requested, but paddle has no CUDA build or sees no GPU; training on CPU",
                      stacklevel=2)
    return "gpu" if has_gpu and requested != "cpu" else "cpu"


def _better(metrics: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Higher val_acc wins; at equal val_acc, lower val_loss."""
    if best is None:
        return True
    return (metrics["val_acc"], -metrics["val_loss"]) > (best["val_acc"], -best["val_loss"])


def _hparams(cfg: RunConfig) -> dict[str, Any]:
    return {**dataclasses.asdict(cfg.model), **dataclasses.asdict(cfg.train)}


def build_model(cfg: RunConfig, num_classes: int) -> nn.Layer:
    """``cfg.model``'s backbone with a new ``num_classes`` head and its pretrained weights, with ``train.dropout``
    in the head and, for ``train.freeze_backbone``, a backbone that never trains."""
    model = create(cfg.model.backbone, num_classes, cfg.model.pretrained, cfg.model.head_hidden)
    if cfg.train.dropout is not None:
        for layer in model.head.sublayers(include_self=True):
            if isinstance(layer, nn.Dropout):
                layer.p = cfg.train.dropout
    if cfg.train.freeze_backbone:
        for p in model.backbone.parameters():
            p.stop_gradient = True
    return model


def _parallel(model: nn.Layer, cfg: TrainConfig, device: str) -> tuple[nn.Layer, int, int]:
    """(net, rank, world): paddle.DataParallel when launched on several GPUs, else the model itself."""
    if not cfg.data_parallel:
        return model, 0, 1
    if device != "gpu":
        warnings.warn("train.data_parallel: ignored on CPU", stacklevel=3)
        return model, 0, 1
    import paddle.distributed as dist

    if dist.get_world_size() < 2:
        warnings.warn("train.data_parallel: one process sees one GPU; start with `python -m "
                      "paddle.distributed.launch` to train on several", stacklevel=3)
        return model, 0, 1
    dist.init_parallel_env()
    return paddle.DataParallel(model), dist.get_rank(), dist.get_world_size()


def _scaler(cfg: TrainConfig, device: str) -> paddle.amp.GradScaler | None:
    if not cfg.amp:
        return None
    if device != "gpu":
        warnings.warn("train.amp: mixed precision needs a GPU; training in float32 on CPU", stacklevel=3)
        return None
    return paddle.amp.GradScaler()


@dataclass
class _Keeper:
    """Runs each evaluation: checks it, records it, keeps the best as a bundle and reports it."""

    cfg: RunConfig
    data: ImageData
    model: nn.Layer
    bundle_dir: Path | None
    report: Report | None
    start: float
    rank: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    score: Callable[[], dict[str, float]] | None = None  # replaces `evaluate` (the feature cache's head-only path)
    evaluator: Evaluator = evaluate  # train.eval_engine's (training.evaluation.make_evaluator)

    def __call__(self, loop: TrainLoop, epoch: int, epoch_value: float) -> None:
        if self.score is not None:
            metrics = self.score()
        else:
            metrics = self.evaluator(self.model, self.data.val, loop.mean, loop.std, self.cfg.train.batch_size * 2)
        if not math.isfinite(metrics["val_loss"]):
            raise TrialError(f"val_loss became {metrics['val_loss']} at epoch {epoch}, step {loop.step}")
        row = {"epoch": epoch_value, "step": loop.step, "train_loss": loop.take_train_loss(), **metrics,
               "lr": loop.strategy.lr, "seconds": time.perf_counter() - self.start}
        self.history.append(row)
        if self.rank != 0:
            return
        if _better(row, self.best):
            self.best = row
            if self.bundle_dir is not None:
                _save_bundle(self.bundle_dir, self.cfg, self.data, self.model, row)
        if self.report is not None:
            self.report(dict(row))


def fit(cfg: RunConfig, data: ImageData, *, bundle_dir: Path | None = None, report: Report | None = None,
        log: Log | None = None, restore: Path | None = None, checkpoint_dir: Path | None = None) -> TrialResult:
    """Fine-tune ``cfg.model`` on ``data`` with ``cfg.train``; ``report(metrics)`` after every evaluation.

    The best evaluation (val_acc, then lower val_loss) is saved as a bundle at ``bundle_dir``. Every
    ``save_ckpt_interval`` epochs a checkpoint goes to ``checkpoint_dir/epoch_<k>/`` (default
    ``train.checkpoint_dir``); ``restore`` continues from one (epochs, schedule, optimizer state). After a
    restore, a bundle already at ``bundle_dir`` is only replaced by a better evaluation.
    """
    start, t = time.perf_counter(), cfg.train
    device = select_device(t.device)
    paddle.set_device(device)
    paddle.seed(t.seed)
    model = build_model(cfg, data.num_classes)
    depthwise.configure(model, t.depthwise, device)
    spe = steps_per_epoch(len(data.train), t.batch_size)
    strategy = build_strategy(t, model, spe, t.epochs)
    net, rank, world = _parallel(model, t, device)
    bundle_dir = Path(bundle_dir) if bundle_dir is not None else None
    keeper = _Keeper(cfg, data, model, bundle_dir, report, start, rank,
                     evaluator=make_evaluator(t.eval_engine, data.image_size, log))
    loop = TrainLoop(cfg=t, model=model, net=net, strategy=strategy, data=data, mean=tuple(model.spec.mean),
                     std=tuple(model.spec.std), steps_per_epoch=spe, on_eval=keeper,
                     log=log or (lambda _msg: None), scaler=_scaler(t, device), rank=rank, world=world)
    done = 0  # epochs a restored checkpoint already trained
    if restore is not None:
        done, loop.step = _restore(Path(restore), model, strategy, keeper)
    run_epoch: Callable[[TrainLoop, int], dict[str, float]] = train_one_epoch
    if t.freeze_backbone and world == 1 and features.enabled():
        # head-only: train on cached backbone features (non-augmented images)
        run_epoch, keeper.score = features.head_only_training(loop, loop.log)
    for epoch in range(done + 1, t.epochs + 1):
        run_epoch(loop, epoch)
        # saved before the evaluation reports, so a report (pbt's tune.report) can hand this epoch's checkpoint on
        if t.save_ckpt_interval and epoch % t.save_ckpt_interval == 0 and rank == 0:
            where = checkpoint_path(checkpoint_dir or t.checkpoint_dir, epoch)
            save_checkpoint(where, model, strategy, {"epoch": epoch, "seed": t.seed, "strategy": t.strategy})
            loop.log(f"checkpoint saved to {where}")
        if t.eval_interval == "epoch":
            keeper(loop, epoch, epoch)
        elif epoch == t.epochs and isinstance(t.eval_interval, int) and loop.step % t.eval_interval:
            keeper(loop, epoch, loop.step / spe)  # the final weights are always evaluated
    has_bundle = bundle_dir is not None and keeper.best is not None and is_bundle(bundle_dir)
    return _result(keeper.best, keeper.history, max(done, t.epochs), time.perf_counter() - start,
                   bundle_dir if has_bundle else None)


def _restore(path: Path, model: nn.Layer, strategy: Strategy, keeper: _Keeper) -> tuple[int, int]:
    """Load checkpoint ``path`` → (its epoch, its global step); a bundle already kept sets the bar to beat."""
    state = load_checkpoint(path, model, strategy)
    if keeper.bundle_dir is not None and is_bundle(keeper.bundle_dir):
        keeper.best = dict(load_bundle(keeper.bundle_dir).meta.metrics)
    return int(state["epoch"]), int(state["global_step"])


def _result(best: dict[str, Any] | None, history: list[dict], epochs_run: int, seconds: float,
            bundle: Path | None) -> TrialResult:
    if best is None:
        return TrialResult(float("nan"), float("nan"), 0, epochs_run, seconds, history, bundle)
    return TrialResult(best["val_acc"], best["val_loss"], math.ceil(best["epoch"]), epochs_run, seconds, history,
                       bundle)


def _save_bundle(path: Path, cfg: RunConfig, data: ImageData, model: nn.Layer, metrics: dict[str, Any]) -> Path:
    spec = model.spec
    meta = BundleMeta(backbone=spec.name, num_classes=data.num_classes, class_names=tuple(data.class_names),
                      image_size=data.image_size, mean=tuple(spec.mean), std=tuple(spec.std), hparams=_hparams(cfg),
                      head_hidden=cfg.model.head_hidden,
                      metrics=dict(metrics), data_fingerprint=data.fingerprint, num_train_samples=len(data.train))
    return save_bundle(path, model_weights(model), meta)


def _format(metrics: dict[str, Any]) -> str:
    return (f"epoch {metrics['epoch']:g} step {metrics['step']}: train_loss {metrics['train_loss']:.4f} "
            f"val_loss {metrics['val_loss']:.4f} val_acc {metrics['val_acc']:.4f} ({metrics['seconds']:.0f}s)")


def train(cfg: RunConfig, *, log: Log = print) -> TrialResult:
    """`autoft train`: load the data, fine-tune once, keep the best model in ``train.checkpoint_dir/best_model``.

    Searched keys take the values of the search's first trial (autoft.config.first_config).
    """
    from autoft.config import first_config, inert_searched_keys
    from autoft.data import load_for_config

    for line in inert_searched_keys(cfg):
        log(f"config warning: {line}")
    cfg = first_config(cfg)
    data = load_for_config(cfg)
    log(f"{len(data.train)} training / {len(data.val)} validation images, {data.num_classes} classes, "
        f"{data.image_size}px, backbone {cfg.model.backbone}")
    ckpt = Path(cfg.train.checkpoint_dir)
    result = fit(cfg, data, bundle_dir=ckpt / "best_model", report=lambda m: log(_format(m)), log=log,
                 checkpoint_dir=ckpt)
    log(f"best val_acc {result.best_val_acc:.4f} (val_loss {result.best_val_loss:.4f}, epoch {result.best_epoch}); "
        f"bundle: {result.bundle_path}")
    return result
