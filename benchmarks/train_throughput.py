"""9. The training step on CPU, one thread: autoft's step against the dygraph step, every candidate measured, and
where the time goes per operator.

For efficientnet_lite0 and mobilenet_v3_small at 32 and 64 px, batch 32 (and 128), Adam: images per second of
* ``dygraph`` — the plain step (forward, cross-entropy, backward, optimizer);
* ``autoft`` — the trainer's own ``train_step`` (uint8 batches normalised, the strategy, the NaN check) with
  ``train.depthwise: auto`` (depthwise layers trained as block-diagonal grouped convolutions);
* ``onednn`` — the same with ``FLAGS_use_onednn`` (process-global, so it runs in its own process);
* ``to_static`` — ``paddle.jit.to_static`` of the model (forward and backward as a static program);
* ``batch128`` — the dygraph step at batch 128.
Each side runs in a fresh process, the sides interleaved A B C A B C. Per operator: each leaf layer of the model
timed alone (forward + backward on its real input shape), summed by kind (depthwise conv, pointwise conv, batch
norm, activation, …) with the GFLOPS each kind achieves, beside the same process's GEMM peak (paddle.matmul).
The goal's value is autoft's step over the dygraph step (median over models and sizes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks import Goal, Recorder, median, quiet

MODELS = ("efficientnet_lite0", "mobilenet_v3_small")
SIZES = (32, 64)
SIDES = ("dygraph", "autoft", "onednn", "to_static", "batch128")
STEPS, REPEATS, CLASSES = 5, 2, 10


def _step_speed(model_name: str, size: int, side: str) -> float:
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from autoft.backbones.factory import create

    batch = 128 if side == "batch128" else 32
    if side == "autoft":
        return _autoft_speed(model_name, size, batch)
    paddle.seed(0)
    model = create(model_name, CLASSES, "none")
    model.train()
    net = paddle.jit.to_static(model, full_graph=True) if side == "to_static" else model
    opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters())
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.normal(0, 1, (batch, 3, size, size)).astype("float32"))
    y = paddle.to_tensor(rng.integers(0, CLASSES, batch))

    def step() -> paddle.Tensor:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return loss

    for _ in range(2):
        float(step())
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = step()
    float(loss)
    return batch * STEPS / (time.perf_counter() - start)


def _autoft_speed(model_name: str, size: int, batch: int) -> float:
    import numpy as np
    import paddle

    from autoft.config import config_from_dict
    from autoft.data import ImageData, Split
    from autoft.training.depthwise import configure
    from autoft.training.fit import build_model
    from autoft.training.loop import TrainLoop, train_step
    from autoft.training.strategies import build_strategy

    rng = np.random.default_rng(0)
    train = Split(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), rng.integers(0, CLASSES, batch))
    data = ImageData(tuple(f"c{i}" for i in range(CLASSES)), train, train, None, "bench", "random")
    cfg = config_from_dict({"model": {"backbone": model_name, "pretrained": "none"},
                            "train": {"batch_size": batch, "augment": False, "learning_rate": 1e-3,
                                      "optimizer": "adam", "regularization_coeff": 0, "epochs": 100}})
    paddle.seed(0)
    model = build_model(cfg, CLASSES)
    t = cfg.train
    configure(model, t.depthwise, "cpu")  # train.depthwise: auto, as fit() applies it on CPU
    loop = TrainLoop(cfg=t, model=model, net=model, strategy=build_strategy(t, model, 1, t.epochs), data=data,
                     mean=tuple(model.spec.mean), std=tuple(model.spec.std), steps_per_epoch=1,
                     on_eval=lambda *a: None, log=lambda _m: None)
    model.train()
    for _ in range(2):
        train_step(loop, train.images, train.labels, 1)
    start = time.perf_counter()
    for _ in range(STEPS):
        train_step(loop, train.images, train.labels, 1)
    return batch * STEPS / (time.perf_counter() - start)


def _kind(layer: Any) -> str:
    from paddle import nn

    if isinstance(layer, nn.Conv2D):
        if layer._groups > 1 and layer._groups == layer._in_channels:
            return "depthwise conv"
        return "pointwise conv" if tuple(layer._kernel_size) == (1, 1) else "full conv"
    if isinstance(layer, (nn.BatchNorm2D, nn.BatchNorm)):
        return "batch norm"
    if isinstance(layer, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Swish, nn.Sigmoid, nn.Silu)):
        return "activation"
    if isinstance(layer, nn.Linear):
        return "linear"
    return "other: " + type(layer).__name__


def _conv_flops(layer: Any, shape: list[int], out: list[int]) -> float:
    kh, kw = layer._kernel_size
    return 2.0 * out[0] * out[1] * out[2] * out[3] * (layer._in_channels // layer._groups) * kh * kw


def _per_operator(model_name: str, size: int) -> dict[str, Any]:
    """Each leaf layer's forward + backward alone on its input shape (batch 32), summed by kind."""
    import paddle
    from paddle import nn

    from autoft.backbones.factory import create

    model = create(model_name, CLASSES, "none")
    model.train()
    shapes: list[tuple[Any, list[int], list[int]]] = []

    def hook(layer: Any, inputs: Any, output: Any) -> None:
        if isinstance(inputs[0], paddle.Tensor) and isinstance(output, paddle.Tensor):
            shapes.append((layer, list(inputs[0].shape), list(output.shape)))

    leaves = [m for m in model.sublayers() if not m.sublayers() and not isinstance(m, nn.Dropout)]
    handles = [m.register_forward_post_hook(hook) for m in leaves]
    model(paddle.randn([32, 3, size, size]))
    for h in handles:
        h.remove()
    kinds: dict[str, dict[str, float]] = {}
    for layer, shape, out in shapes:
        x = paddle.randn(shape)
        x.stop_gradient = False
        for _ in range(1):
            layer(x).sum().backward()
        start = time.perf_counter()
        for _ in range(3):
            layer(x).sum().backward()
        seconds = (time.perf_counter() - start) / 3
        entry = kinds.setdefault(_kind(layer), {"ms": 0.0, "layers": 0, "gflop": 0.0})
        entry["ms"] += seconds * 1e3
        entry["layers"] += 1
        if isinstance(layer, nn.Conv2D):
            entry["gflop"] += 3 * _conv_flops(layer, shape, out) / 1e9  # forward + two backward products
    total = sum(e["ms"] for e in kinds.values())
    table = {k: {"ms_per_step": round(e["ms"], 1), "share": round(e["ms"] / total, 3), "layers": int(e["layers"]),
                 **({"gflops": round(e["gflop"] / (e["ms"] / 1e3), 2)} if e["gflop"] else {})}
             for k, e in sorted(kinds.items(), key=lambda kv: -kv[1]["ms"])}
    a = paddle.randn([1024, 1024])
    paddle.matmul(a, a)
    start = time.perf_counter()
    for _ in range(10):
        c = paddle.matmul(a, a)
    float(c.sum())
    gemm = 2 * 1024 ** 3 * 10 / (time.perf_counter() - start) / 1e9
    return {"layers_sum_ms": round(total, 1), "by_kind": table, "gemm_gflops": round(gemm, 1)}


def _child(side: str, model_name: str, size: int) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    import paddle

    paddle.base.core.set_num_threads(1)
    quiet()
    if side == "profile":
        print(json.dumps(_per_operator(model_name, size)))
    else:
        print(json.dumps({"img_s": _step_speed(model_name, size, side)}))


def _run(side: str, model_name: str, size: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if side == "onednn":
        env["FLAGS_use_onednn"] = "1"
        env["FLAGS_use_mkldnn"] = "1"
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_throughput", "--child", side, model_name,
                           str(size)], env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1])


def main() -> None:
    quiet()
    rec = Recorder("train_throughput", Goal("autoft's training step / dygraph step, images per second", ">=", 2))
    figures: dict[str, Any] = {"steps": STEPS, "repeats": REPEATS, "threads": 1, "batch": 32}
    ratios = []
    best_candidate = []
    for model_name in MODELS:
        for size in SIZES:
            speeds: dict[str, list[float]] = {s: [] for s in SIDES}
            errors: dict[str, str] = {}
            for r in range(REPEATS):
                for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                    got = _run(side, model_name, size)
                    if "img_s" in got:
                        speeds[side].append(got["img_s"])
                    else:
                        errors[side] = got["error"]
            base = median(speeds["dygraph"])
            row: dict[str, Any] = {f"{s}_img_s": round(median(v), 1) for s, v in speeds.items() if v}
            row.update({f"{s}_ratio": round(median(v) / base, 3) for s, v in speeds.items() if v and s != "dygraph"})
            if errors:
                row["errors"] = errors
            row["per_operator"] = _run("profile", model_name, size)
            figures[f"{model_name}@{size}"] = row
            ratios.append(row.get("autoft_ratio", float("nan")))
            best_candidate.append(max((v for k, v in row.items() if k.endswith("_ratio") and k != "autoft_ratio"),
                                      default=float("nan")))
    value = median(ratios)
    best = median(best_candidate)
    figures["best_candidate_ratio_median"] = round(best, 3)
    top = {k: v["per_operator"].get("by_kind", {}) for k, v in figures.items() if isinstance(v, dict)
           and "per_operator" in v}
    shares = {k: ", ".join(f"{kind} {e['share']:.0%}" for kind, e in list(kinds.items())[:3])
              for k, kinds in top.items()}
    rec.finish(value, f"autoft's step / dygraph step {value:.2f}x; the best other candidate {best:.2f}x "
                      f"(medians over models and sizes)", figures,
               notes="Where a step's time goes (leaf layers timed alone): "
                     + "; ".join(f"{k}: {v}" for k, v in shares.items()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
