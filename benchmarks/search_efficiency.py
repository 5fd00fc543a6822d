"""2. Search efficiency: Σ trial busy seconds / (workers × Tuner wall seconds) for a 2-worker search.

Busy = each trial's time in ``fit`` up to its last evaluation (trial.json history ``seconds``). Wall = from when
trials can start (after ``ray.init``) to the last trial's end, as the live display sees it. What the ratio misses
is the per-trial overhead (actor start, paddle import, data memory-map, model build outside fit) and the tail
(one worker idle while the last trial runs). The search's fixed costs (data check, ray.init/shutdown,
leaderboard, report) are reported apart.
"""
from __future__ import annotations

import tempfile
import time

from benchmarks import Goal, Recorder, quiet

WORKERS, TRIALS, EPOCHS = 2, 4, 2


def main() -> None:
    quiet()
    from autoft.config import config_from_dict
    from autoft.run.records import read_trials
    from autoft.search.run import search

    rec = Recorder("search_efficiency", Goal("busy trial seconds / (workers × wall seconds)", ">=", 0.90))
    cfg = config_from_dict({
        "name": "bench-efficiency",
        "data": {"dataset": "fashion-mnist-demo", "image_size": 32, "max_train_per_class": 20,
                 "max_val_per_class": 20},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": EPOCHS, "batch_size": 32, "log_interval": 10},
        "search": {"trials": TRIALS, "max_concurrent": WORKERS, "scheduler": "fifo", "seed": 0,
                   "resources_per_trial": {"cpu": 1, "gpu": 0}},
        "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                  "optimizer": {"type": "categorical", "choices": ["adam", "momentum"]}},
    })
    snapshots = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcome = search(cfg, results_dir=tmp, name="eff", on_progress=snapshots.append)
        total = time.perf_counter() - started
        records = read_trials(outcome.run_dir)
    wall = max(s.elapsed for s in snapshots)
    busy = [r.history[-1]["seconds"] for r in records if r.history]
    driver_seen = [r.seconds for r in records]
    value = sum(busy) / (WORKERS * wall)
    rec.finish(value, f"{len(busy)} trials busy {sum(busy):.1f}s on {WORKERS} workers over {wall:.1f}s = {value:.3f}"
               f" (whole search {total:.1f}s)",
               {"workers": WORKERS, "trials": TRIALS, "epochs": EPOCHS, "busy_seconds": [round(b, 2) for b in busy],
                "driver_trial_seconds": [round(s, 2) for s in driver_seen], "tuner_wall_s": round(wall, 2),
                "search_wall_s": round(total, 2), "fixed_costs_s": round(total - wall, 2),
                "per_trial_overhead_s": round((sum(driver_seen) - sum(busy)) / max(1, len(busy)), 2),
                "statuses": [r.status.value for r in records]},
               notes="fixed_costs_s = data check + ray.init + ray.shutdown + leaderboard + report, outside the "
                     "Tuner; per_trial_overhead_s = trial seconds the driver saw minus the time in fit")


if __name__ == "__main__":
    main()
