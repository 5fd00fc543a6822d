"""The zero-config portfolio, measured and chosen (issue 17): ``python -m benchmarks.portfolio record`` fine-tunes
a pool of candidate configurations on several small datasets built here, and ``python -m benchmarks.portfolio
select`` chooses the few that are good across all of them, greedily (zero-shot HPO, as in Wistuba et al. 2015 and
Auto-sklearn 2.0's portfolios): each step adds the candidate that most raises the mean over datasets of the best
normalised val_acc among those chosen so far. ``autoft/training/autoplan.py`` PORTFOLIO holds what ``select`` prints
(a test checks they agree).

Two matrices, one per plan mode (``benchmarks/data/portfolio-{full,head}.json``):

- ``full``: a full fine-tune of EfficientNet-Lite0 (ImageNet weights) at 48 px for 3 epochs, as the zero-config
  plan's small-data trials run; candidates are the demo table's grid (benchmarks/data/curves-demo.json) restricted to
  what the zero-config space can draw (batch 16, strategy default: 5 learning rates x 2 regularisations x 3
  optimizers). Datasets: the bundled Fashion-MNIST subset (its scores are read from the demo table, not re-run),
  scikit-learn's digits, synthetic shapes, synthetic textures (benchmarks/datasets.py).
- ``head``: a frozen ImageNet trunk at 64 px, features cached, the head trained 12 epochs; candidates are a grid of
  the zero-config head space (3 learning rates x 3 optimizers x hidden 0/1024 x dropout 0.1/0.3, batch 64).
  Datasets: the bundled Fashion-MNIST subset, digits, shapes, textures.

``photos`` (crops of scikit-image's sample photographs) is not used here: it is the held-out data of
``benchmarks/zero_config.py``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
K = 4  # configurations per mode

_FULL_TRAIN = {"epochs": 3, "eval_interval": "epoch", "log_interval": 50, "device": "cpu"}
_HEAD_TRAIN = {"epochs": 12, "freeze_backbone": True, "augment": False, "eval_interval": "epoch",
               "log_interval": 50, "device": "cpu"}

# mode -> dataset -> data section (ImageFolders from benchmarks/datasets.py are named "bench:<name>")
DATASETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "fashion-demo": {"table": "curves-demo.json"},  # read from the demo table
        "digits": {"path": "bench:digits", "image_size": 48, "max_train_per_class": 24, "max_val_per_class": 12},
        "shapes": {"path": "bench:shapes", "image_size": 48, "max_train_per_class": 40, "max_val_per_class": 20},
        "textures": {"path": "bench:textures", "image_size": 48, "max_train_per_class": 40, "max_val_per_class": 20},
    },
    "head": {
        "fashion-demo": {"dataset": "fashion-mnist-demo", "image_size": 64, "max_train_per_class": 60,
                         "max_val_per_class": 30},
        "digits": {"path": "bench:digits", "image_size": 64, "max_train_per_class": 60, "max_val_per_class": 30},
        "shapes": {"path": "bench:shapes", "image_size": 64, "max_train_per_class": 80, "max_val_per_class": 40},
        "textures": {"path": "bench:textures", "image_size": 64, "max_train_per_class": 80,
                     "max_val_per_class": 40},
    },
}


def candidates(mode: str) -> list[dict[str, Any]]:
    """The candidate pool of ``mode``, in a fixed order (a candidate's index is its place here)."""
    if mode == "full":
        from benchmarks.record_curves import TABLES, levels

        space = TABLES["demo"]["space"]
        lrs = levels(space["learning_rate"], TABLES["demo"]["bins"]["learning_rate"])
        regs = levels(space["regularization_coeff"], TABLES["demo"]["bins"]["regularization_coeff"])
        return [{"learning_rate": lr, "regularization_coeff": reg, "batch_size": 16, "optimizer": opt}
                for lr, reg, opt in itertools.product(lrs, regs, ["adam", "adamw", "rmsprop"])]
    return [{"learning_rate": lr, "regularization_coeff": 1e-5, "batch_size": 64, "optimizer": opt,
             "model.head_hidden": hidden, "dropout": dropout}
            for lr, opt, hidden, dropout in itertools.product([1e-3, 3e-3, 1e-2], ["adam", "adamw", "momentum"],
                                                               [0, 1024], [0.1, 0.3])]


def _config(mode: str, dataset: str) -> dict[str, Any]:
    from benchmarks.datasets import build

    data = dict(DATASETS[mode][dataset])
    if str(data.get("path", "")).startswith("bench:"):
        data["path"] = str(build(data["path"].split(":", 1)[1]))
    return {"name": f"portfolio-{mode}-{dataset}", "data": data,
            "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
            "train": dict(_FULL_TRAIN if mode == "full" else _HEAD_TRAIN)}


_STATE: dict[tuple[str, str], Any] = {}


def _fit(task: tuple[str, str, int, dict[str, Any]]) -> dict[str, Any]:
    from autoft.config import apply_params, config_from_dict
    from autoft.data import load_for_config
    from benchmarks.record_curves import fine_tune

    mode, dataset, index, params = task
    if (mode, dataset) not in _STATE:
        cfg = config_from_dict(_config(mode, dataset))
        _STATE[(mode, dataset)] = (cfg, load_for_config(cfg))
    cfg, data = _STATE[(mode, dataset)]
    started = time.perf_counter()
    rows, error = fine_tune(apply_params(cfg, params), data)
    return {"dataset": dataset, "index": index, "params": params,
            "val_acc": [round(float(r["val_acc"]), 5) for r in rows], "error": error,
            "wall": round(time.perf_counter() - started, 2)}


def _matrix_path(mode: str) -> Path:
    return DATA / f"portfolio-{mode}.json"


def _from_demo_table(pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = json.loads((DATA / "curves-demo.json").read_text())
    rows = []
    for index, params in enumerate(pool):
        match = [r for r in table["configs"] if r["params"] == {**params, "strategy": "default"}]
        if not match:
            raise SystemExit(f"curves-demo.json has no row for {params}")
        rows.append({"dataset": "fashion-demo", "index": index, "params": params, "val_acc": match[0]["val_acc"],
                     "error": match[0]["error"], "wall": match[0]["wall"]})
    return rows


def record(mode: str, workers: int) -> Path:
    """Fine-tune every candidate of ``mode`` on every dataset not recorded yet; the matrix is rewritten after each
    fit, so a stopped recording continues where it was."""
    from autoft._fs import atomic_write_text
    from benchmarks import machine

    pool = candidates(mode)
    out = _matrix_path(mode)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if out.is_file():
        old = json.loads(out.read_text())
        if old["candidates"] == pool:
            done = {(r["dataset"], r["index"]): r for r in old["rows"]}
    for dataset, spec in DATASETS[mode].items():
        if "table" in spec and not any(d == dataset for d, _ in done):
            done.update({(r["dataset"], r["index"]): r for r in _from_demo_table(pool)})
    todo = [(mode, d, i, p) for d, spec in DATASETS[mode].items() if "table" not in spec
            for i, p in enumerate(pool) if (d, i) not in done]
    print(f"portfolio {mode}: {len(pool)} candidates x {len(DATASETS[mode])} datasets, {len(todo)} fits to run",
          flush=True)

    def write() -> None:
        doc = {"mode": mode, "candidates": pool, "k": K,
               "datasets": {d: {k: v for k, v in s.items()} for d, s in DATASETS[mode].items()},
               "train": _FULL_TRAIN if mode == "full" else _HEAD_TRAIN,
               "made": {"by": f"python -m benchmarks.portfolio record {mode}", "workers": workers,
                        "date": time.strftime("%Y-%m-%d"), "machine": machine()},
               "rows": [done[key] for key in sorted(done)]}
        DATA.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(doc, separators=(",", ":")) + "\n")

    write()
    if todo:
        from benchmarks.datasets import build

        for spec in DATASETS[mode].values():  # built here, once, before the workers read them
            if str(spec.get("path", "")).startswith("bench:"):
                build(spec["path"].split(":", 1)[1])
        started = time.time()
        # one dataset after another, so a worker builds each dataset's cache and model once
        from benchmarks.record_curves import worker_threads

        with multiprocessing.get_context("spawn").Pool(workers, initializer=worker_threads) as workers_pool:
            for k, row in enumerate(workers_pool.imap_unordered(_fit, todo), 1):
                done[(row["dataset"], row["index"])] = row
                write()
                left = (time.time() - started) / k * (len(todo) - k)
                print(f"  [{k}/{len(todo)}] {row['dataset']} #{row['index']} val_acc {row['val_acc']} "
                      f"{row['wall']:.0f}s (about {left / 60:.0f} min left)", flush=True)
    return out


def final_accuracies(matrix: dict[str, Any]) -> dict[str, list[float]]:
    """dataset -> each candidate's final val_acc there (a failed fit: 0)."""
    raw: dict[str, list[float]] = {d: [0.0] * len(matrix["candidates"]) for d in matrix["datasets"]}
    for row in matrix["rows"]:
        raw[row["dataset"]][row["index"]] = float(row["val_acc"][-1]) if row["val_acc"] and not row["error"] else 0.0
    return raw


def scores(matrix: dict[str, Any]) -> dict[str, list[float]]:
    """dataset -> each candidate's final val_acc scaled to [0, 1] within that dataset (a failed fit scores 0)."""
    out = {}
    for dataset, accs in final_accuracies(matrix).items():
        low, high = min(accs), max(accs)
        out[dataset] = [(a - low) / (high - low) if high > low else 1.0 for a in accs]
    return out


def greedy(norm: dict[str, list[float]], k: int) -> list[int]:
    """Indices of ``k`` candidates, each step the one that most raises mean_d max_{chosen} norm[d][c] (ties: the
    higher mean score, then the lower index)."""
    n = len(next(iter(norm.values())))
    chosen: list[int] = []
    best = {d: 0.0 for d in norm}
    for _ in range(min(k, n)):
        def value(c: int) -> tuple[float, float, int]:
            return (statistics.fmean(max(best[d], norm[d][c]) for d in norm),
                    statistics.fmean(norm[d][c] for d in norm), -c)
        pick = max((c for c in range(n) if c not in chosen), key=value)
        chosen.append(pick)
        best = {d: max(best[d], norm[d][pick]) for d in norm}
    return chosen


def select(matrix: dict[str, Any], k: int | None = None) -> list[dict[str, Any]]:
    """The portfolio: the greedy choice's configurations, in the order chosen."""
    pool = matrix["candidates"]
    return [dict(pool[i]) for i in greedy(scores(matrix), k or matrix["k"])]


def leave_one_out(matrix: dict[str, Any], k: int | None = None) -> dict[str, dict[str, float]]:
    """For each dataset, a portfolio chosen on the others: its best raw val_acc there, against the best candidate
    there (the oracle), the median candidate, and the single configuration that is best on average elsewhere."""
    k = k or matrix["k"]
    norm, raw = scores(matrix), final_accuracies(matrix)
    out = {}
    for held in norm:
        others = {d: v for d, v in norm.items() if d != held}
        chosen = greedy(others, k)
        single = greedy(others, 1)[0]
        out[held] = {"portfolio_best": max(raw[held][c] for c in chosen), "oracle": max(raw[held]),
                     "median_candidate": statistics.median(raw[held]), "best_single_default": raw[held][single],
                     "portfolio": chosen}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portfolio", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="fine-tune the candidates on the datasets (resumes)")
    rec.add_argument("modes", nargs="*", help="full and/or head (default: both)")
    rec.add_argument("--workers", type=int, default=2)
    sel = sub.add_parser("select", help="print the portfolio each matrix gives, and its leave-one-dataset-out check")
    sel.add_argument("modes", nargs="*", help="full and/or head (default: both)")
    args = parser.parse_args(argv)
    args.modes = args.modes or ["full", "head"]
    if set(args.modes) - set(DATASETS):
        parser.error(f"modes: full or head, got {' '.join(args.modes)}")
    if args.command == "record":
        for mode in args.modes:
            record(mode, args.workers)
        return 0
    from autoft._fs import atomic_write_text

    result: dict[str, Any] = {}
    for mode in args.modes:
        matrix = json.loads(_matrix_path(mode).read_text())
        chosen = select(matrix)
        loo = leave_one_out(matrix)
        result[mode] = {"portfolio": chosen, "leave_one_dataset_out": loo}
        print(f"portfolio {mode}:")
        for params in chosen:
            print(f"  {params}")
        for dataset, r in loo.items():
            print(f"  held out {dataset}: portfolio of {matrix['k']} chosen on the others reaches "
                  f"{r['portfolio_best']:.3f} (best candidate {r['oracle']:.3f}, median {r['median_candidate']:.3f}, "
                  f"best single default {r['best_single_default']:.3f})")
    out = Path(__file__).resolve().parent / "results" / "portfolio.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"portfolio: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
