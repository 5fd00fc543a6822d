from __future__ import annotations

import subprocess
import sys

import pytest

from autoft.backbones import get_spec, imagenet_class_names, list_backbones
from autoft.backbones.registry import BackboneSpec, register
from autoft.errors import ConfigError

ALL = [
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v1", "mobilenet_v2",
    "mobilenet_v3_large", "mobilenet_v3_small", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "shufflenet_v2",
]  # fmt: skip


def test_lists_every_backbone_sorted() -> None:
    assert list_backbones() == ALL


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("resnet*", ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]),
     ("efficientnet_lite?", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]),
     ("*v3*", ["mobilenet_v3_large", "mobilenet_v3_small"]),
     ("vgg*", [])],
)  # fmt: skip
def test_list_filters_with_fnmatch(pattern: str, expected: list[str]) -> None:
    assert list_backbones(pattern) == expected


def test_unknown_name_suggests_nearest_and_lists_valid() -> None:
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet5'; did you mean 'resnet50'\? valid: "
                                          r"efficientnet_lite0, efficientnet_lite1, .*, shufflenet_v2$"):
        get_spec("resnet5")


def test_unknown_name_without_close_match_still_lists_valid() -> None:
    with pytest.raises(ConfigError, match=r"^unknown backbone 'xyz'; valid: efficientnet_lite0, "):
        get_spec("xyz")


@pytest.mark.parametrize(("name", "size", "dim"), [("efficientnet_lite0", 224, 1280), ("efficientnet_lite1", 240, 1280),
                                                    ("efficientnet_lite2", 260, 1280), ("resnet50", 224, 2048),
                                                    ("resnet18", 224, 512), ("mobilenet_v3_small", 224, 1024)])
def test_spec_values(name: str, size: int, dim: int) -> None:
    spec = get_spec(name)
    assert (spec.name, spec.default_image_size, spec.feature_dim) == (name, size, dim)
    if spec.family == "efficientnet_lite":
        assert (spec.mean, spec.std) == ((127.0,) * 3, (128.0,) * 3)
    else:
        assert spec.mean == pytest.approx((123.675, 116.28, 103.53)) and spec.std[0] == pytest.approx(58.395)
    assert spec.weights and "\n" not in spec.weights


def test_families() -> None:
    assert {get_spec(n).family for n in ALL} == {"efficientnet_lite", "resnet", "mobilenet", "shufflenet"}


def test_spec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        get_spec("resnet18").feature_dim = 3  # type: ignore[misc]


def test_registering_a_name_twice_is_refused() -> None:
    spec = get_spec("resnet18")
    with pytest.raises(ValueError, match="registered twice"):
        register(spec, dropout=0.0, imagenet=dict, convert=dict)(lambda: None)


def test_listing_and_specs_do_not_import_paddle() -> None:
    code = (
        "import sys\n"
        "from autoft.backbones import list_backbones, get_spec\n"
        "assert list_backbones() and get_spec('resnet50').feature_dim == 2048\n"
        "print('paddle' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[281], names[285], names[657], names[967], names[999]) == (
        "tench", "tabby", "Egyptian cat", "missile", "espresso", "toilet tissue")


def test_create_rejects_bad_num_classes() -> None:
    from autoft.backbones import create

    with pytest.raises(ConfigError, match=r"num_classes must be a positive int, but got 0"):
        create("resnet18", 0, pretrained="none")
    assert isinstance(get_spec("resnet18"), BackboneSpec)
