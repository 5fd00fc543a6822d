"""3. Epoch time with the preprocessing cache vs decoding the JPEGs from disk every epoch (epochs 2+).

120 photo-sized JPEGs (500×375), 64 px, mobilenet_v3_small, batch 16, augmentation on for both. The disk side
decodes each batch with 2 threads (the machine's cores). Two figures: the whole training epoch (what a CPU user
waits for) and the input pipeline alone (batch → uint8 → augment → normalize: what the cache changes, and what an
epoch costs on a GPU, where the model's compute is small). Epochs are interleaved.
"""
from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet

N, SIZE, BATCH, REPEATS = 120, 64, 16, 3


def _photos(root: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(N // 3):
            base = rng.integers(0, 256, (375 // 5, 500 // 5, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((500, 375), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
            ImageDraw.Draw(img).ellipse((100 + 40 * c, 80, 300 + 40 * c, 300), fill=(80 * c, 200 - 60 * c, 90))
            img.save(root / f"c{c}" / f"{i:03d}.jpg", quality=90)
    return root


class DiskImages:
    """``images[idx]`` decodes the files from disk, like a loader without a cache."""

    def __init__(self, source, items, pool: ThreadPoolExecutor) -> None:
        self.source, self.items, self.pool = source, list(items), pool
        self.shape = (len(self.items), SIZE, SIZE, 3)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return np.stack(list(self.pool.map(lambda i: self.source.decode(self.items[i], SIZE), idx)))


class DiskSplit:
    def __init__(self, images: DiskImages, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)


def main() -> None:
    quiet()
    import paddle

    from autoft.config import config_from_dict
    from autoft.data import ImageData, augment, load_data, normalize
    from autoft.data.loader import _plan, open_source
    from autoft.data.source import SplitName
    from autoft.training.strategies import build_strategy
    from autoft.training.fit import build_model
    from autoft.training.loop import TrainLoop, batches, steps_per_epoch, train_one_epoch

    rec = Recorder("preprocess_cache", Goal("cached / from-disk epoch seconds, epochs 2+", "<=", 0.2))
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        root = _photos(Path(tmp) / "photos")
        start = time.perf_counter()
        cached = load_data(dataset=None, path=str(root), image_size=SIZE, val_split=0.2, cache_dir=Path(tmp) / "c")
        build_s = time.perf_counter() - start
        source = open_source(root)
        train_items = _plan(source, 0.2, 0, None)[0][SplitName.TRAIN]  # the images the cache's train split holds
        assert len(train_items) == len(cached.train)
        disk_split = DiskSplit(DiskImages(source, train_items.items, pool), train_items.labels)
        cfg = config_from_dict({"model": {"backbone": "mobilenet_v3_small", "pretrained": "none"},
                                "train": {"batch_size": BATCH, "augment": True, "epochs": 100}})
        paddle.set_device("cpu")
        loops, epochs = {}, {"cache": 0, "disk": 0}
        for name, split in (("cache", cached.train), ("disk", disk_split)):
            model = build_model(cfg, 3)
            spe = steps_per_epoch(len(split), BATCH)
            data = ImageData(cached.class_names, split, cached.val, None, "bench", "photos")
            strategy = build_strategy(cfg.train, model, spe, 100)
            loops[name] = TrainLoop(cfg=cfg.train, model=model, net=model, strategy=strategy,
                                    data=data, mean=tuple(model.spec.mean), std=tuple(model.spec.std),
                                    steps_per_epoch=spe, on_eval=lambda *a: None, log=lambda _m: None)

        def epoch(name: str):
            def run() -> float:
                epochs[name] += 1
                s = time.perf_counter()
                train_one_epoch(loops[name], epochs[name])
                return time.perf_counter() - s
            return run

        def inputs(split):
            def run() -> float:
                rng = np.random.default_rng(0)
                s = time.perf_counter()
                for idx in batches(len(split), BATCH, rng):
                    normalize(augment(split.images[idx], rng), (127.5,) * 3, (64.0,) * 3)
                return time.perf_counter() - s
            return run

        full = interleave({"cache": epoch("cache"), "disk": epoch("disk")}, REPEATS)
        pipe = interleave({"cache": inputs(cached.train), "disk": inputs(disk_split)}, REPEATS * 2)
    full_ratio = paired_ratio(full["cache"], full["disk"])
    pipe_ratio = paired_ratio(pipe["cache"], pipe["disk"])
    rec.finish(pipe_ratio, f"input pipeline {median(pipe['cache']):.3f}s cached vs {median(pipe['disk']):.3f}s from "
               f"disk = {pipe_ratio:.3f}; whole CPU training epoch {median(full['cache']):.1f}s vs "
               f"{median(full['disk']):.1f}s = {full_ratio:.3f}",
               {"images": len(cached.train), "image_size": SIZE, "jpeg": "500x375 q90", "batch_size": BATCH,
                "cache_build_s (epoch 1 extra)": round(build_s, 2),
                "train_epoch_cached_s": [round(v, 3) for v in full["cache"]],
                "train_epoch_disk_s": [round(v, 3) for v in full["disk"]], "train_epoch_ratio": round(full_ratio, 4),
                "input_epoch_cached_s": [round(v, 4) for v in pipe["cache"]],
                "input_epoch_disk_s": [round(v, 4) for v in pipe["disk"]], "input_epoch_ratio": round(pipe_ratio, 4)},
               notes="value = input-pipeline ratio; the whole-epoch ratio on this 2-core CPU is bounded by the "
                     "model's compute, which the cache does not change")


if __name__ == "__main__":
    main()
