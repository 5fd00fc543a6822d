"""Record learning curves once, for the replay benchmark (benchmarks.replay): every configuration of a discretised
search space is fine-tuned for the full number of epochs with autoft's own ``fit`` (the trainer a trial runs), and
each epoch's val_acc, val_loss and seconds since the trial started are kept in ``benchmarks/data/curves-<table>.json``.

``python -m benchmarks.record_curves demo`` (the bundled Fashion-MNIST subset, the demo's space plus strategy, the
demo's 3 epochs) and ``python -m benchmarks.record_curves fashion-mnist-head`` (a second table: other
Fashion-MNIST images, from Debian's dataset-fashion-mnist, a frozen trunk and a trained head for 6 epochs) and
``python -m benchmarks.record_curves demo-cost`` (configurations that differ in cost: Lite0 or Lite1 at 48 or 80 px,
so the replay can score ASHA's rungs in compute against rungs in epochs). Two worker processes, one thread each, as the demo search
runs two trials at once. The table is rewritten (atomically) after each configuration, so a stopped recording
continues where it was (``--fresh`` starts again); until every configuration is in, it holds a uniform random sample
of the grid (``recorded`` < ``grid_size``) and the replay takes a sampled point's nearest recorded configuration.

The space is discretised so that every point a sampler can ask for has been recorded: each log-scaled float range is
cut into equal bins (in log space) and trained at each bin's centre; categorical choices are recorded as they are.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

STRATEGIES = ["default", "adamw_decay", "ulmfit", "l2sp"]

# table → (config of the fine-tune, the space as autoft reads it, bins per float)
TABLES: dict[str, dict[str, Any]] = {
    "demo": {
        "title": "the demo search: bundled Fashion-MNIST subset (500 train / 300 val), efficientnet_lite0 at 48 px",
        "config": {"name": "record-demo",
                   "data": {"dataset": "fashion-mnist-demo", "image_size": 48, "max_train_per_class": 50,
                            "max_val_per_class": 30},
                   "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
                   "train": {"epochs": 3, "eval_interval": "epoch", "log_interval": 10, "device": "cpu"}},
        "space": {"learning_rate": {"type": "float", "low": 5.0e-4, "high": 5.0e-3, "log": True},
                  "regularization_coeff": {"type": "float", "low": 1.0e-6, "high": 1.0e-3, "log": True},
                  "batch_size": {"type": "categorical", "choices": [8, 16]},
                  "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "rmsprop"]},
                  "strategy": {"type": "categorical", "choices": STRATEGIES}},
        "bins": {"learning_rate": 5, "regularization_coeff": 2},
        "notes": "recorded in two sittings: 97 rows on 2026-12-02 (an Intel Xeon 2-core VM, depthwise native, median "
                 "epoch 50-52 s) and 143 on 2026-12-04 (an AMD EPYC 2-core VM, depthwise grouped, median epoch 21-25 "
                 "s); made.machine is the last sitting's. Epoch counts compare across rows; seconds only within a "
                 "sitting.",
    },
    "demo-cost": {
        "title": "configurations that differ in cost: the bundled Fashion-MNIST subset (200 train / 200 val), "
                 "efficientnet_lite0 or lite1 at 48 or 80 px (an epoch costs 1 to 3.75 of the cheapest), the "
                 "learning rate and optimizer searched",
        "config": {"name": "record-demo-cost",
                   "data": {"dataset": "fashion-mnist-demo", "image_size": 48, "max_train_per_class": 20,
                            "max_val_per_class": 20},
                   "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
                   "train": {"epochs": 3, "batch_size": 16, "eval_interval": "epoch", "log_interval": 10,
                             "device": "cpu"}},
        "space": {"model.backbone": {"type": "categorical",
                                     "choices": ["efficientnet_lite0", "efficientnet_lite1"]},
                  "data.image_size": {"type": "categorical", "choices": [48, 80]},
                  "learning_rate": {"type": "float", "low": 5.0e-4, "high": 5.0e-3, "log": True},
                  "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}},
        "bins": {"learning_rate": 3},
    },
    "fashion-mnist-head": {
        "title": "a second table: other Fashion-MNIST images (Debian's dataset-fashion-mnist, 600 train / 400 val, "
                 "its own train/val split), efficientnet_lite0's frozen ImageNet trunk at 64 px (features cached) and a "
                 "trained head, as search_spaces/fashion-mnist.yaml searches",
        "config": {"name": "record-fashion-mnist-head",
                   "data": {"dataset": "fashion-mnist", "image_size": 64, "max_train_per_class": 60,
                            "max_val_per_class": 40},
                   "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
                   "train": {"epochs": 6, "freeze_backbone": True, "augment": False, "eval_interval": "epoch",
                             "log_interval": 10, "device": "cpu"}},
        "space": {"learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
                  "regularization_coeff": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
                  "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
                  "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "rmsprop", "momentum", "sgd"]}},
        "bins": {"learning_rate": 8, "regularization_coeff": 3},
    },
}


def levels(spec: dict[str, Any], bins: int | None) -> list[Any]:
    """The recorded values of one parameter: a float range's bin centres, a categorical's choices."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    low, high = spec["low"], spec["high"]
    if spec.get("log"):
        lo, hi = math.log(low), math.log(high)
        return [float(f"{math.exp(lo + (hi - lo) * (i + 0.5) / bins):.6g}") for i in range(bins)]
    return [float(f"{low + (high - low) * (i + 0.5) / bins:.6g}") for i in range(bins)]


def grid(table: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(table["space"])
    values = [levels(table["space"][n], table["bins"].get(n)) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


_STATE: dict[str, Any] = {}


def worker_threads() -> None:
    """A worker process's start: one thread, as a trial with one CPU trains; Paddle leaves signals alone."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import paddle

    paddle.disable_signal_handler()
    paddle.base.core.set_num_threads(1)


def fine_tune(cfg: Any, data: Any) -> tuple[list[dict[str, Any]], str | None]:
    """``cfg`` fine-tuned on ``data`` with autoft's own ``fit`` (the trainer a trial runs): its per-epoch reports, and
    the error line of a fit that failed (a diverged configuration is a result too: a real search records it as
    failed), else None."""
    import warnings

    from autoft.training.fit import fit

    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit(cfg, data, report=rows.append)
        except Exception as exc:
            return rows, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    return rows, None


def _start_worker(table_name: str) -> None:
    worker_threads()
    from autoft.config import config_from_dict
    from autoft.data import load_for_config

    raw = dict(TABLES[table_name]["config"], space=TABLES[table_name]["space"])
    cfg = config_from_dict(raw)
    _STATE.update(cfg=cfg, data=load_for_config(cfg, every_size=True))


def _record(item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    from autoft.config import apply_params
    from autoft.data import load_for_config
    from autoft.training.depthwise import resolve

    index, params = item
    started = time.perf_counter()
    cfg = apply_params(_STATE["cfg"], params)
    # a searched image size trains on its own cache entry (made by the worker's start, every size in one pass)
    data = _STATE["data"] if cfg.data.image_size == _STATE["cfg"].data.image_size else load_for_config(cfg)
    rows, error = fine_tune(cfg, data)
    train = _STATE["cfg"].train
    return {"index": index, "params": params, "depthwise": resolve(train.depthwise, train.device),
            "val_acc": [round(float(r["val_acc"]), 5) for r in rows],
            "val_loss": [round(float(r["val_loss"]), 5) for r in rows],
            "seconds": [round(float(r["seconds"]), 2) for r in rows], "error": error,
            "wall": round(time.perf_counter() - started, 2)}


def record(table_name: str, workers: int, fresh: bool, limit: int | None = None) -> Path:
    """Record the configurations of ``table_name`` not in its table yet, in a fixed shuffled order (so a table
    recorded in part is a uniform random sample of the grid), rewriting the table after each one."""
    import random

    table = TABLES[table_name]
    configs = grid(table)
    out = DATA / f"curves-{table_name}.json"
    done: dict[int, dict[str, Any]] = {}
    spent = 0.0
    if out.is_file() and not fresh:
        old = json.loads(out.read_text())
        if old["space"] != table["space"] or old["config"] != table["config"]:
            raise SystemExit(f"{out}: recorded for another space or config; --fresh starts again")
        done = {row["index"]: row for row in old["configs"]}
        for row in done.values():  # rows recorded before train.depthwise existed trained with Paddle's kernel
            row.setdefault("depthwise", "native")
        spent = old["made"]["wall_seconds"]
    order = list(range(len(configs)))
    random.Random(0).shuffle(order)
    todo = [(i, configs[i]) for i in order if i not in done][:limit]
    print(f"{table_name}: {len(configs)} configurations, {len(done)} recorded, {len(todo)} to record", flush=True)
    if not todo:
        return out
    started = time.time()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_start_worker, initargs=(table_name,)) as pool:
        for k, row in enumerate(pool.imap_unordered(_record, todo), 1):
            done[row["index"]] = row
            _write(out, table_name, configs, done, workers, spent + time.time() - started)
            left = (time.time() - started) / k * (len(todo) - k)
            print(f"  [{len(done)}/{len(configs)}] {row['params']} val_acc {row['val_acc']} "
                  f"{row['wall']:.0f}s (about {left / 60:.0f} min left)", flush=True)
    print(f"{table_name}: {len(done)}/{len(configs)} recorded; wrote {out}")
    return out


def _write(out: Path, table_name: str, configs: list[dict[str, Any]], done: dict[int, dict[str, Any]],
           workers: int, wall: float) -> None:
    from autoft._fs import atomic_write_text
    from benchmarks import machine

    table = TABLES[table_name]
    rows = [done[i] for i in sorted(done)]
    doc = {"table": table_name, "title": table["title"], "config": table["config"], "space": table["space"],
           "levels": {n: levels(s, table["bins"].get(n)) for n, s in table["space"].items()},
           "epochs": table["config"]["train"]["epochs"], "grid_size": len(configs), "recorded": len(rows),
           "made": {"by": f"python -m benchmarks.record_curves {table_name}", "workers": workers,
                    "threads_per_worker": 1, "trainer": "autoft.training.fit (the trial's own trainer)",
                    "train_seconds": round(sum(r["wall"] for r in rows), 1), "wall_seconds": round(wall, 1),
                    "date": time.strftime("%Y-%m-%d"), "machine": machine()},
           "fields": {"index": "the configuration's place in the grid (itertools.product of the levels)",
                      "val_acc": "per epoch", "val_loss": "per epoch",
                      "seconds": "per epoch, since the trial's fit started (model build included)",
                      "wall": "the whole fine-tune, seconds",
                      "error": "why the fine-tune failed (a diverged loss), else null",
                      "depthwise": "how depthwise convolutions trained (train.depthwise): native = Paddle's kernel "
                                   "(every row recorded before 2026-12-03), grouped = the CPU default since then; "
                                   "the same function, so val_acc agrees to noise, but seconds depend on it (and on "
                                   "the machine: see notes)"},
           "notes": table.get("notes", ""),
           "configs": rows}
    DATA.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.record_curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="record at most this many more configurations")
    parser.add_argument("--fresh", action="store_true", help="forget a partial recording")
    args = parser.parse_args(argv)
    record(args.table, args.workers, args.fresh, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
