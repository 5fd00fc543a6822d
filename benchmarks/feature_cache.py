"""4. A head-only trial (``train.freeze_backbone: true``) with the feature cache warm vs without it.

efficientnet_lite0 with its ImageNet weights, the bundled Fashion-MNIST subset (300 train / 100 val) at 64 px,
5 epochs, batch 32: the whole ``fit`` (model build, training, evaluation, bundle saves) is timed. Without the
cache every epoch runs the frozen backbone over the train and val images. Runs are interleaved; the first
(cold) cached run, which computes the features, is reported apart.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet

REPEATS = 2


def main() -> None:
    quiet()
    from autoft.training import features
    from autoft.backbones import create
    from autoft.config import config_from_dict
    from autoft.data import load_data
    from autoft.training.fit import fit

    rec = Recorder("feature_cache", Goal("head-only trial seconds, cached features / none", "<=", 0.1))
    cfg = config_from_dict({"data": {"dataset": "fashion-mnist-demo", "image_size": 64},
                            "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"},
                            "train": {"epochs": 5, "batch_size": 32, "freeze_backbone": True, "augment": False}})
    data = load_data(dataset="fashion-mnist-demo", path=None, image_size=64, max_train_per_class=30,
                     max_val_per_class=10)
    model = create("efficientnet_lite0", data.num_classes, "imagenet")
    key = features.feature_key("efficientnet_lite0", features.weights_digest(model.backbone), 64, data.fingerprint)
    shutil.rmtree(features.features_dir() / key, ignore_errors=True)
    accs = {}

    def trial(name: str, cache: bool):
        def run() -> float:
            os.environ["AUTOFT_FEATURE_CACHE"] = "1" if cache else "0"
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = fit(cfg, data, bundle_dir=Path(tmp) / "bundle")
                accs[name] = result.best_val_acc
                return time.perf_counter() - start
        return run

    cold = trial("cold", True)()
    times = interleave({"cached": trial("cached", True), "none": trial("none", False)}, REPEATS, warmup=0)
    ratio = paired_ratio(times["cached"], times["none"])
    rec.finish(ratio, f"head-only trial {median(times['cached']):.2f}s with cached features vs "
               f"{median(times['none']):.1f}s without = {ratio:.3f} (first, cold: {cold:.1f}s)",
               {"cached_s": [round(v, 3) for v in times["cached"]], "none_s": [round(v, 3) for v in times["none"]],
                "cold_s (computes the features)": round(cold, 2), "best_val_acc": accs,
                "train_images": len(data.train), "val_images": len(data.val), "epochs": 5, "image_size": 64},
               notes="augment: false on both sides (feature-cached training uses non-augmented images)")


if __name__ == "__main__":
    main()
