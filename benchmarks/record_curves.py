"""Record learning curves once, for the replay benchmark (benchmarks.replay): every configuration of a discretised
search space is fine-tuned for the full number of epochs with autoft's own ``fit`` (the trainer a trial runs), and
each epoch's val_acc, val_loss and seconds since the trial started are kept in ``benchmarks/data/curves-<table>.json``.

``python -m benchmarks.record_curves demo`` (the bundled Fashion-MNIST subset, the demo's space plus strategy, the
demo's 3 epochs) and ``python -m benchmarks.record_curves fashion-mnist-head`` (a second table: other
Fashion-MNIST images, from Debian's dataset-fashion-mnist, a frozen trunk and a trained head for 6 epochs) and
``python -m benchmarks.record_curves demo-cost`` (configurations that differ in cost: Lite0 or Lite1 at 48 or 80 px,
so the replay can score ASHA's rungs in compute against rungs in epochs). Two worker processes, one thread each, as
the demo search runs two trials at once. The table is rewritten (atomically) after each run, so a stopped recording
continues where it was (``--fresh`` starts again); until every configuration is in, it holds a uniform random sample
of the grid (``recorded`` < ``grid_size``) and the replay takes a sampled point's nearest recorded configuration.

The seeded tables (issue 27: ``<dataset>-full``, 8 epochs of a full fine-tune, and ``<dataset>-head``, 24 epochs of
a head on a frozen trunk's cached features, on five datasets) train every configuration once per seed in
``seeds`` (``train.seed``: the data order, augmentation, dropout and the new head's initial weights; the train/val
split is the same for all), so each configuration has a mean and a standard error. A configuration's seeds are
recorded one after the other, so a table recorded in part holds whole configurations (but the one in progress); a
row without a seed (the tables recorded before) is seed 0, and adding a seed to ``seeds`` resumes the table with the
new seed's rows. ``pins`` make the grid conditional: where two combinations are the same fine-tune, one is recorded
(``adamw_decay`` always trains with AdamW, so the optimizer is pinned to adamw there; on a frozen trunk ``l2sp`` is
``default``) and the replay maps a sampled point through the same pins before it looks its row up.

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


SEEDS = [0, 1]
# adamw_decay builds AdamW whatever train.optimizer says: record its combinations once
ADAMW_DECAY_READS_NO_OPTIMIZER = {"when": {"strategy": "adamw_decay"}, "set": {"optimizer": "adamw"}}
# with the trunk frozen, l2sp's pull towards the pretrained weights has no trainable backbone parameter to act on and
# the head gets the plain L2 decay default gives it: the same fine-tune (measured: equal val_loss, bit for bit, for
# adam, adamw and momentum), recorded once, as default; adamw_decay's rows are likewise equal for every optimizer
L2SP_IS_DEFAULT_ON_A_HEAD = {"when": {"strategy": "l2sp"}, "set": {"strategy": "default"}}

FULL_SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    "regularization_coeff": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32]},
    "optimizer": {"type": "categorical", "choices": ["adam", "momentum", "rmsprop"]},
    "strategy": {"type": "categorical", "choices": STRATEGIES}}
# adamw left out: beside adam it differs only in decoupled weight decay, next to nothing at these coefficients
HEAD_SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "regularization_coeff": {"type": "float", "low": 1.0e-7, "high": 1.0e-3, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 128]},
    "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]},
    "strategy": {"type": "categorical", "choices": STRATEGIES},
    "model.head_hidden": {"type": "categorical", "choices": [0, 512]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5}}

# dataset -> (its data section, what it is, mode -> (image size, train images per class, val images per class)); a
# head's epoch costs little, so head tables train and score on more images (less noise) at the features' 64 px
_DATASETS: dict[str, tuple[dict[str, Any], str, dict[str, tuple[int, int, int]]]] = {
    "fashion": ({"dataset": "fashion-mnist-demo"}, "the bundled Fashion-MNIST subset (10 classes, its own val split)",
                {"full": (32, 30, 30), "head": (64, 60, 60)}),
    "digits": ({"path": "bench:digits", "val_split": 0.3}, "scikit-learn's digits (10 classes, 8 px upscaled)",
               {"full": (32, 25, 30), "head": (64, 60, 50)}),
    "shapes": ({"path": "bench:shapes", "val_split": 0.3}, "synthetic shapes (6 classes)",
               {"full": (32, 40, 45), "head": (64, 100, 45)}),
    "textures": ({"path": "bench:textures", "val_split": 0.3}, "synthetic textures (6 classes)",
                 {"full": (32, 40, 45), "head": (64, 100, 45)}),
    "scenes": ({"path": "bench:scenes", "val_split": 0.3}, "patches of 7 sample photographs (datasets.py scenes)",
               {"full": (32, 35, 36), "head": (64, 80, 36)}),
}
_TRAIN = {"eval_interval": "epoch", "log_interval": 50, "device": "cpu"}


def seeded_table(dataset: str, mode: str) -> dict[str, Any]:
    """A seeded table of issue 27: ``mode`` full (8 epochs of a full fine-tune of Lite0 at a small size) or head
    (Lite0's frozen ImageNet trunk at 64 px, its features cached, 24 epochs of the head)."""
    data, what, sizes = _DATASETS[dataset]
    size, train, val = sizes[mode]
    full = mode == "full"
    train_cfg = {"epochs": 8} if full else {"epochs": 24, "freeze_backbone": True, "augment": False}
    return {
        "title": f"{what}, at most {train} train / {val} val images per class, efficientnet_lite0 at {size} px, "
                 + ("a full fine-tune" if full else "a frozen ImageNet trunk (features cached) and a trained head")
                 + f", {len(SEEDS)} seeds per configuration",
        "dataset": dataset, "mode": mode, "seeds": SEEDS,
        "config": {"name": f"record-{dataset}-{mode}",
                   "data": {**data, "image_size": size, "max_train_per_class": train, "max_val_per_class": val},
                   "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
                   "train": {**train_cfg, **_TRAIN}},
        "space": FULL_SPACE if full else HEAD_SPACE,
        "bins": {"learning_rate": 4, "regularization_coeff": 2} if full else
                {"learning_rate": 5, "regularization_coeff": 2, "dropout": 2},
        "pins": [ADAMW_DECAY_READS_NO_OPTIMIZER] if full else [ADAMW_DECAY_READS_NO_OPTIMIZER,
                                                               L2SP_IS_DEFAULT_ON_A_HEAD],
    }


TABLES.update({f"{d}-{m}": seeded_table(d, m) for m in ("head", "full") for d in _DATASETS})


def levels(spec: dict[str, Any], bins: int | None) -> list[Any]:
    """The recorded values of one parameter: a float range's bin centres, a categorical's choices."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    low, high = spec["low"], spec["high"]
    if spec.get("log"):
        lo, hi = math.log(low), math.log(high)
        return [float(f"{math.exp(lo + (hi - lo) * (i + 0.5) / bins):.6g}") for i in range(bins)]
    return [float(f"{low + (high - low) * (i + 0.5) / bins:.6g}") for i in range(bins)]


def pinned(params: dict[str, Any], pins: list[dict[str, Any]]) -> dict[str, Any]:
    """``params`` as recorded: each pin whose ``when`` values all match sets its ``set`` values (a parameter the
    chosen strategy does not read takes the one value it was recorded at)."""
    for pin in pins:
        if all(params.get(k) == v for k, v in pin["when"].items()):
            params = {**params, **pin["set"]}
    return params


def grid(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations to record: the product of the levels, through the table's pins, each once (in the
    product's order)."""
    names = list(table["space"])
    values = [levels(table["space"][n], table["bins"].get(n)) for n in names]
    seen: dict[tuple, dict[str, Any]] = {}
    for combo in itertools.product(*values):
        params = pinned(dict(zip(names, combo)), table.get("pins", []))
        seen.setdefault(tuple(params[n] for n in names), params)
    return list(seen.values())


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


def resolved(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a ``bench:NAME`` data path replaced by the ImageFolder benchmarks/datasets.py builds (on first
    use): the table keeps the name, so it does not depend on where $AUTOFT_HOME is."""
    path = str(config["data"].get("path", ""))
    if not path.startswith("bench:"):
        return config
    from benchmarks.datasets import build

    return {**config, "data": {**config["data"], "path": str(build(path.split(":", 1)[1]))}}


def _start_worker(table: dict[str, Any]) -> None:
    worker_threads()
    from autoft.config import config_from_dict
    from autoft.data import load_for_config

    cfg = config_from_dict(dict(resolved(table["config"]), space=table["space"]))
    _STATE.update(cfg=cfg, data=load_for_config(cfg, every_size=True))


def _record(item: tuple[int, int, dict[str, Any]]) -> dict[str, Any]:
    import dataclasses

    from autoft.config import apply_params
    from autoft.data import load_for_config
    from autoft.training.depthwise import resolve

    index, seed, params = item
    started = time.perf_counter()
    cfg = apply_params(_STATE["cfg"], params)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
    # a searched image size trains on its own cache entry (made by the worker's start, every size in one pass)
    data = _STATE["data"] if cfg.data.image_size == _STATE["cfg"].data.image_size else load_for_config(cfg)
    rows, error = fine_tune(cfg, data)
    train = _STATE["cfg"].train
    return {"index": index, "seed": seed, "params": params, "depthwise": resolve(train.depthwise, train.device),
            "val_acc": [round(float(r["val_acc"]), 5) for r in rows],
            "val_loss": [round(float(r["val_loss"]), 5) for r in rows],
            "seconds": [round(float(r["seconds"]), 2) for r in rows], "error": error,
            "wall": round(time.perf_counter() - started, 2)}


Done = dict[tuple[int, int], dict[str, Any]]  # (configuration's index, seed) -> its row


def _recorded(out: Path, table: dict[str, Any]) -> tuple[Done, float]:
    """The rows already in ``out`` and the wall seconds they took; a row without a seed is seed 0."""
    if not out.is_file():
        return {}, 0.0
    old = json.loads(out.read_text())
    now = {"levels": {n: levels(s, table["bins"].get(n)) for n, s in table["space"].items()}, **table}
    if any(old.get(k, []) != now.get(k, []) for k in ("space", "levels", "config", "pins")):
        raise SystemExit(f"{out}: recorded for another space, levels, config or pins; --fresh starts again")
    done = {}
    for row in old["configs"]:
        row.setdefault("depthwise", "native")  # rows recorded before train.depthwise existed: Paddle's kernel
        done[(row["index"], row.get("seed", 0))] = row
    return done, old["made"]["wall_seconds"]


def record(table_name: str, workers: int, fresh: bool, limit: int | None = None, *,
           table: dict[str, Any] | None = None, out: Path | None = None) -> Path:
    """Record the runs of ``table_name`` (``table``: a table not in TABLES) not in its table (``out``) yet: the
    configurations in a fixed shuffled order (so a table recorded in part is a uniform random sample of the grid),
    each configuration's seeds one after the other, rewriting the table after each run."""
    import random

    table = TABLES[table_name] if table is None else table
    out = DATA / f"curves-{table_name}.json" if out is None else Path(out)
    configs = grid(table)
    done, spent = ({}, 0.0) if fresh else _recorded(out, table)
    order = list(range(len(configs)))
    random.Random(0).shuffle(order)
    seeds = table.get("seeds", [0])
    todo = [(i, s, configs[i]) for i in order for s in seeds if (i, s) not in done][:limit]
    print(f"{table_name}: {len(configs)} configurations x {len(seeds)} seeds, {len(done)} runs recorded, "
          f"{len(todo)} to record", flush=True)
    if not todo:
        return out
    resolved(table["config"])  # a benchmark dataset is built here, once, before the workers read it
    started = time.time()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_start_worker, initargs=(table,)) as pool:
        for k, row in enumerate(pool.imap_unordered(_record, todo), 1):
            done[(row["index"], row["seed"])] = row
            _write(out, table_name, table, configs, done, workers, spent + time.time() - started)
            left = (time.time() - started) / k * (len(todo) - k)
            print(f"  [{len(done)}/{len(configs) * len(seeds)}] {row['params']} seed {row['seed']} val_acc "
                  f"{row['val_acc']} {row['wall']:.0f}s (about {left / 60:.0f} min left)", flush=True)
    print(f"{table_name}: {len(done)}/{len(configs) * len(seeds)} runs recorded; wrote {out}")
    return out


def _write(out: Path, table_name: str, table: dict[str, Any], configs: list[dict[str, Any]], done: Done,
           workers: int, wall: float) -> None:
    from autoft._fs import atomic_write_text
    from benchmarks import machine

    rows = [done[k] for k in sorted(done)]
    seeds = table.get("seeds", [0])
    whole = sum(all((i, s) in done for s in seeds) for i in range(len(configs)))
    doc = {"table": table_name, "title": table["title"], "dataset": table.get("dataset"), "mode": table.get("mode"),
           "config": table["config"], "space": table["space"], "pins": table.get("pins", []), "seeds": seeds,
           "levels": {n: levels(s, table["bins"].get(n)) for n, s in table["space"].items()},
           "epochs": table["config"]["train"]["epochs"], "grid_size": len(configs), "recorded": len(rows),
           "recorded_configs": whole,
           "made": {"by": f"python -m benchmarks.record_curves {table_name}", "workers": workers,
                    "threads_per_worker": 1, "nice": os.nice(0),
                    "trainer": "autoft.training.fit (the trial's own trainer)",
                    "train_seconds": round(sum(r["wall"] for r in rows), 1), "wall_seconds": round(wall, 1),
                    "date": time.strftime("%Y-%m-%d"), "machine": machine()},
           "fields": {"index": "the configuration's place in the grid (itertools.product of the levels, through "
                               "the pins: a pinned combination once)",
                      "seed": "train.seed: data order, augmentation, dropout, the head's initial weights (the "
                              "train/val split is the same for every row); absent: 0",
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
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.record_curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None,
                        help="record at most this many more runs (a configuration with one seed)")
    parser.add_argument("--fresh", action="store_true", help="forget a partial recording")
    args = parser.parse_args(argv)
    record(args.table, args.workers, args.fresh, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
