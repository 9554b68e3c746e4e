"""The Typer app every command registers with: plain help, one-line errors, --version."""

from __future__ import annotations

import errno
import functools
from pathlib import Path
from typing import Callable

import typer
from rich.markup import escape
from typer.core import TyperCommand

from bertner import __version__
from bertner.cli._console import err, printable, show_library_messages
from bertner.errors import BertnerError
from bertner.fileio import path_name_problem

# Plain (click) help, not rich panels: it wraps to the terminal or to 80 columns in a pipe and never
# cuts an option name or a default short.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEFAULT_DATA = Path("data/processed")
# An error line longer than this keeps its start and end: a value quoted whole (a huge file's line) would flood the terminal.
MESSAGE_LIMIT = 2000
# The library logs its notes and warnings; every command shows them on stderr.
show_library_messages()


def _argument_name(param) -> str:
    return (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")


class Command(TyperCommand):
    """Help as Unix tools write it: `Usage: bertner train [OPTIONS] [DATA]`, arguments by name, no type tags."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        params = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        arguments = [(_argument_name(p), getattr(p, "help", None) or "") for p in params if p.param_type_name == "argument"]
        options = [r for r in (p.get_help_record(ctx) for p in params if p.param_type_name == "option") if r]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"bertner {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Fine-tune BERT-family encoders for named-entity recognition.

    Typical flow: bertner preprocess RAW_DIR -> bertner train -> bertner evaluate / predict / compare.
    Every command has --help.
    """


def user_errors(fn: Callable) -> Callable:
    """Turn our exceptions into one red line on stderr and a non-zero exit, never a traceback.

    Every path the command is given is checked first (`path_name_problem`); a path that still proves
    too long for the file system (one read from a config file, one made from it) is one line too.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            check_path_arguments([*args, *kwargs.values()])
            return fn(*args, **kwargs)
        except BertnerError as e:
            show_error(str(e))
            raise typer.Exit(e.exit_code)
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            show_error(path_name_problem(e.filename or "") or f"a path is too long for the file system: {e.filename}")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            show_error("interrupted")
            raise typer.Exit(130)

    return wrapper


def show_error(message: str) -> None:
    # One line, always: a message that quotes a library's multi-line text is joined up.
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if len(message) > MESSAGE_LIMIT:
        message = f"{message[: MESSAGE_LIMIT // 2]} ... {message[-MESSAGE_LIMIT // 4:]}"
    err.print(f"[red]error:[/red] {escape(printable(message))}", highlight=False, soft_wrap=True)


def check_path_arguments(values: list) -> None:
    """BertnerError naming the first path argument no file system can hold (a name over 255 bytes).

    Paths are the Path arguments and options, and the items of a list argument (predict's inputs).
    """
    for value in values:
        paths = [value] if isinstance(value, Path) else [v for v in value if v != "-"] if isinstance(value, list) else []
        for path in paths:
            problem = path_name_problem(path)
            if problem is not None:
                raise BertnerError(problem)
