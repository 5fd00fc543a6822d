"""1. Trainer step throughput vs a bare Paddle loop: same model (mobilenet_v3_small), batch 16, 64 px, in-memory
uint8 data, same optimizer (Adam + L2 decay). The trainer side is the real ``train_one_epoch`` (batching, NaN check
and loss sync every step, logging, strategy); the bare side is the textbook loop. Epochs are interleaved A B A B."""
from __future__ import annotations

import time

import numpy as np

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet

SIZE, BATCH, STEPS, CLASSES, REPEATS = 64, 16, 6, 10, 10


def main() -> None:
    quiet()
    import paddle
    import paddle.nn.functional as F

    from autoft.config import config_from_dict
    from autoft.data import ImageData, Split, normalize
    from autoft.training.strategies import build_strategy
    from autoft.training.fit import build_model
    from autoft.training.loop import TrainLoop, train_one_epoch

    rec = Recorder("trainer_step", Goal("trainer / bare Paddle loop, images per second", ">=", 0.95))
    rng = np.random.default_rng(0)
    n = BATCH * STEPS
    train = Split(rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, CLASSES, n))
    data = ImageData(tuple(f"c{i}" for i in range(CLASSES)), train, train, None, "bench", "random")
    cfg = config_from_dict({"model": {"backbone": "mobilenet_v3_small", "pretrained": "none"},
                            "train": {"batch_size": BATCH, "augment": False, "learning_rate": 1e-3,
                                      "optimizer": "adam", "regularization_coeff": 1e-4, "epochs": 100}})
    t = cfg.train
    paddle.set_device("cpu")
    paddle.seed(0)
    model = build_model(cfg, CLASSES)
    loop = TrainLoop(cfg=t, model=model, net=model, strategy=build_strategy(t, model, STEPS, t.epochs), data=data,
                     mean=tuple(model.spec.mean), std=tuple(model.spec.std), steps_per_epoch=STEPS,
                     on_eval=lambda *a: None, log=lambda _m: None)
    bare = build_model(cfg, CLASSES)
    bare.set_state_dict(model.state_dict())
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=[p for p in bare.parameters() if not p.stop_gradient],
                                weight_decay=paddle.regularizer.L2Decay(1e-4))
    mean, std = loop.mean, loop.std
    epoch = {"trainer": 0, "bare": 0}

    def run_trainer() -> float:
        epoch["trainer"] += 1
        start = time.perf_counter()
        train_one_epoch(loop, epoch["trainer"])
        return n / (time.perf_counter() - start)

    def run_bare() -> float:
        epoch["bare"] += 1
        order = np.random.default_rng([0, epoch["bare"]]).permutation(n)
        start = time.perf_counter()
        bare.train()
        for i in range(STEPS):
            idx = np.sort(order[i * BATCH:(i + 1) * BATCH])
            x = paddle.to_tensor(normalize(train.images[idx], mean, std))
            loss = F.cross_entropy(bare(x), paddle.to_tensor(train.labels[idx]))
            loss.backward()
            opt.step()
            opt.clear_grad()
        float(loss)
        return n / (time.perf_counter() - start)

    speeds = interleave({"trainer": run_trainer, "bare": run_bare}, REPEATS)
    a, b = median(speeds["trainer"]), median(speeds["bare"])
    ratio = paired_ratio(speeds["trainer"], speeds["bare"])
    rec.finish(ratio, f"trainer {a:.1f} img/s vs bare Paddle {b:.1f} img/s: {ratio:.3f} (median of paired rounds)",
               {"trainer_img_s": [round(v, 2) for v in speeds["trainer"]],
                "bare_img_s": [round(v, 2) for v in speeds["bare"]], "median_trainer_img_s": round(a, 2),
                "median_bare_img_s": round(b, 2), "model": "mobilenet_v3_small", "image_size": SIZE,
                "batch_size": BATCH, "steps_per_repeat": STEPS, "repeats": REPEATS, "paddle_threads": 1})


if __name__ == "__main__":
    main()
