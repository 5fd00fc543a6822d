"""11. ``autoft train`` against a plain dygraph loop doing the same work, both with OMP_NUM_THREADS=1: the bundled
demo subset (100 train + 100 val images per class), efficientnet_lite0 from its ImageNet weights at 32 px, one
epoch at batch 32 with Adam, one validation pass. Wall time of each whole process (imports, data, model, weights
included), in fresh processes, interleaved A B B A."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from benchmarks import Goal, Recorder, median, quiet

REPEATS = 3
CONFIG = """name: train-command
data: {dataset: fashion-mnist-demo, image_size: 32, max_train_per_class: 100, max_val_per_class: 100}
model: {backbone: efficientnet_lite0, pretrained: imagenet}
train: {epochs: 1, batch_size: 32, optimizer: adam, learning_rate: 0.001, regularization_coeff: 0.0001,
        augment: false, strategy: default, log_interval: 1000}
"""

PLAIN = r"""
import json, sys, time
import numpy as np, paddle, paddle.nn.functional as F
from autoft.backbones.factory import create
from autoft.data import load_data, normalize
data = load_data(dataset="fashion-mnist-demo", path=None, image_size=32, max_train_per_class=100, max_val_per_class=100)
paddle.seed(0)
model = create("efficientnet_lite0", data.num_classes, "imagenet")
opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters(), weight_decay=paddle.regularizer.L2Decay(1e-4))
mean, std = model.spec.mean, model.spec.std
order = np.random.default_rng(0).permutation(len(data.train))
model.train()
for i in range(len(order) // 32):
    idx = np.sort(order[i * 32:(i + 1) * 32])
    loss = F.cross_entropy(model(paddle.to_tensor(normalize(data.train.images[idx], mean, std))),
                           paddle.to_tensor(data.train.labels[idx]))
    loss.backward(); opt.step(); opt.clear_grad()
model.eval()
right = 0
with paddle.no_grad():
    for s in range(0, len(data.val), 64):
        logits = model(paddle.to_tensor(normalize(data.val.images[s:s + 64], mean, std)))
        right += int((logits.argmax(1).numpy() == data.val.labels[s:s + 64]).sum())
print(json.dumps({"val_acc": right / len(data.val)}))
"""


def _timed(argv: list[str]) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode:
        raise SystemExit(f"train_command: {argv[:3]} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    quiet()
    rec = Recorder("train_command", Goal("`autoft train` wall / plain dygraph loop wall, same work", "<=", 0.5))
    walls: dict[str, list[float]] = {"autoft": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/train.yaml", "w") as f:
            f.write(CONFIG)
        autoft = [sys.executable, "-m", "autoft.cli", "train", f"{tmp}/train.yaml", "--set",
                  f"train.checkpoint_dir={tmp}/ckpt"]
        plain = [sys.executable, "-c", PLAIN]
        for r in range(REPEATS):
            for side in ("autoft", "plain") if r % 2 == 0 else ("plain", "autoft"):
                wall, _out = _timed(autoft if side == "autoft" else plain)
                walls[side].append(wall)
    ratio = median([a / b for a, b in zip(walls["autoft"], walls["plain"])])
    rec.finish(ratio, f"autoft train {median(walls['autoft']):.1f}s vs plain dygraph loop "
                      f"{median(walls['plain']):.1f}s: {ratio:.2f}",
               {"autoft_wall_s": [round(w, 2) for w in walls["autoft"]],
                "plain_wall_s": [round(w, 2) for w in walls["plain"]], "config": CONFIG, "threads": 1,
                "repeats": REPEATS})


if __name__ == "__main__":
    main()
