"""Each strategy's defining behaviour, checked on a real (tiny) paddle Classifier."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")
from paddle import nn  # noqa: E402

from autoft.backbones.classifier import Classifier  # noqa: E402
from autoft.config import OPTIMIZERS, TrainConfig  # noqa: E402
from autoft.config.schema import Optimizer, StrategyName  # noqa: E402
from autoft.training import strategies  # noqa: E402
from autoft.training.strategies import (  # noqa: E402
    STRATEGIES, build_optimizer, build_strategy, no_decay_param_names, slanted_triangular, warmup_linear_decay,
)
from tiny import TinyBackbone, tiny_spec  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track global mean")

SPEC = tiny_spec("tiny")


def tiny_model(seed: int = 0) -> Classifier:
    paddle.seed(seed)
    return Classifier(SPEC, TinyBackbone(), 3, 0.0)


def cfg(**kw) -> TrainConfig:
    base = dict(learning_rate=0.01, regularization_coeff=0.0, optimizer="sgd")
    return TrainConfig(**{**base, **kw})


def batch(seed: int = 0) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(seed)
    return (paddle.to_tensor(rng.normal(size=(6, 3, 16, 16)).astype("float32")),
            paddle.to_tensor(rng.integers(0, 3, 6).astype("int64")))


def train_steps(strategy, model: Classifier, n: int, seed: int = 0) -> None:
    x, y = batch(seed)
    model.train()
    for _ in range(n):
        loss = nn.functional.cross_entropy(model(x), y)
        penalty = strategy.penalty(model)
        (loss if penalty is None else loss + penalty).backward()
        strategy.step()


def zero_grad_step(strategy, model: Classifier) -> None:
    """A step whose data gradient is exactly 0 for every parameter: what moves is regularisation alone."""
    x, _ = batch()
    model.train()
    loss = (model(x) * 0).sum()
    penalty = strategy.penalty(model)
    (loss if penalty is None else loss + penalty).backward()
    strategy.step()


def snapshot(params) -> list[np.ndarray]:
    return [p.numpy().copy() for p in params]


def changed(before: list[np.ndarray], params) -> list[bool]:
    return [not np.array_equal(b, p.numpy()) for b, p in zip(before, params)]


# --- lr schedules -------------------------------------------------------------------------------------------

def test_adamw_decay_lr_warms_up_linearly_then_decays_to_zero():
    model = tiny_model()
    s = build_strategy(cfg(strategy="adamw_decay", learning_rate=0.1, warmup_proportion=0.25), model, 10, 2)
    assert s.warmup_steps == 5
    expected = {0: 0.0, 1: 0.02, 4: 0.08, 5: 0.1, 10: 0.1 * 10 / 15, 19: 0.1 / 15}
    assert {t: s.lr_at(t) for t in expected} == pytest.approx(expected)
    # the optimizer really runs on that schedule
    for t in range(6):
        assert s.lr == pytest.approx(s.lr_at(t))
        train_steps(s, model, 1)


def test_ulmfit_lr_is_slanted_triangular():
    s = build_strategy(cfg(strategy="ulmfit", learning_rate=0.32, cut_fraction=0.1, ratio=32), tiny_model(), 50, 2)
    # T = 100, cut = 10: climbs from lr/ratio to lr in 10 steps, then falls back over 90
    expected = {0: 0.01, 5: 0.32 * (1 + 0.5 * 31) / 32, 10: 0.32, 55: 0.32 * (1 + 0.5 * 31) / 32,
                99: 0.32 * (1 + (1 / 90) * 31) / 32}
    assert {t: s.lr_at(t) for t in expected} == pytest.approx(expected)
    assert s.lr == pytest.approx(0.01)


def test_slanted_triangular_never_goes_below_lr_over_ratio_when_cut_rounds():
    # T = 25, cut_fraction 0.1: cut = 2 and the decay span 18 < 23 steps left; p is clamped at 0
    assert slanted_triangular(24, 25, 0.1, 32, 1.0) == pytest.approx(1 / 32)


@pytest.mark.parametrize("strategy, key, value", [
    ("adamw_decay", "warmup_proportion", 0.0),
    ("ulmfit", "cut_fraction", 0.01),  # 10 steps * 0.01 rounds to a 0-step cut
    ("ulmfit", "cut_fraction", 0.0),
])
def test_zero_step_warmup_or_cut_still_trains(strategy, key, value):
    model = tiny_model()
    s = build_strategy(cfg(strategy=strategy, optimizer="adam", frz_blocks=0, **{key: value}), model, 5, 2)
    assert s.lr_at(0) == pytest.approx(0.01)  # the first step runs at the full lr
    assert all(math.isfinite(s.lr_at(t)) and s.lr_at(t) > 0 for t in range(10))
    before = snapshot(model.parameters())
    train_steps(s, model, 3)
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())
    assert any(changed(before, model.parameters()))


def test_warmup_linear_decay_zero_warmup_is_plain_decay():
    assert [warmup_linear_decay(t, 4, 0, 1.0) for t in range(4)] == [1.0, 0.75, 0.5, 0.25]


# --- weight decay -------------------------------------------------------------------------------------------

def test_adamw_decay_skips_norm_params_and_biases_but_decays_conv_weights():
    model = tiny_model()
    skip = no_decay_param_names(model)
    conv = model.backbone.blocks[0][0]
    bn = model.backbone.blocks[0][1]
    assert conv.bias.name in skip and bn.weight.name in skip and bn.bias.name in skip
    assert conv.weight.name not in skip and model.head.fc.weight.name not in skip
    s = build_strategy(cfg(strategy="adamw_decay", learning_rate=0.1, regularization_coeff=0.5,
                           warmup_proportion=0.0), model, 10, 1)
    params = {"conv.w": conv.weight, "fc.w": model.head.fc.weight, "conv.b": conv.bias, "bn.w": bn.weight,
              "bn.b": bn.bias, "fc.b": model.head.fc.bias}
    before = {k: p.numpy().copy() for k, p in params.items()}
    zero_grad_step(s, model)
    # decoupled decay: w <- w * (1 - lr * coeff) = 0.95 w; with a zero gradient Adam's own update is 0
    for key in ("conv.w", "fc.w"):
        np.testing.assert_allclose(params[key].numpy(), before[key] * 0.95, rtol=1e-5)
    for key in ("conv.b", "bn.w", "bn.b", "fc.b"):
        np.testing.assert_array_equal(params[key].numpy(), before[key])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_default_decays_every_parameter_towards_zero(optimizer):
    model = tiny_model()
    s = build_strategy(cfg(strategy="default", optimizer=optimizer, learning_rate=0.1, regularization_coeff=0.5),
                       model, 10, 1)
    conv = model.backbone.blocks[0][0]
    params = [conv.weight, conv.bias, model.head.fc.weight]
    before = snapshot(params)
    zero_grad_step(s, model)
    for b, p in zip(before, params):
        np.testing.assert_allclose(p.numpy(), b * 0.95, rtol=1e-5, atol=1e-7)


def test_l2sp_pulls_backbone_to_pretrained_and_head_to_zero():
    model = tiny_model()
    s = build_strategy(cfg(strategy="l2sp", learning_rate=0.1, regularization_coeff=0.5), model, 10, 1)
    conv, fc = model.backbone.blocks[0][0], model.head.fc
    w0 = conv.weight.numpy().copy()
    conv.weight.set_value(w0 + 1.0)  # moved away from the pretrained anchor taken at build time
    head_before = fc.weight.numpy().copy()
    zero_grad_step(s, model)
    # gradient of coeff/2 * ||w - w0||^2 is coeff * (w - w0): w <- w - 0.1 * 0.5 * 1.0
    np.testing.assert_allclose(conv.weight.numpy(), w0 + 0.95, rtol=1e-5)
    np.testing.assert_allclose(fc.weight.numpy(), head_before * 0.95, rtol=1e-5)


def test_l2sp_stays_closer_to_pretrained_than_default_at_the_same_coefficient():
    def distance(strategy: str) -> float:
        model = tiny_model(seed=3)
        start = [p.numpy().copy() for p in model.backbone.parameters()]
        s = build_strategy(cfg(strategy=strategy, optimizer="momentum", learning_rate=0.05,
                               regularization_coeff=0.5), model, 20, 1)
        train_steps(s, model, 20)
        return sum(float(((p.numpy() - w) ** 2).sum()) for p, w in zip(model.backbone.parameters(), start))

    l2sp, default = distance("l2sp"), distance("default")
    assert l2sp < 0.5 * default


def test_l2sp_penalty_is_zero_at_build_and_none_without_coefficient():
    model = tiny_model()
    s = build_strategy(cfg(strategy="l2sp", regularization_coeff=0.1), model, 5, 1)
    assert float(s.penalty(model)) == 0.0
    assert build_strategy(cfg(strategy="l2sp"), tiny_model(), 5, 1).penalty(model) is None


# --- ULMFiT: discriminative lr and gradual unfreezing -------------------------------------------------------

def test_ulmfit_gradual_unfreezing_trains_the_head_first_then_one_more_group_per_epoch():
    model = tiny_model()
    groups = model.layer_groups()  # 3 backbone groups + head
    s = build_strategy(cfg(strategy="ulmfit", optimizer="adam", frz_blocks=2), model, 4, 4)
    trained_per_epoch = []
    for epoch in (1, 2, 3):
        s.on_epoch_start(epoch)
        before = [snapshot(g) for g in groups]
        train_steps(s, model, 2, seed=epoch)
        trained_per_epoch.append([any(changed(b, g)) for b, g in zip(before, groups)])
    assert trained_per_epoch == [
        [False, False, False, True],  # epoch 1: head only
        [False, False, True, True],   # epoch 2: + the group below the head
        [True, True, True, True],     # epoch 3 > frz_blocks: everything
    ]


def test_ulmfit_never_unfreezes_parameters_frozen_before_build():
    model = tiny_model()
    for p in model.backbone.parameters():
        p.stop_gradient = True
    s = build_strategy(cfg(strategy="ulmfit", frz_blocks=1), model, 4, 3)
    s.on_epoch_start(3)
    assert all(p.stop_gradient for p in model.backbone.parameters())
    assert not any(p.stop_gradient for p in model.head.parameters())


def test_ulmfit_discriminative_lr_divides_by_factor_per_group_below_the_head():
    model = tiny_model()
    s = build_strategy(cfg(strategy="ulmfit", learning_rate=0.1, factor=2.0, dis_blocks=2, frz_blocks=0,
                           cut_fraction=0.0, ratio=1.0), model, 10, 1)
    lr = s.lr_at(0)
    groups = model.layer_groups()
    weights = [g[0] for g in groups]  # the first conv weight of each group, then the head's fc weight
    x, y = batch()
    model.train()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [w.grad.numpy().copy() for w in weights]
    before = snapshot(weights)
    s.step()
    # depth below the head: 3, 2, 1, 0 → lr / 2**min(depth, 2)
    for w, b, g, mult in zip(weights, before, grads, [0.25, 0.25, 0.5, 1.0]):
        np.testing.assert_allclose(w.numpy(), b - lr * mult * g, rtol=1e-4, atol=1e-7)


# --- every optimizer under every strategy -------------------------------------------------------------------

@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_builds_and_steps(strategy, optimizer):
    model = tiny_model()
    s = build_strategy(cfg(strategy=strategy, optimizer=optimizer, regularization_coeff=1e-3, frz_blocks=0),
                       model, 3, 1)
    before = snapshot(model.head.parameters())
    train_steps(s, model, 2)
    assert all(changed(before, model.head.parameters()))
    assert s.global_step == 2
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())


def test_momentum_optimizer_uses_train_momentum():
    model = tiny_model()
    s = build_strategy(cfg(optimizer="momentum", momentum=0.5), model, 3, 1)
    assert type(s.optimizer).__name__ == "Momentum" and s.optimizer._momentum == 0.5


def test_unknown_strategy_names_the_valid_ones():
    bad = dataclasses.replace(cfg(), strategy="nope")
    with pytest.raises(ValueError, match="train.strategy: unknown value 'nope'; valid: default, adamw_decay"):
        build_strategy(bad, tiny_model(), 1, 1)


def test_every_enum_member_is_implemented_once():
    assert list(STRATEGIES) == list(StrategyName)
    assert list(strategies.OPTIMIZERS) == list(Optimizer)
    assert all(cls.name is member for member, cls in STRATEGIES.items())


@pytest.mark.parametrize("strategy", list(StrategyName))
def test_a_strategy_enum_member_builds_like_its_yaml_spelling(strategy):
    by_member = build_strategy(cfg(strategy=strategy), tiny_model(), 1, 1)
    by_name = build_strategy(cfg(strategy=strategy.value), tiny_model(), 1, 1)
    assert type(by_member) is type(by_name) is STRATEGIES[strategy]


def test_unknown_optimizer_names_the_valid_ones():
    with pytest.raises(ValueError, match="optimizer: unknown name 'nope'; valid: adam, adamw, momentum"):
        build_optimizer("nope", 0.1, [{"params": tiny_model().parameters()}], 0.0, cfg())
