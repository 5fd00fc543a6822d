"""5. ``Predictor`` throughput vs bare ``paddle.inference`` on the same bundle (efficientnet_lite0, 64 px, 10
classes), both from image files (decode + resize + normalize + forward, batches of 32). The bare side is the
model exported with ``paddle.jit.save`` and run by a ``paddle.inference`` predictor. Runs are interleaved."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Goal, Recorder, interleave, median, paired_ratio, quiet

N, SIZE, BATCH, REPEATS = 96, 64, 32, 3


def main() -> None:
    quiet()
    import paddle
    from paddle import inference
    from PIL import Image

    from autoft.backbones import create
    from autoft.run.bundle import BundleMeta, save_bundle
    from autoft.training.checkpoint import model_weights
    from autoft.data import normalize, preprocess_image
    from autoft.serving.predict import Predictor

    rec = Recorder("predict_throughput", Goal("Predictor / bare paddle.inference, images per second", ">=", 0.9))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(N):
            paths.append(tmp / f"{i:03d}.jpg")
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(paths[-1], quality=90)
        model = create("efficientnet_lite0", 10, "imagenet")
        model.eval()
        spec = model.spec
        meta = BundleMeta(backbone=spec.name, num_classes=10, class_names=tuple(f"c{i}" for i in range(10)),
                          image_size=SIZE, mean=tuple(spec.mean), std=tuple(spec.std))
        bundle = save_bundle(tmp / "bundle", model_weights(model), meta)
        paddle.jit.save(model, str(tmp / "jit" / "model"),
                        input_spec=[paddle.static.InputSpec([None, 3, SIZE, SIZE], "float32")])
        files = {p.suffix: p for p in (tmp / "jit").iterdir()}
        config = inference.Config(str(files.get(".json", files.get(".pdmodel"))), str(files[".pdiparams"]))
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(1)
        bare = inference.create_predictor(config)
        predictor = Predictor(bundle, batch_size=BATCH, device="cpu", threads=1)  # the bare side runs 1 thread

        def run_predictor() -> float:
            start = time.perf_counter()
            predictor.predict(paths, top_k=3)
            return N / (time.perf_counter() - start)

        def run_bare() -> float:
            start = time.perf_counter()
            for i in range(0, N, BATCH):
                batch = []
                for p in paths[i:i + BATCH]:
                    with Image.open(p) as img:
                        batch.append(preprocess_image(img, SIZE))
                x = normalize(np.stack(batch), spec.mean, spec.std)
                handle = bare.get_input_handle(bare.get_input_names()[0])
                handle.reshape(x.shape)
                handle.copy_from_cpu(x)
                bare.run()
                bare.get_output_handle(bare.get_output_names()[0]).copy_to_cpu()
            return N / (time.perf_counter() - start)

        speeds = interleave({"predictor": run_predictor, "bare": run_bare}, REPEATS)
    a, b = median(speeds["predictor"]), median(speeds["bare"])
    ratio = paired_ratio(speeds["predictor"], speeds["bare"])
    rec.finish(ratio, f"Predictor {a:.1f} img/s vs bare paddle.inference {b:.1f} img/s = {ratio:.3f}",
               {"predictor_img_s": [round(v, 2) for v in speeds["predictor"]],
                "bare_img_s": [round(v, 2) for v in speeds["bare"]], "images": N, "image_size": SIZE,
                "batch_size": BATCH, "backbone": "efficientnet_lite0", "threads": 1})


if __name__ == "__main__":
    main()
