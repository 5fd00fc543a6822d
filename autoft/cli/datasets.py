"""`autoft datasets list | download | check`."""
from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["datasets_app"]

datasets_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Named datasets.")


@datasets_app.command("list")
def datasets_list() -> None:
    """List the named datasets: classes, size and licence."""
    from autoft.data import list_datasets
    from autoft.data.registry import dataset_info

    for name in list_datasets():
        info = dataset_info(name)
        print(f"{name:20} {info.num_classes:4d} classes  {info.size:32}  {info.licence}")


@datasets_app.command("download", short_help="Download, verify and extract a named dataset.")
def datasets_download(
    name: Annotated[str, typer.Argument(help="A dataset name (see `autoft datasets list`)")],
    force: Annotated[bool, typer.Option("--force", help="Download and extract again even when it is ready")] = False,
) -> None:
    """Download, verify and extract a named dataset into AUTOFT_HOME/datasets (resumes a partial download)."""
    from autoft.data import dataset_info, download_dataset

    info = dataset_info(name)
    root = download_dataset(name, force=force)
    print(f"{name}: ready at {root} ({info.num_classes} classes, {info.size}; licence: {info.licence})")


@datasets_app.command("check", short_help="Check a dataset: counts, corrupt files, duplicates.")
def datasets_check(
    target: Annotated[str, typer.Argument(help="A dataset name, or a path (ImageFolder, PaddleHub lists, CSV)")],
    flatten_nested: Annotated[bool, typer.Option(
        "--flatten-nested", help="Nested folders of images are classes (a/b → 'a/b')")] = False,
) -> None:
    """Counts per class and split, imbalance, corrupt files, duplicates across splits, tiny images."""
    from autoft.data import check_dataset, format_report

    report = check_dataset(target, flatten_nested=flatten_nested)
    print(format_report(report))
    report.raise_for_errors()
