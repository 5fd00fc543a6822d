"""Bundle swaps with real processes: while one process promotes bundles to best_model/ another always reads a whole
one (bundle.json and weights of the same version), and a SIGKILL at any step leaves a bundle `autoft predict` serves
and orphans the next open deletes. Both ways of swapping: Linux's atomic exchange and the two-rename fallback."""
from __future__ import annotations

import ctypes
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoft import _fs as fileio
from autoft.run.bundle import BundleMeta, BundleReplaced, is_bundle, load_bundle, save_bundle

from cli_helpers import image, run

MODES = ["exchange", "fallback"]

# Promotes bundles to RUN/best_model until RUN/stop appears: odd generations saved in place, even ones copied from a
# trial's bundle (how a search promotes its winner). Generation g has metrics {"gen": g} and weights all equal to g.
WRITER = r"""
import sys
from pathlib import Path

import numpy as np

from autoft import _fs as fileio
from autoft.run.bundle import BundleMeta, copy_bundle, save_bundle

run, mode, gen = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if mode == "fallback":
    fileio._renameat2 = None
first = gen
while not (run / "stop").exists():
    meta = BundleMeta(backbone="tiny", num_classes=2, class_names=("a", "b"), image_size=8, mean=(0.0,) * 3,
                      std=(1.0,) * 3, metrics={"gen": gen})
    weights = {"w": np.full(4096, gen, np.float32), "b": np.full(7, gen, np.float32)}
    if gen % 2:
        save_bundle(run / "best_model", weights, meta)
    else:
        copy_bundle(save_bundle(run / "trial" / "bundle", weights, meta), run / "best_model")
    if gen == first:
        (run / "started").touch()
    gen += 1
"""

# Replaces DEST (a real bundle) with the same weights under metrics {"gen": 1} and SIGKILLs itself at POINT.
CRASH = r"""
import dataclasses
import os
import signal
import sys
from pathlib import Path

from autoft import _fs as fileio
from autoft.run import bundle

dest, point = Path(sys.argv[1]), sys.argv[2]


def die(*_):
    os.kill(os.getpid(), signal.SIGKILL)


real_rename, real_exchange = os.rename, fileio._renameat2


def rename(src, dst):
    real_rename(src, dst)
    if point == "fallback-after-first-rename" and Path(dst).name.startswith(f".{dest.name}.old-"):
        die()
    if point == "fallback-after-second-rename" and Path(dst) == dest:
        die()


def exchange(*args):
    done = real_exchange(*args)
    if done == 0:
        die()
    return done


os.rename = rename
if point.startswith("fallback"):
    fileio._renameat2 = None
elif point == "exchange-before-old-deleted":
    fileio._renameat2 = exchange
elif point == "before-swap":
    bundle.swap_dir = die
old = bundle.load_bundle(dest)
bundle.save_bundle(dest, old.weights(), dataclasses.replace(old.meta, metrics={"gen": 1}))
sys.exit(3)
"""


def _python(script: str, *args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _leftovers(run_dir: Path, name: str = "best_model") -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith(f".{name}."))


def _tiny_meta(gen: int) -> BundleMeta:
    return BundleMeta(backbone="tiny", num_classes=2, class_names=("a", "b"), image_size=8, mean=(0.0,) * 3,
                      std=(1.0,) * 3, metrics={"gen": gen})


def _read_whole(best: Path) -> int:
    """The generation in best_model/, asserting bundle.json and the weights belong to the same one."""
    for _ in range(50):
        loaded = load_bundle(best)
        try:
            weights = loaded.weights()
        except BundleReplaced:  # swapped between reading bundle.json and the weights: detected, read again
            continue
        gen = loaded.meta.metrics["gen"]
        assert (weights["w"] == gen).all() and (weights["b"] == gen).all(), (gen, weights["w"][:3])
        return gen
    raise AssertionError(f"{best}: replaced during 50 reads in a row")


def _start_writer(run_dir: Path, mode: str, gen: int) -> subprocess.Popen:
    (run_dir / "started").unlink(missing_ok=True)
    child = _python(WRITER, run_dir, mode, gen)
    deadline = time.monotonic() + 60
    while not (run_dir / "started").exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the writer never swapped a bundle in"
        time.sleep(0.01)
    return child


@pytest.mark.parametrize("mode", MODES)
def test_a_reader_always_finds_a_whole_bundle_while_another_process_swaps(mode: str, tmp_path: Path) -> None:
    save_bundle(tmp_path / "best_model", {"w": np.zeros(4096, np.float32), "b": np.zeros(7, np.float32)},
                _tiny_meta(0))
    writer = _start_writer(tmp_path, mode, 1)
    seen, end = [], time.monotonic() + 3
    try:
        while time.monotonic() < end:
            assert is_bundle(tmp_path / "best_model")
            seen.append(_read_whole(tmp_path / "best_model"))
    finally:
        (tmp_path / "stop").touch()
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert len(set(seen)) >= 3 and seen == sorted(seen), seen[:50]  # the writer moved on; never back to an old one
    _read_whole(tmp_path / "best_model")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_at_random_moments_of_swapping_never_loses_the_bundle(mode: str, tmp_path: Path) -> None:
    save_bundle(tmp_path / "best_model", {"w": np.zeros(4096, np.float32), "b": np.zeros(7, np.float32)},
                _tiny_meta(0))
    rng, last = random.Random(0), 0
    for kill in range(5):
        writer = _start_writer(tmp_path, mode, 1000 * (kill + 1))
        time.sleep(rng.uniform(0, 0.2))
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
        gen = _read_whole(tmp_path / "best_model")  # whatever the kill interrupted, a whole bundle is in place
        assert gen > last
        last = gen
        assert _leftovers(tmp_path) == []  # the dead writer's .tmp-/.old- folders went at that open


CRASH_POINTS = [
    # (point, what the kill leaves beside best_model, whether best_model exists, the generation a reader gets)
    ("fallback-after-first-rename", {"old", "tmp"}, False, None),
    ("fallback-after-second-rename", {"old"}, True, 1),
    ("exchange-before-old-deleted", {"tmp"}, True, 1),
    ("before-swap", {"tmp"}, True, None),
]


@pytest.mark.parametrize("point, left, present, gen", CRASH_POINTS, ids=[c[0] for c in CRASH_POINTS])
def test_a_kill_between_the_steps_of_a_swap_leaves_a_bundle_predict_serves(
        point: str, left: set[str], present: bool, gen: int | None, real_bundle: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    best = run_dir / "best_model"
    shutil.copytree(real_bundle, best)
    child = _python(CRASH, best, point)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    leftovers = _leftovers(run_dir)
    assert {name.split(".")[2].split("-")[0] for name in leftovers} == left, leftovers
    assert all(f"-{child.pid}@" in name for name in leftovers), leftovers  # named after the dead writer
    assert best.exists() == present
    img = image(tmp_path / "x.png")
    out = run("predict", str(run_dir), str(img), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"{img}: ") and out.stdout.count("\n") == 1, out.stdout
    assert _leftovers(run_dir) == []
    assert load_bundle(best).meta.metrics.get("gen") == gen  # the old bundle or the new one, whole


def test_a_crash_state_is_recovered_by_every_way_of_opening(tmp_path: Path) -> None:
    """is_bundle and load_bundle alone (no predict) move `.best_model.old-*` back and delete dead orphans."""
    save_bundle(tmp_path / "best_model", {"w": np.full(4, 7, np.float32), "b": np.zeros(7, np.float32)}, _tiny_meta(7))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid, host = int(dead.stdout), fileio._host_tag()
    os.rename(tmp_path / "best_model", tmp_path / f".best_model.old-{pid}@{host}-0a1b2c3d")
    (tmp_path / f".best_model.tmp-{pid}@{host}-9f8e7d6c").mkdir()
    (tmp_path / f".best_model.tmp-{pid}@{host}-9f8e7d6c" / "model.safetensors").write_bytes(b"half")
    assert is_bundle(tmp_path / "best_model")
    assert _leftovers(tmp_path) == []
    assert load_bundle(tmp_path / "best_model").meta.metrics == {"gen": 7}


def test_orphans_of_live_or_other_hosts_writers_are_kept_until_old(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    save_bundle(tmp_path / "best_model", {"w": np.zeros(4, np.float32)}, _tiny_meta(0))
    mine = tmp_path / f".best_model.tmp-{os.getpid()}@{fileio._host_tag()}-00000000"
    other_host = tmp_path / ".best_model.tmp-1@some_other_node-00000000"
    mine.mkdir()
    other_host.mkdir()
    save_bundle(tmp_path / "best_model", {"w": np.ones(4, np.float32)}, _tiny_meta(1))
    assert is_bundle(tmp_path / "best_model")
    assert _leftovers(tmp_path) == sorted([mine.name, other_host.name])  # a live writer may still be filling them
    monkeypatch.setattr(fileio, "ORPHAN_AGE_S", -1.0)
    assert is_bundle(tmp_path / "best_model")
    assert _leftovers(tmp_path) == []


def test_a_filesystem_without_atomic_exchange_falls_back_to_two_renames(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def no_exchange(*args: object) -> int:  # what renameat2 answers on a filesystem without RENAME_EXCHANGE
        calls.append(args)
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(fileio, "_renameat2", no_exchange)
    for gen in range(3):
        save_bundle(tmp_path / "best_model", {"w": np.full(4096, gen, np.float32), "b": np.zeros(7, np.float32) + gen},
                    _tiny_meta(gen))
    assert len(calls) == 2  # the first save had nothing to exchange with
    assert _read_whole(tmp_path / "best_model") == 2 and _leftovers(tmp_path) == []
    assert (tmp_path / "best_model").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
