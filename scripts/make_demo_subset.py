"""Make autoft/data/fashion_mnist_demo.npz: 300 train + 100 val images per class of Fashion-MNIST.

Train images come from the official train file, val images from the official test file, chosen at random
with a fixed seed. Reads the idx files of the Debian package dataset-fashion-mnist by default.

    python scripts/make_demo_subset.py [--source /usr/share/datasets/fashion-mnist] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Runnable from a plain checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoft.data.demo import DEMO_NPZ  # noqa: E402
from autoft.data.fashion_mnist import CLASS_NAMES, FILES, read_idx  # noqa: E402

TRAIN_PER_CLASS = 300
VAL_PER_CLASS = 100


def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEMO_NPZ)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = read_idx(args.source / FILES["train_images"]), read_idx(args.source / FILES["train_labels"])
    x_test, y_test = read_idx(args.source / FILES["test_images"]), read_idx(args.source / FILES["test_labels"])
    train_idx, val_idx = pick(y_train, TRAIN_PER_CLASS, rng), pick(y_test, VAL_PER_CLASS, rng)
    np.savez_compressed(
        args.out,
        x_train=x_train[train_idx], y_train=y_train[train_idx],
        x_val=x_test[val_idx], y_val=y_test[val_idx],
        class_names=np.array(CLASS_NAMES),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
          f"{len(train_idx)} train + {len(val_idx)} val images, seed {args.seed}")


if __name__ == "__main__":
    main()
