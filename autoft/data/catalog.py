"""The named data sets: where each comes from, how big it is, its licence, its layout. Pure data, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Layout", "Remote", "DatasetInfo", "CATALOG", "PADDLEHUB_BASE_URL", "FASHION_MNIST_BASE_URL"]

PADDLEHUB_BASE_URL = "https://bj.bcebos.com/paddlehub-dataset/"
FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


class Layout(str, Enum):
    PADDLEHUB_LISTS = "PaddleHub lists"   # an archive holding train/validate/test_list.txt + label_list.txt
    IDX = "idx files"                     # the four Fashion-MNIST idx .gz files, not extracted
    BUNDLED = "bundled"                   # ships with autoft, nothing to download


@dataclass(frozen=True)
class Remote:
    """One file to download. `md5`/`sha256`: what the source publishes (None when it publishes nothing)."""

    filename: str
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    num_classes: int
    size: str                     # images and download size, for people
    licence: str
    layout: Layout
    base_url: str = ""
    files: tuple[Remote, ...] = ()
    list_root: str = ""           # where train_list.txt lies inside the extracted archive (searched if not)

    @property
    def env_url_override(self) -> str:
        """The per-entry variable that replaces `base_url`, e.g. AUTOFT_DATASETS_URL_STANFORDDOGS."""
        return "AUTOFT_DATASETS_URL_" + self.name.upper().replace("-", "_")


_PADDLEHUB_NOTE = "PaddleHub 1.x mirror (bj.bcebos.com); no checksum published: sha256 recorded on first download"

CATALOG: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo(
        name="flowers", title="Flower photos (5 classes: roses, tulips, daisy, sunflowers, dandelion)",
        num_classes=5, size="3,670 images, ~220 MB",
        licence="CC-BY 2.0, photos by Flickr users (TensorFlow flower_photos, see its LICENSE.txt); " + _PADDLEHUB_NOTE,
        layout=Layout.PADDLEHUB_LISTS, base_url=PADDLEHUB_BASE_URL, files=(Remote("flower_photos.tar.gz"),),
        list_root="flower_photos"),
    DatasetInfo(
        name="dogcat", title="Dogs vs. Cats (2 classes)", num_classes=2, size="~25,000 images, ~550 MB",
        licence="Kaggle Dogs vs. Cats (Microsoft Asirra): research and non-commercial use; " + _PADDLEHUB_NOTE,
        layout=Layout.PADDLEHUB_LISTS, base_url=PADDLEHUB_BASE_URL, files=(Remote("dog-cat.tar.gz"),),
        list_root="dog-cat"),
    DatasetInfo(
        name="stanforddogs", title="Stanford Dogs (120 breeds)", num_classes=120, size="20,580 images, ~750 MB",
        licence="Stanford Dogs, images from ImageNet: non-commercial research use; " + _PADDLEHUB_NOTE,
        layout=Layout.PADDLEHUB_LISTS, base_url=PADDLEHUB_BASE_URL, files=(Remote("StanfordDogs-120.tar.gz"),),
        list_root="StanfordDogs-120"),
    DatasetInfo(
        name="indoor67", title="MIT Indoor scenes (67 categories)", num_classes=67, size="15,620 images, ~2.4 GB",
        licence="MIT Indoor-67 (Quattoni & Torralba): research use; " + _PADDLEHUB_NOTE,
        layout=Layout.PADDLEHUB_LISTS, base_url=PADDLEHUB_BASE_URL, files=(Remote("Indoor67.tar.gz"),),
        list_root="Indoor67"),
    DatasetInfo(
        # PaddleHub 1.x's food101.py downloads Food101.tar.gz and reads food-101/images/.
        name="food101", title="Food-101 (101 dishes)", num_classes=101, size="101,000 images, ~5 GB",
        licence="Food-101 (ETH Zurich), images from foodspotting.com under fair use: research only; "
                + _PADDLEHUB_NOTE,
        layout=Layout.PADDLEHUB_LISTS, base_url=PADDLEHUB_BASE_URL, files=(Remote("Food101.tar.gz"),),
        list_root="food-101/images"),
    DatasetInfo(
        name="fashion-mnist", title="Fashion-MNIST (10 clothing classes, 28x28 grey)", num_classes=10,
        size="70,000 images, 30 MB", licence="MIT, Zalando Research (official MD5s checked on download)",
        layout=Layout.IDX, base_url=FASHION_MNIST_BASE_URL, files=(
            Remote("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Remote("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe"),
            Remote("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79"),
            Remote("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310"),
        )),
    DatasetInfo(
        name="fashion-mnist-demo", title="Fashion-MNIST subset, 300 train + 100 val per class (bundled)",
        num_classes=10, size="4,000 images, 2 MB", licence="MIT, Zalando Research (FASHION_MNIST_LICENSE.txt)",
        layout=Layout.BUNDLED),
)}
