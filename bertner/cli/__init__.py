"""The `bertner` command line: one module per command, each its typer function and its rendering.

The only package that prints results; the library returns values and raises.
"""

try:
    # Imported in the order `bertner --help` lists the commands: each import registers its command.
    from bertner.cli import preprocess, embeddings, train, evaluate, predict, serve, export, compare, report, sweep  # noqa: F401,I001
    from bertner.cli._app import app
except KeyboardInterrupt:
    # Ctrl-C while torch and transformers load (seconds), before any command can catch it: one line too.
    import sys

    sys.stderr.write("error: interrupted\n")
    raise SystemExit(130) from None

__all__ = ["app"]
