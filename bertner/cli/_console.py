"""The rich consoles the commands print through: results to stdout, messages to stderr.

The library does not print: it logs its warnings and notes through `logging` (logger `bertner.*`);
`LogLines` shows them here, as `warning: ...` lines and plain lines on stderr.

Text from inputs (documents, file names, labels, values in messages) can hold control characters:
ESC sequences that set the window title, clear the screen or write the clipboard, BEL, a carriage
return that overwrites a line. Every console here shows them escaped (`printable`), whatever prints.
"""

import logging
import re

from rich.console import Console, RenderHook
from rich.segment import Segment

from bertner.text import plural  # noqa: F401  (the commands' messages count things too)

# C0 controls but tab and line feed, a carriage return not ending a line, DEL, C1 controls, and the
# bidirectional overrides and isolates that reorder what a terminal shows.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)")


def printable(text: str) -> str:
    """`text` with each control character written as its escape (ESC as `\\u001b`): safe on a terminal.

    JSON's own escape form, so JSON printed here (`--json`) still reads back to the same strings.
    """
    return CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


class EscapeControls(RenderHook):
    """A console's render hook: the text of whatever it prints goes through `printable`.

    Applied to the rendered segments, so it holds for every table, message and document; rich's own
    control segments (cursor moves of the progress bar) are left alone.
    """

    def process_renderables(self, renderables: list) -> list:
        return [_Escaped(r) for r in renderables]


class _Escaped:
    def __init__(self, renderable) -> None:
        self.renderable = renderable

    def __rich_console__(self, console, options):
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(printable(segment.text), segment.style)


def escaping(console: Console) -> Console:
    """`console`, showing control characters escaped (every console the commands print through)."""
    console.push_render_hook(EscapeControls())
    return console


# In a pipe or a log nothing is laid out for a screen: rich would wrap every line at 80 columns (a path in a
# warning split in two) and cut the last progress line short. There a line is as long as its text and a table
# as wide as it needs.
PIPE_WIDTH = 10_000


def _console(stderr: bool = False) -> Console:
    console = escaping(Console(stderr=stderr))
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


out = _console()
err = _console(stderr=True)


def warn(message: str) -> None:
    # soft_wrap: never broken into lines, also on a terminal (which wraps it for the eye; a copied path stays whole).
    err.print(f"[yellow]warning:[/yellow] {printable(message)}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(printable(message), highlight=False, soft_wrap=True)


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
