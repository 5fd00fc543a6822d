"""8. A trial's validation pass through Paddle's inference engine vs the dynamic graph: efficientnet_lite0 at 32 px,
4,000 validation images, batch 64, one thread. The engine side is the trainer's real evaluator
(``train.eval_engine: inference``): it exports the current weights and builds the engine at *every* evaluation, and
that cost is inside its time. The baseline is the dygraph ``evaluate`` every trial used before. Interleaved A B A B."""
from __future__ import annotations

import os
import time

os.environ["OMP_NUM_THREADS"] = "1"  # before paddle loads: one thread on both sides

import numpy as np  # noqa: E402

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet  # noqa: E402

MODEL, SIZE, N_VAL, BATCH, CLASSES, REPEATS = "efficientnet_lite0", 32, 4000, 64, 10, 3


def main() -> None:
    quiet()
    import paddle

    from autoft.backbones.factory import create
    from autoft.data import Split
    from autoft.training.evaluation import EngineForward, make_evaluator
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

    def run_engine() -> float:
        start = time.perf_counter()
        seen["engine"] = engine(model, val, mean, std, BATCH)
        return N_VAL / (time.perf_counter() - start)

    def run_dygraph() -> float:
        start = time.perf_counter()
        seen["dygraph"] = evaluate(model, val, mean, std, BATCH)
        return N_VAL / (time.perf_counter() - start)

    speeds = interleave({"engine": run_engine, "dygraph": run_dygraph}, REPEATS)
    start = time.perf_counter()
    EngineForward(model, mean, std, SIZE).close()
    build = time.perf_counter() - start
    a, b = median(speeds["engine"]), median(speeds["dygraph"])
    ratio = paired_ratio(speeds["engine"], speeds["dygraph"])
    gap = abs(seen["engine"]["val_loss"] - seen["dygraph"]["val_loss"])
    rec.finish(ratio, f"engine {a:.0f} img/s (export + build {build:.1f}s per evaluation included) vs dygraph "
                      f"{b:.0f} img/s: {ratio:.1f}x; val_loss differs by {gap:.1e}",
               {"engine_img_s": [round(v, 1) for v in speeds["engine"]],
                "dygraph_img_s": [round(v, 1) for v in speeds["dygraph"]], "median_engine_img_s": round(a, 1),
                "median_dygraph_img_s": round(b, 1), "export_and_build_s": round(build, 2),
                "val_loss_engine": seen["engine"]["val_loss"], "val_loss_dygraph": seen["dygraph"]["val_loss"],
                "val_acc_engine": seen["engine"]["val_acc"], "val_acc_dygraph": seen["dygraph"]["val_acc"],
                "model": MODEL, "image_size": SIZE, "val_images": N_VAL, "batch_size": BATCH, "repeats": REPEATS,
                "paddle_threads": 1})


if __name__ == "__main__":
    main()
