"""Put pretrained weights into a Classifier: ImageNet (cached as safetensors), a weights file, or a bundle.

Only the head may be left out: a file whose head does not fit (1000 ImageNet classes into a 10-class model)
loads its backbone and keeps the new head's random init. Any other missing, extra or misshapen tensor is an
error that lists the tensors, because a partly loaded backbone trains badly without saying why.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autoft.backbones import weights
from autoft.backbones.registry import get_entry
from autoft.errors import WeightsError

if TYPE_CHECKING:
    from autoft.backbones.classifier import Classifier

__all__ = ["load_pretrained", "read_weights_file"]

log = logging.getLogger(__name__)
_SHOWN = 5  # tensors named in an error message before "... and N more"
_SUFFIXES = (".pdparams", ".safetensors", ".pth", ".pt")


def load_pretrained(model: Classifier, pretrained: str | os.PathLike[str]) -> None:
    """Load ``pretrained`` ("imagenet", "none", or a path to a bundle folder / weights file) into ``model``."""
    name = model.spec.name
    if pretrained == "none":
        return
    entry = get_entry(name)
    if pretrained == "imagenet":
        tensors = weights.cached_safetensors(name, entry.imagenet)
        source = f"ImageNet weights for {name}"
    else:
        tensors = read_weights_file(Path(pretrained))
        if not any(k.startswith(("backbone.", "head.")) for k in tensors):
            tensors = entry.convert(tensors)  # the backbone's native layout (paddle.vision / lukemelas keys)
        source = f"weights {pretrained}"
    _apply(model, tensors, source)


def read_weights_file(path: Path) -> dict[str, np.ndarray]:
    """Tensors from a bundle folder (``model.safetensors``), .safetensors, .pth/.pt or .pdparams.

    No format runs code: safetensors holds no code, and .pth/.pdparams pickles go through allow-list readers.
    """
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise WeightsError(f"pretrained folder {path} is not a bundle: it has no model.safetensors")
        return weights.load_safetensors(path / "model.safetensors")
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights {path} do not exist (expected 'imagenet', 'none', a bundle folder or a "
            f"{'/'.join(_SUFFIXES)} file)"
        )
    if path.suffix == ".safetensors":
        return weights.load_safetensors(path)
    if path.suffix in (".pth", ".pt"):
        return weights.read_pth(path)
    if path.suffix == ".pdparams":
        return weights.read_pdparams(path)
    raise WeightsError(f"pretrained weights {path} have an unknown suffix {path.suffix!r}: use one of {_SUFFIXES}")


def _apply(model: Classifier, tensors: dict[str, np.ndarray], source: str) -> None:
    own = model.state_dict()
    head_misfits: list[str] = []
    errors: list[str] = []
    for key, target in own.items():
        expected = tuple(target.shape)
        if key not in tensors:
            (head_misfits if key.startswith("head.") else errors).append(f"{key} missing")
        elif tuple(tensors[key].shape) != expected:
            problem = f"{key} {tuple(tensors[key].shape)} vs model {expected}"
            (head_misfits if key.startswith("head.") else errors).append(problem)
    errors += [f"{k} unexpected" for k in tensors if k not in own and not k.startswith("head.")]
    if errors:
        more = f" and {len(errors) - _SHOWN} more" if len(errors) > _SHOWN else ""
        raise WeightsError(f"{source} do not fit {model.spec.name}: {'; '.join(errors[:_SHOWN])}{more}")
    skip_head = bool(head_misfits)
    if skip_head:
        log.debug("%s: head not loaded (%s); it keeps its random init", source, "; ".join(head_misfits))
    for key, target in own.items():
        if skip_head and key.startswith("head."):
            continue
        # every tensor in these models (weights and batch-norm statistics) is float32
        target.set_value(np.ascontiguousarray(tensors[key], dtype=np.float32))
