"""8. A trial's validation pass through Paddle's inference engine vs the dynamic graph: efficientnet_lite0 at 32 px,
4,000 validation images, batch 64 (the engine runs its own batches, ``engine_batch``), one thread. The engine side
is the trainer's real evaluator (``train.eval_engine: inference``): it saves the current weights and builds the engine at *every* evaluation, and
that cost is inside its time; the program is traced once per trial, at its first evaluation (the warm-up round
here), so ``first_pass_s`` and ``per_trial_ratio`` (a trial of EVALS evaluations, the trace included) are recorded
beside the per-evaluation figure. The baseline is the dygraph ``evaluate`` every trial used before. Interleaved
A B A B."""
from __future__ import annotations

import os
import time

os.environ["OMP_NUM_THREADS"] = "1"  # before paddle loads: one thread on both sides

import numpy as np  # noqa: E402

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet  # noqa: E402

MODEL, SIZE, N_VAL, BATCH, CLASSES, REPEATS, EVALS = "efficientnet_lite0", 32, 4000, 64, 10, 3, 3


def main() -> None:
    quiet()
    import paddle

    from autoft.backbones.factory import create
    from autoft.data import Split
    from autoft.training.evaluation import EngineForward, StaticTwin, engine_batch, make_evaluator
    from autoft.training.loop import evaluate

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(1)
    rec = Recorder("eval_throughput", Goal("validation pass, engine (export included) / dygraph, images per second",
                                           ">=", 20))
    rng = np.random.default_rng(0)
    val = Split(rng.integers(0, 256, (N_VAL, SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, CLASSES, N_VAL))
    paddle.seed(0)
    model = create(MODEL, CLASSES, "none")
    mean, std = tuple(model.spec.mean), tuple(model.spec.std)
    engine = make_evaluator("inference", SIZE)
    seen: dict[str, dict[str, float]] = {}
    passes: list[float] = []

    def run_engine() -> float:
        start = time.perf_counter()
        seen["engine"] = engine(model, val, mean, std, BATCH)
        passes.append(time.perf_counter() - start)
        return N_VAL / passes[-1]

    def run_dygraph() -> float:
        start = time.perf_counter()
        seen["dygraph"] = evaluate(model, val, mean, std, BATCH)
        return N_VAL / (time.perf_counter() - start)

    speeds = interleave({"engine": run_engine, "dygraph": run_dygraph}, REPEATS)
    start = time.perf_counter()
    EngineForward(model, mean, std, SIZE).close()
    fresh = time.perf_counter() - start
    twin = StaticTwin(model, SIZE)
    EngineForward(model, mean, std, SIZE, twin=twin).close()  # traced here
    start = time.perf_counter()
    EngineForward(model, mean, std, SIZE, twin=twin).close()
    refresh = time.perf_counter() - start
    a, b = median(speeds["engine"]), median(speeds["dygraph"])
    ratio = paired_ratio(speeds["engine"], speeds["dygraph"])
    first, steady = passes[0], N_VAL / a
    per_trial = (EVALS * N_VAL / (first + (EVALS - 1) * steady)) / b
    gap = abs(seen["engine"]["val_loss"] - seen["dygraph"]["val_loss"])
    rec.finish(ratio, f"engine {a:.0f} img/s (weights saved + engine built at every evaluation, {refresh:.2f}s) vs "
                      f"dygraph {b:.0f} img/s: {ratio:.1f}x; a trial of {EVALS} evaluations with its first trace "
                      f"({first:.2f}s first pass): {per_trial:.1f}x; val_loss differs by {gap:.1e}",
               {"engine_img_s": [round(v, 1) for v in speeds["engine"]],
                "dygraph_img_s": [round(v, 1) for v in speeds["dygraph"]], "median_engine_img_s": round(a, 1),
                "median_dygraph_img_s": round(b, 1), "refresh_s": round(refresh, 2),
                "fresh_export_and_build_s": round(fresh, 2), "engine_batch": engine_batch(SIZE),
                "first_pass_s": round(first, 2), "evaluations_per_trial": EVALS, "per_trial_ratio": round(per_trial, 2),
                "val_loss_engine": seen["engine"]["val_loss"], "val_loss_dygraph": seen["dygraph"]["val_loss"],
                "val_acc_engine": seen["engine"]["val_acc"], "val_acc_dygraph": seen["dygraph"]["val_acc"],
                "model": MODEL, "image_size": SIZE, "val_images": N_VAL, "batch_size": BATCH, "repeats": REPEATS,
                "paddle_threads": 1})


if __name__ == "__main__":
    main()
