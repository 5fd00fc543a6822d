"""ImageNet weights matter: fine-tuning from them beats random init; `predict --imagenet` checks them by hand."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoft.backbones import imagenet_class_names
from autoft.config import config_from_dict
from autoft.data import load_for_config
from autoft.training.fit import fit


def test_imagenet_weights_beat_random_init_on_the_same_data_and_budget() -> None:
    def run(pretrained: str) -> float:
        cfg = config_from_dict({
            "data": {"dataset": "fashion-mnist-demo", "image_size": 32, "max_train_per_class": 30,
                     "max_val_per_class": 20},
            "model": {"backbone": "efficientnet_lite0", "pretrained": pretrained},
            "train": {"epochs": 2, "batch_size": 16, "learning_rate": 0.002, "optimizer": "adam", "seed": 3}})
        return fit(cfg, load_for_config(cfg)).best_val_acc

    pretrained, scratch = run("imagenet"), run("none")
    assert pretrained >= scratch + 0.15, (pretrained, scratch)
    assert pretrained >= 0.5, pretrained  # 10 classes: chance is 0.1


def test_predict_imagenet_head_recognises_a_cat(tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(photo)
    out = subprocess.run([sys.executable, "-m", "autoft.cli", "predict", "--imagenet", "efficientnet_lite0",
                          str(photo), "--json", "--top-k", "5"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    top = [t["label"] for t in json.loads(out.stdout)["top"]]
    cats = set(imagenet_class_names()[281:286])
    assert cats & set(top), top
