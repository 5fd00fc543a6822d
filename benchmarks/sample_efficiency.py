"""6. Sample efficiency: the epochs TPE + ASHA needs to reach the best val_acc that random search without early
stopping reaches with its whole budget (trials × epochs), over 3 seeds; the figure is the median of the ratios.

Head-only trials (efficientnet_lite0 ImageNet features, cached) on the bundled Fashion-MNIST subset at 32 px keep
it to a few minutes; a trial's hyperparameters still decide its accuracy. TPE + ASHA runs the same number of
trials; its evaluations are ordered by when they happened, and its epochs are counted until one reaches the target.
"""
from __future__ import annotations

import tempfile

from benchmarks import Goal, Recorder, median, quiet

SEEDS, TRIALS, EPOCHS = (0, 1, 2), 10, 6


def _config(seed: int, sampler: str, scheduler: str):
    from autoft.config import config_from_dict

    return config_from_dict({
        "name": f"sample-{sampler}-{seed}",
        "data": {"dataset": "fashion-mnist-demo", "image_size": 32, "max_train_per_class": 40,
                 "max_val_per_class": 20},
        "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
        "train": {"epochs": EPOCHS, "freeze_backbone": True, "augment": False},
        "search": {"trials": TRIALS, "sampler": sampler, "scheduler": scheduler, "max_concurrent": 2, "seed": seed,
                   "grace_period": 1, "reduction_factor": 2},
        "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
                  "regularization_coeff": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
                  "optimizer": {"type": "categorical", "choices": ["adam", "momentum", "sgd", "rmsprop"]},
                  "batch_size": {"type": "categorical", "choices": [16, 32, 64]}},
    })


def _evaluations(run_dir):
    """(time, val_acc) of every evaluation of the run, in the order they happened."""
    from autoft.run.records import read_trials

    return sorted((r.started + h["seconds"], h["val_acc"]) for r in read_trials(run_dir) for h in r.history)


def main() -> None:
    quiet()
    import ray

    from autoft.search.run import search

    rec = Recorder("sample_efficiency", Goal("TPE+ASHA epochs to reach random's best / random's epochs", "<=", 1 / 3))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    per_seed = []
    try:
        for seed in SEEDS:
            with tempfile.TemporaryDirectory() as tmp:
                rand = _evaluations(search(_config(seed, "random", "fifo"), results_dir=tmp, name="r").run_dir)
                tpe = _evaluations(search(_config(seed, "tpe", "asha"), results_dir=tmp, name="t").run_dir)
            target = max(acc for _, acc in rand)
            needed = next((i + 1 for i, (_, acc) in enumerate(tpe) if acc >= target), None)
            per_seed.append({"seed": seed, "random_best": target, "random_epochs": len(rand),
                             "tpe_asha_best": max(acc for _, acc in tpe), "tpe_asha_epochs": len(tpe),
                             "tpe_asha_epochs_to_target": needed,
                             "ratio": (needed if needed is not None else float("inf")) / len(rand)})
    finally:
        ray.shutdown()
    value = median([s["ratio"] for s in per_seed])
    shown = ", ".join(f"seed {s['seed']}: {s['tpe_asha_epochs_to_target'] or 'not reached'}/{s['random_epochs']}"
                      for s in per_seed)
    rec.finish(value, f"median {value:.3f} of epochs to random's best ({shown})", {"seeds": per_seed,
               "trials": TRIALS, "epochs": EPOCHS},
               notes="ratio = TPE+ASHA epochs until an evaluation >= random search's best / random search's epochs; "
                     "inf when TPE+ASHA never reached it")


if __name__ == "__main__":
    main()
