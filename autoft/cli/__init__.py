"""The `autoft` command: a thin Typer layer over the library (no paddle, ray, optuna or pandas at --help)."""
