"""Shared fixtures: an isolated autoft home for the session and a learnable synthetic image task."""
from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

from shapes import make_shapes

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights and data caches for the whole session, away from the real home (Ray workers inherit it)."""
    home = tmp_path_factory.mktemp("autoft_home")
    old = os.environ.get("AUTOFT_HOME")
    os.environ["AUTOFT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("AUTOFT_HOME", None)
    else:
        os.environ["AUTOFT_HOME"] = old


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder: 3 colour classes × 30 coloured shapes, 24×24 PNG."""
    return make_shapes(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def real_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 3-class mobilenet_v3_small bundle at 32 px (untrained: tests that break or swap copies of it need a
    bundle Paddle loads and predicts with, not a good one). Copy it before changing anything."""
    from autoft.backbones import create
    from autoft.run.bundle import BundleMeta, save_bundle
    from autoft.training.checkpoint import model_weights

    model = create("mobilenet_v3_small", 3, "none")
    spec = model.spec
    meta = BundleMeta(backbone=spec.name, num_classes=3, class_names=("blue", "green", "red"), image_size=32,
                      mean=tuple(spec.mean), std=tuple(spec.std))
    return save_bundle(tmp_path_factory.mktemp("real_bundle") / "bundle", model_weights(model), meta)


# ---- native crashes: every thread's Python stack on the terminal -------------------------------------------------
# Importing paddle replaces the faulthandler that pytest arms with Paddle's own fatal-signal handler, whose report
# goes to the captured stderr and dies with the process: a segfault in a test left nothing but "exit 139". Once
# paddle is loaded, its handler is turned off and faulthandler re-armed, on all threads, on the terminal's stderr.
_terminal_stderr: int | None = None
_rearmed = False


def pytest_configure(config: pytest.Config) -> None:
    global _terminal_stderr
    _terminal_stderr = os.dup(2)  # capture is suspended while plugins configure: fd 2 is still the terminal's


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _rearmed
    if _rearmed or _terminal_stderr is None or "paddle" not in sys.modules:
        return
    import paddle

    paddle.disable_signal_handler()
    faulthandler.disable()  # enable() on an enabled faulthandler would keep the sigactions Paddle replaced
    faulthandler.enable(file=_terminal_stderr, all_threads=True)
    _rearmed = True
