"""Predictor serves a bundle through a cached static export (paddle.inference) that agrees with the weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from autoft.backbones import create
from autoft.run.bundle import BundleMeta, save_bundle
from autoft.training.checkpoint import model_weights
from autoft.serving.engine import check_batch
from autoft._fs import autoft_home
from autoft.serving.predict import Predictor
from shapes import COLOURS, draw_shape


def test_predictor_uses_a_cached_static_export_that_matches_the_bundle(tmp_path: Path) -> None:
    model = create("mobilenet_v3_small", 3, "none")
    spec = model.spec
    meta = BundleMeta(backbone=spec.name, num_classes=3, class_names=tuple(COLOURS), image_size=32,
                      mean=tuple(spec.mean), std=tuple(spec.std))
    bundle = save_bundle(tmp_path / "bundle", model_weights(model), meta)
    cache = autoft_home() / "cache" / "inference"
    before = set(cache.iterdir()) if cache.is_dir() else set()
    predictor = Predictor(bundle, device="cpu", threads=1)
    assert predictor.fast is not None
    made = set(cache.iterdir()) - before
    assert len(made) == 1
    batch = check_batch(32, 5)
    np.testing.assert_allclose(predictor.logits(batch), predictor.reference_logits(batch), atol=1e-4)
    again = Predictor(bundle, device="cpu", threads=1)
    assert set(cache.iterdir()) - before == made and again.fast is not None  # exported once, then reused
    rng = np.random.default_rng(0)
    paths = []
    for name, colour in COLOURS.items():
        paths.append(tmp_path / f"{name}.png")
        draw_shape(colour, rng).save(paths[-1])
    fast = predictor.predict(paths, top_k=3)
    predictor.fast = None
    slow = predictor.predict(paths, top_k=3)
    assert [p.label for p in fast] == [p.label for p in slow]
    for a, b in zip(fast, slow):
        np.testing.assert_allclose([q for _, q in a.top], [q for _, q in b.top], atol=1e-4)
