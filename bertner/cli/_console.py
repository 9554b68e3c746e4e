"""The rich consoles the commands print through: results to stdout, messages to stderr.

The library does not print: it logs its warnings and notes through `logging` (logger `bertner.*`);
`LogLines` shows them here, as `warning: ...` lines and plain lines on stderr.
"""

import logging

from rich.console import Console

from bertner.text import plural  # noqa: F401  (the commands' messages count things too)

out = Console()
err = Console(stderr=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def info(message: str) -> None:
    err.print(message, highlight=False)


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
