"""Fine-tune strategies (PaddleHub 1.x's): each owns the optimizer, its lr schedule and its regularisation.

``build_strategy(train_cfg, model, steps_per_epoch, total_epochs)`` picks one by ``train.strategy``:

* ``default``     the chosen optimizer at a constant lr; ``regularization_coeff`` is L2 decay on every
                  parameter (AdamW: its decoupled weight decay).
* ``adamw_decay`` AdamW; linear warmup over ``warmup_proportion`` of the steps, then linear decay to 0;
                  decoupled weight decay on weights only (never on norm-layer parameters or biases).
* ``ulmfit``      slanted triangular lr, discriminative lr per layer group, gradual unfreezing.
* ``l2sp``        ``regularization_coeff / 2 * ||w - w_pretrained||^2`` on the backbone, plain L2 on the head.

Parameters that are frozen (``stop_gradient``) when the strategy is built stay out of the optimizer and are
never unfrozen: ``train.freeze_backbone`` wins over ULMFiT's gradual unfreezing. BatchNorm running statistics
are parameters with ``stop_gradient`` in paddle, so they are never optimised either.
"""
from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import paddle
from paddle import nn

from autoft.config import TrainConfig
from autoft.config.schema import Optimizer, StrategyName

__all__ = ["Strategy", "DefaultStrategy", "AdamWDecayStrategy", "ULMFiTStrategy", "L2SPStrategy", "STRATEGIES",
           "OPTIMIZERS", "build_strategy", "build_optimizer", "warmup_linear_decay", "slanted_triangular",
           "no_decay_param_names"]

_NORM_LAYERS = (nn.BatchNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm, nn.LayerNorm,
                nn.GroupNorm, nn.InstanceNorm1D, nn.InstanceNorm2D, nn.InstanceNorm3D)
E = TypeVar("E", bound=enum.Enum)


def _l2(coeff: float) -> Any:
    return paddle.regularizer.L2Decay(coeff) if coeff > 0 else None


OptimizerBuilder = Callable[[Any, list[dict], float, TrainConfig], paddle.optimizer.Optimizer]
# Each builder: (learning rate or scheduler, param groups, weight decay coefficient, train cfg) → optimizer.
# Groups carry their own 'weight_decay' / 'learning_rate' multiplier where a strategy needs it. Paddle types each
# optimizer's groups as its own TypedDict (_AdamParameterConfig, ...), which plain dicts are not: hence the ignores.
OPTIMIZERS: dict[Optimizer, OptimizerBuilder] = {}


def _optimizer(name: Optimizer) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    def register(build: OptimizerBuilder) -> OptimizerBuilder:
        OPTIMIZERS[name] = build
        return build

    return register


@_optimizer(Optimizer.ADAM)
def _adam(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.Adam(learning_rate=lr, parameters=groups, weight_decay=_l2(wd))  # type: ignore[arg-type]


@_optimizer(Optimizer.ADAMW)
def _adamw(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.AdamW(learning_rate=lr, parameters=groups, weight_decay=wd)  # type: ignore[arg-type]


@_optimizer(Optimizer.MOMENTUM)
def _momentum(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.Momentum(learning_rate=lr, momentum=cfg.momentum,
                                     parameters=groups, weight_decay=_l2(wd))  # type: ignore[arg-type]


@_optimizer(Optimizer.SGD)
def _sgd(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.SGD(learning_rate=lr, parameters=groups, weight_decay=_l2(wd))


@_optimizer(Optimizer.RMSPROP)
def _rmsprop(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.RMSProp(learning_rate=lr, parameters=groups, weight_decay=_l2(wd))  # type: ignore[arg-type]


@_optimizer(Optimizer.ADAGRAD)
def _adagrad(lr: Any, groups: list[dict], wd: float, cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    return paddle.optimizer.Adagrad(learning_rate=lr, parameters=groups, weight_decay=_l2(wd))  # type: ignore[arg-type]


def _member(kind: type[E], value: str | E, unknown: str) -> E:
    """The Enum member spelt ``value`` (a member or its YAML string); an unknown one lists the valid values."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{unknown} {value!r}; valid: {', '.join(m.value for m in kind)}") from None


def build_optimizer(name: str | Optimizer, lr: Any, groups: list[dict], weight_decay: float,
                    cfg: TrainConfig) -> paddle.optimizer.Optimizer:
    """A paddle optimizer by name over ``groups`` (dicts with 'params' and optional per-group options)."""
    return OPTIMIZERS[_member(Optimizer, name, "optimizer: unknown name")](lr, groups, weight_decay, cfg)


def warmup_linear_decay(step: int, total: int, warmup: int, max_lr: float) -> float:
    """lr at 0-based ``step``: ``max_lr * step / warmup`` while warming up, then linear down to 0 at ``total``."""
    if step < warmup:
        return max_lr * step / warmup
    return max_lr * max(0.0, (total - step) / max(1, total - warmup))


def slanted_triangular(step: int, total: int, cut_fraction: float, ratio: float, max_lr: float) -> float:
    """Howard & Ruder's slanted triangular lr at 0-based ``step`` of ``total``.

    cut = floor(total * cut_fraction); p = t / cut while t < cut, else 1 - (t - cut) / (cut * (1/cut_fraction - 1));
    lr = max_lr * (1 + p * (ratio - 1)) / ratio. When cut rounds to 0 there is no climb and the decay runs over
    ``total`` steps; p is clamped to [0, 1] because with a rounded cut the formula can dip below 0 at the end.
    """
    cut = math.floor(total * cut_fraction)
    if step < cut:
        p = step / cut
    else:
        span = cut * (1 / cut_fraction - 1) if cut > 0 else total
        p = 1 - (step - cut) / span
    p = min(1.0, max(0.0, p))
    return max_lr * (1 + p * (ratio - 1)) / ratio


class _FunctionLR(paddle.optimizer.lr.LRScheduler):
    """A paddle LRScheduler whose lr at step t is ``fn(t)``; its state (last_epoch = step) is checkpointed."""

    def __init__(self, fn: Callable[[int], float]) -> None:
        self._fn = fn
        super().__init__(learning_rate=fn(0))

    def get_lr(self) -> float:
        return self._fn(self.last_epoch)


def _trainable(params: Sequence[paddle.Tensor]) -> list[paddle.Tensor]:
    return [p for p in params if not p.stop_gradient]


def no_decay_param_names(model: nn.Layer) -> set[str]:
    """Paddle names of the parameters that weight decay must skip: every norm-layer parameter and every bias."""
    names: set[str] = set()
    for _, layer in model.named_sublayers(include_self=True):
        for attr, p in layer.named_parameters(include_sublayers=False):
            if isinstance(layer, _NORM_LAYERS) or attr.endswith("bias") or p.ndim <= 1:
                names.add(p.name)
    return names


class Strategy(abc.ABC):
    """Owns ``optimizer`` and the lr schedule; the trainer calls, per epoch, ``on_epoch_start(epoch)`` and, per
    batch, ``loss + penalty(model)``, ``backward()``, ``step()``."""

    name: ClassVar[StrategyName]

    def __init__(self, cfg: TrainConfig, model: nn.Layer, steps_per_epoch: int, total_epochs: int) -> None:
        if steps_per_epoch < 1 or total_epochs < 1:
            raise ValueError(f"steps_per_epoch and total_epochs must be >= 1, got {steps_per_epoch}, {total_epochs}")
        self.cfg = cfg
        self.total_steps = steps_per_epoch * total_epochs
        self.global_step = 0
        self.scheduler: _FunctionLR | None = None
        for p in model.parameters():
            # paddle stores a group's regularizer on the parameter itself; one left by an earlier optimizer
            # over the same model (PBT, tests) must not leak into this one.
            p.regularizer = None
        self.optimizer = self._build(model)

    @abc.abstractmethod
    def _build(self, model: nn.Layer) -> paddle.optimizer.Optimizer:
        """The optimizer (and its parameter groups) that makes this strategy what it is."""

    def _schedule(self) -> _FunctionLR:
        self.scheduler = _FunctionLR(self.lr_at)
        return self.scheduler

    def lr_at(self, step: int) -> float:
        """The base lr (head group) at 0-based global ``step``; a pure function."""
        return self.cfg.learning_rate

    @property
    def lr(self) -> float:
        return float(self.optimizer.get_lr())

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each 1-based ``epoch``."""

    def penalty(self, model: nn.Layer) -> paddle.Tensor | None:
        """An extra loss term added to the data loss, or None."""
        return None

    def step(self, scaler: paddle.amp.GradScaler | None = None) -> None:
        """Apply the gradients, clear them and move the schedule to the next step."""
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
            scaler.update()
        self.optimizer.clear_grad()
        self.global_step += 1
        if self.scheduler is not None:
            self.scheduler.step()

    def extra_state(self) -> dict[str, np.ndarray]:
        """Tensors a checkpoint must hold besides the model and the optimizer (e.g. the L2-SP anchor)."""
        return {}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``extra_state`` returned."""

    def set_global_step(self, step: int) -> None:
        """Jump the schedule to ``step`` (resume from a checkpoint)."""
        self.global_step = step
        if self.scheduler is not None:
            self.scheduler.step(step)


class DefaultStrategy(Strategy):
    """PaddleHub's DefaultFinetuneStrategy: constant lr, L2 decay ``regularization_coeff`` on every parameter."""

    name = StrategyName.DEFAULT

    def _build(self, model: nn.Layer) -> paddle.optimizer.Optimizer:
        groups = [{"params": _trainable(model.parameters())}]
        return build_optimizer(self.cfg.optimizer, self.cfg.learning_rate, groups, self.cfg.regularization_coeff,
                               self.cfg)


class AdamWDecayStrategy(Strategy):
    """PaddleHub's AdamWeightDecayStrategy: AdamW, linear warmup then linear decay to 0, no decay on norms/biases.

    ``warmup = floor(total_steps * warmup_proportion)``; lr(t) = lr * t / warmup for t < warmup, else
    lr * (total - t) / (total - warmup). With warmup 0 the first step runs at the full lr.
    """

    name = StrategyName.ADAMW_DECAY

    def _build(self, model: nn.Layer) -> paddle.optimizer.Optimizer:
        self.warmup_steps = math.floor(self.total_steps * self.cfg.warmup_proportion)
        skip = no_decay_param_names(model)
        return paddle.optimizer.AdamW(learning_rate=self._schedule(),  # the ignore: see OPTIMIZERS
                                      parameters=[{"params": _trainable(model.parameters())}],  # type: ignore[arg-type]
                                      weight_decay=self.cfg.regularization_coeff,
                                      apply_decay_param_fun=lambda name: name not in skip)

    def lr_at(self, step: int) -> float:
        return warmup_linear_decay(step, self.total_steps, self.warmup_steps, self.cfg.learning_rate)


class ULMFiTStrategy(Strategy):
    """PaddleHub's ULMFiTStrategy over ``model.layer_groups()`` (input → output, the last group is the head).

    * lr: ``slanted_triangular`` over all steps with ``cut_fraction`` and ``ratio``.
    * discriminative lr: the group ``d`` groups below the head (head d = 0) trains at
      lr / factor ** min(d, dis_blocks); ``dis_blocks = 0`` gives every group the same lr.
    * gradual unfreezing: in 1-based epoch e <= frz_blocks only the head and the e - 1 groups just below it
      train (epoch 1: the head alone, then one more group each epoch); from epoch frz_blocks + 1 every group
      trains. ``frz_blocks = 0`` trains everything from the start. Frozen groups keep their weights; their
      BatchNorm statistics still follow the data, as in ULMFiT.
    """

    name = StrategyName.ULMFIT

    def _build(self, model: nn.Layer) -> paddle.optimizer.Optimizer:
        trainable = _trainable(model.parameters())
        layer_groups = [_trainable(g) for g in model.layer_groups()]
        grouped = [p for g in layer_groups for p in g]
        if len(grouped) != len(trainable) or {id(p) for p in grouped} != {id(p) for p in trainable}:
            raise ValueError(f"ulmfit: model.layer_groups() must hold every trainable parameter exactly once; "
                             f"it holds {len(grouped)} of {len(trainable)}")
        n = len(layer_groups)
        # depth below the head per group: the head is 0
        self.groups = [(n - 1 - i, g) for i, g in enumerate(layer_groups) if g]
        param_groups = [{"params": g, "learning_rate": self.cfg.factor ** -min(d, self.cfg.dis_blocks)}
                        for d, g in self.groups]
        return build_optimizer(self.cfg.optimizer, self._schedule(), param_groups, self.cfg.regularization_coeff,
                               self.cfg)

    def lr_at(self, step: int) -> float:
        return slanted_triangular(step, self.total_steps, self.cfg.cut_fraction, self.cfg.ratio,
                                  self.cfg.learning_rate)

    def trains_depth(self, depth: int, epoch: int) -> bool:
        """Whether the group ``depth`` groups below the head trains in 1-based ``epoch``."""
        return self.cfg.frz_blocks == 0 or epoch > self.cfg.frz_blocks or depth <= epoch - 1

    def on_epoch_start(self, epoch: int) -> None:
        for depth, params in self.groups:
            frozen = not self.trains_depth(depth, epoch)
            for p in params:
                p.stop_gradient = frozen


class L2SPStrategy(Strategy):
    """L2-SP (Li et al. 2018): pulls the backbone towards its pretrained weights instead of towards 0.

    penalty = regularization_coeff / 2 * sum ||w - w_pretrained||^2 over trainable backbone parameters (the
    gradient coeff * (w - w0) matches L2 decay's coeff * w); the head gets plain L2 decay (AdamW: decoupled).
    The pretrained copy is taken when the strategy is built.
    """

    name = StrategyName.L2SP

    def _build(self, model: nn.Layer) -> paddle.optimizer.Optimizer:
        backbone = _trainable(model.backbone.parameters())
        in_backbone = {id(p) for p in backbone}
        head = [p for p in _trainable(model.parameters()) if id(p) not in in_backbone]
        self.pairs = [(p, p.detach().clone()) for p in backbone]
        self.names = {id(p): name for name, p in model.backbone.named_parameters()}
        # The optimizer-wide decay is 0 (a parameter without its own regularizer would fall back to it); only
        # the head group carries one: AdamW takes a float (decoupled), the others an L2Decay regularizer.
        coeff = self.cfg.regularization_coeff
        adamw = _member(Optimizer, self.cfg.optimizer, "optimizer: unknown name") is Optimizer.ADAMW
        groups = [g for g in ({"params": backbone, "weight_decay": 0.0 if adamw else None},
                              {"params": head, "weight_decay": coeff if adamw else _l2(coeff)}) if g["params"]]
        return build_optimizer(self.cfg.optimizer, self.cfg.learning_rate, groups, 0.0, self.cfg)

    def penalty(self, model: nn.Layer) -> paddle.Tensor | None:
        terms = [paddle.sum(paddle.square(p - anchor)) for p, anchor in self.pairs if not p.stop_gradient]
        if not terms or self.cfg.regularization_coeff == 0:
            return None
        return paddle.add_n(terms) * (self.cfg.regularization_coeff / 2)

    def extra_state(self) -> dict[str, np.ndarray]:
        return {f"l2sp_anchor.{self.names[id(p)]}": anchor.numpy() for p, anchor in self.pairs}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        for p, anchor in self.pairs:
            anchor.set_value(state[f"l2sp_anchor.{self.names[id(p)]}"])


STRATEGIES: dict[StrategyName, type[Strategy]] = {
    cls.name: cls for cls in (DefaultStrategy, AdamWDecayStrategy, ULMFiTStrategy, L2SPStrategy)
}


def build_strategy(train_cfg: TrainConfig, model: nn.Layer, steps_per_epoch: int, total_epochs: int) -> Strategy:
    """The strategy named by ``train_cfg.strategy``, its optimizer over ``model``'s trainable parameters."""
    strategy = STRATEGIES[_member(StrategyName, train_cfg.strategy, "train.strategy: unknown value")]
    return strategy(train_cfg, model, steps_per_epoch, total_epochs)
