"""Scaling out: one shared decode per search, GPUs and CPU threads per trial, attaching to a running Ray cluster,
and a CLI that starts without the heavy libraries. Real Ray, real Paddle, real SQLite; no GPU needed (Ray is told
it has two)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from autoft.config import config_from_dict
from autoft.data import load_data
from autoft.data.cache import default_cache_dir
from autoft.run.records import read_trials
from autoft.search.run import search

from shapes import make_shapes

ray = pytest.importorskip("ray")
BIN = Path(sys.executable).parent


def shapes_config(shapes: Path, **search: object) -> dict:
    return {
        "name": "scale",
        "data": {"path": str(shapes), "image_size": 32, "val_split": 0.25},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": 1, "batch_size": 8},
        "search": {"trials": 2, "max_concurrent": 2, "scheduler": "fifo", "seed": 0, **search},
        "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    }


@pytest.fixture(scope="module")
def build_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("builds") / "builds.txt"


@pytest.fixture(scope="module")
def local_ray(build_log: Path):
    """One Ray for the module, declaring 2 GPUs on this CPU machine; search() uses it instead of starting one.

    The build log variable is set first: Ray's workers inherit the driver's environment when Ray starts.
    """
    if ray.is_initialized():
        pytest.skip("another Ray is running in this process")
    os.environ["AUTOFT_CACHE_BUILD_LOG"] = str(build_log)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _temp_dir=tempfile.mkdtemp(prefix="autoft-ray-"))
    yield
    ray.shutdown()
    os.environ.pop("AUTOFT_CACHE_BUILD_LOG", None)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own images (seed 21): their data-cache entry is made by this module's first search."""
    return make_shapes(tmp_path_factory.mktemp("scale_shapes"), per_class=20, seed=21)


def builds(log: Path, key: str) -> list[str]:
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line for line in lines if line.split()[0] == key]


def bundle_fingerprint(run: Path, trial_id: str) -> str:
    return json.loads((run / "trials" / trial_id / "bundle" / "bundle.json").read_text())["data_fingerprint"]


@pytest.fixture(scope="module")
def shared_run(local_ray, shapes: Path, build_log: Path, tmp_path_factory: pytest.TempPathFactory):
    outcome = search(config_from_dict(shapes_config(shapes)), results_dir=tmp_path_factory.mktemp("runs"),
                     name="shared")
    key = load_data(dataset=None, path=str(shapes), image_size=32, val_split=0.25).fingerprint
    return outcome.run_dir, key, (default_cache_dir() / key / "meta.json").stat()


def test_concurrent_trials_read_one_cache_entry_decoded_once_by_the_driver(shared_run, build_log: Path) -> None:
    run, key, _ = shared_run
    records = read_trials(run)
    assert len(records) == 2 and all(r.status.finished for r in records), records
    first, second = sorted(records, key=lambda r: r.started)
    assert second.started < first.started + first.seconds, "the two trials did not run at the same time"
    assert [line.split()[1] for line in builds(build_log, key)] == [str(os.getpid())]  # one decode: the driver's
    assert {bundle_fingerprint(run, r.trial_id) for r in records} == {key}
    assert not [p for p in default_cache_dir().iterdir() if key in p.name and p.name != key]  # no stray copy
    assert all(r.extra["cpu_threads"] == 1 and r.extra["gpu_ids"] == [] for r in records)


def test_a_resumed_search_reuses_the_cache_and_threads_follow_cpus(shared_run, build_log: Path) -> None:
    run, key, meta_stat = shared_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["search"]["trials"] = 3  # one more trial on resume
    config["search"]["resources_per_trial"] = {"cpu": 2, "gpu": 0}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = {r.trial_id for r in read_trials(run)}
    search(resume=run)
    new = [r for r in read_trials(run) if r.trial_id not in before]
    assert len(new) == 1 and new[0].status.finished, new
    assert len(builds(build_log, key)) == 1
    assert bundle_fingerprint(run, new[0].trial_id) == key
    after = (default_cache_dir() / key / "meta.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (meta_stat.st_ino, meta_stat.st_mtime_ns)
    assert new[0].extra["cpu_threads"] == 2


def test_trials_under_declared_gpus_each_get_their_own(local_ray, shapes: Path, tmp_path: Path) -> None:
    raw = shapes_config(shapes, max_concurrent="auto", resources_per_trial={"cpu": 1, "gpu": 1})
    outcome = search(config_from_dict(raw), results_dir=tmp_path, name="gpus")
    records = read_trials(outcome.run_dir)
    assert all(r.status.finished for r in records), [r.error for r in records]  # CPU paddle: fell back to CPU
    assert sorted(tuple(r.extra["gpu_ids"]) for r in records) == [("0",), ("1",)]


def test_a_searched_image_size_is_decoded_once_by_the_driver_for_every_size(local_ray, build_log: Path,
                                                                              tmp_path: Path) -> None:
    """data.image_size in the space: the driver fills the cache entry of each size in one pass before the trials
    start, and each trial trains on its size's entry without decoding."""
    images = make_shapes(tmp_path / "sized", per_class=12, seed=22)
    raw = shapes_config(images, enqueue=[{"data.image_size": 24, "learning_rate": 3e-3},
                                         {"data.image_size": 40, "learning_rate": 3e-3}])
    raw["space"]["data.image_size"] = {"type": "categorical", "choices": [24, 40]}
    outcome = search(config_from_dict(raw), results_dir=tmp_path / "runs", name="sizes")
    records = read_trials(outcome.run_dir)
    assert all(r.status.finished for r in records), [r.error for r in records]
    keys = {size: load_data(dataset=None, path=str(images), image_size=size, val_split=0.25).fingerprint
            for size in (24, 32, 40)}  # 32: the config's own size, which the driver loads
    for size, key in keys.items():
        assert [line.split()[1] for line in builds(build_log, key)] == [str(os.getpid())], size
    assert sorted(bundle_fingerprint(outcome.run_dir, r.trial_id) for r in records) == sorted(
        [keys[24], keys[40]])


@pytest.mark.parametrize("code", [
    "from autoft.cli.app import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from autoft.cli.app import main\ntry:\n    main(['search', '--help'])\nexcept SystemExit:\n    pass",
    "from autoft.config import load_config, demo_config_path\nload_config(demo_config_path(), ['train.epochs=1'])",
])
def test_help_and_config_validation_import_no_heavy_library(code: str) -> None:
    probe = code + "\nimport sys\nprint(sorted(m for m in ('paddle', 'ray', 'optuna', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
