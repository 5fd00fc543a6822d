"""The zero-config plan: which backbone, size and mode a budget buys, from measured speeds. The probe's figures
are given here (a Probe is a plain record of seconds per image), so each case says what the plan does with them;
the real probe runs in tests/search/test_zero_config.py."""
from __future__ import annotations

import pytest

from autoft.config import config_from_dict, first_config
from autoft.errors import ConfigError
from autoft.training.autoplan import PORTFOLIO, Probe, auto_name, make_auto_plan

# this machine, one thread: efficientnet_lite0 at 64 px trains ~25 img/s and infers ~700 img/s through the engine
PROBE = Probe(train_seconds=1 / 25, infer_seconds=1 / 700, seconds=5.0)


def _plan(counts: tuple[int, int, int], budget: float, preset: str = "balanced", workers: int = 2,
          native: int | None = None):
    return make_auto_plan(data={"path": "/data/x"}, source="/data/x", counts=counts, budget=budget, preset=preset,
                          probe=PROBE, workers=workers, spent=8.0, native=native)


def test_small_data_is_fine_tuned_and_more_budget_buys_a_larger_model() -> None:
    small = _plan((500, 300, 10), 600)
    assert small.mode == "full" and small.backbone == "efficientnet_lite0"
    longer = _plan((500, 300, 10), 3600)
    assert longer.mode == "full"
    assert PROBE.scale(longer.backbone, longer.image_size) > PROBE.scale(small.backbone, small.image_size)
    fast, best = _plan((500, 300, 10), 600, preset="fast"), _plan((500, 300, 10), 600, preset="best")
    sizes = [PROBE.scale(p.backbone, p.image_size) for p in (fast, small, best)]
    assert sizes == sorted(sizes)  # fast: never a larger model than best
    assert fast.epochs < small.epochs < best.epochs  # fast: more, shorter trials; best: fewer, longer ones


def test_a_large_dataset_in_a_short_budget_searches_the_head_on_cached_features() -> None:
    plan = _plan((48_000, 12_000, 10), 1200)
    assert plan.mode == "head"
    assert plan.feature_seconds <= 0.35 * plan.search_budget
    train = plan.config["train"]
    assert train["freeze_backbone"] is True and train["augment"] is False
    assert "model.head_hidden" in plan.config["space"]


def test_the_plan_is_a_valid_config_whose_first_trials_are_the_portfolio() -> None:
    for counts, budget in (((500, 300, 10), 600), ((48_000, 12_000, 10), 1200), ((900, 100, 3), 300)):
        plan = _plan(counts, budget)
        cfg = config_from_dict(plan.config)  # the enqueued portfolio lies inside the space, or this raises
        assert len(cfg.search.enqueue) == len(PORTFOLIO[plan.mode])
        assert cfg.search.time_budget == pytest.approx(int(plan.search_budget), abs=1)
        assert cfg.search.time_budget <= budget - 8.0  # the probe's time is already spent
        first = first_config(cfg)  # what the --dry-run probe and autoft train would run
        assert first.train.learning_rate == cfg.search.enqueue[0]["learning_rate"]


def test_the_plan_prints_in_a_few_lines() -> None:
    lines = _plan((500, 300, 10), 600).lines()
    assert len(lines) == 4 and lines[0].startswith("plan for /data/x: 500 train / 300 val images, 10 classes")
    assert "trains 25 img/s and infers 700 img/s" in lines[1]
    assert "full fine-tune" in lines[2] and "portfolio configs first" in lines[3]


def test_a_budget_too_short_for_the_data_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"--time-budget 0m40s: too short .* give at least"):
        _plan((48_000, 12_000, 10), 40)
    with pytest.raises(ConfigError, match="--preset: must be one of fast, balanced, best"):
        _plan((500, 300, 10), 600, preset="huge")


@pytest.mark.parametrize("source, name", [("/data/My Flowers", "auto-My-Flowers"), ("/x/pets.csv", "auto-pets"),
                                          ("fashion-mnist", "auto-fashion-mnist"), ("/", "auto")])
def test_run_names_follow_the_run_name_rule(source: str, name: str) -> None:
    assert auto_name(source) == name


def test_small_images_are_not_upscaled_past_four_times_their_size() -> None:
    free = _plan((500, 300, 10), 7200)
    assert free.image_size > 112
    small = _plan((500, 300, 10), 7200, native=28)  # Fashion-MNIST, CIFAR-like sizes
    assert small.image_size <= 112 and small.mode == "full"
    tiny = _plan((48_000, 12_000, 10), 1200, native=12)
    assert tiny.image_size <= 64  # 4 x 12 is under 64: 64 px stays allowed
