"""The `bertner` command line: one module per command, each its typer function and its rendering.

The only package that prints results; the library returns values and raises.
"""

# Imported in the order `bertner --help` lists the commands: each import registers its command.
from bertner.cli import preprocess, train, evaluate, predict, serve, export, compare, report, sweep  # noqa: F401,I001
from bertner.cli._app import app

__all__ = ["app"]
