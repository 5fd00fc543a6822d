"""The data layer: load a data set once into a shared cache of uint8 arrays; transforms for training.

numpy + PIL only (no paddle), so the search driver can use it cheaply.
"""
from __future__ import annotations

from autoft.data.catalog import DatasetInfo
from autoft.data.check import CheckReport, check_dataset, format_report
from autoft.data.dataset import ImageData, Split
from autoft.data.loader import load_data, load_for_config
from autoft.data.registry import dataset_info, download_dataset, list_datasets
from autoft.data.transforms import augment, normalize, preprocess_image, read_image

__all__ = ["Split", "ImageData", "load_data", "load_for_config", "list_datasets", "dataset_info", "DatasetInfo",
           "download_dataset", "check_dataset", "format_report", "CheckReport", "preprocess_image", "read_image",
           "normalize", "augment"]
