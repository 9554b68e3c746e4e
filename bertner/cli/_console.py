"""The rich consoles the commands print through: results to stdout, messages to stderr.

The library does not print: it logs its warnings and notes through `logging` (logger `bertner.*`);
`LogLines` shows them here, as `warning: ...` lines and plain lines on stderr.
"""

import logging

from rich.console import Console

from bertner.text import plural  # noqa: F401  (the commands' messages count things too)

# In a pipe or a log nothing is laid out for a screen: rich would wrap every line at 80 columns (a path in a
# warning split in two) and cut the last progress line short. There a line is as long as its text and a table
# as wide as it needs.
PIPE_WIDTH = 10_000


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


out = _console()
err = _console(stderr=True)


def warn(message: str) -> None:
    # soft_wrap: never broken into lines, also on a terminal (which wraps it for the eye; a copied path stays whole).
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True)


class LogLines(logging.Handler):
    """The library's log records as the commands' lines: warnings in yellow, notes plain, on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            warn(message)
        else:
            info(message)


def show_library_messages() -> None:
    """Route the `bertner` logger's notes and warnings to stderr (once; the commands call it)."""
    logger = logging.getLogger("bertner")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, LogLines) for h in logger.handlers):
        logger.addHandler(LogLines())
