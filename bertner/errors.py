"""Our exception types. The CLI prints any BertnerError as one line and exits non-zero.

The rule: a BertnerError (or a subclass) means the user's input is wrong (a file, an option, a run
directory, the machine's resources), and the message says what to change. A broken invariant of our own
code (overlapping spans reaching the tagger, tag sequences of different lengths reaching the scorer)
is a bug: raise a plain exception (ValueError, RuntimeError) so that it shows a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any


class BertnerError(Exception):
    """A problem the user can fix: bad input, bad option, missing file. Never a bug."""

    exit_code = 1


class DataError(BertnerError):
    """Input data that cannot be read as promised (bad offsets, bad encoding, bad tags)."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class OutputExistsError(BertnerError):
    """Refusing to overwrite results that are already there."""


class OutputError(BertnerError):
    """An output that cannot be written: no permission, a file where a folder must be, a full disk."""


class ModelError(BertnerError):
    """A model that cannot be loaded or built."""


class RunError(BertnerError):
    """A run directory that is missing, incomplete or from another format."""


class LockedError(BertnerError):
    """A folder another bertner process is writing into (training a run)."""


class TrainingError(BertnerError):
    """Training stopped for a reason the user must act on (NaN loss, out of memory)."""


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """A library's error message as one line of ours: its first paragraph, joined and shortened.

    Messages of torch, safetensors and transformers run over many lines; torch's end in advice
    to turn `weights_only` off, a safety we never tell anyone to remove: such paragraphs are left out.
    """
    paragraphs = [" ".join(line.strip() for line in block.splitlines() if line.strip())
                  for block in str(error).split("\n\n")]
    kept = [p for p in paragraphs if p and "weights_only" not in p]
    text = kept[0] if kept else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 60, 60
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 4
    return short


_SHORT_REPR = _short_repr()


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` for a message, at most `limit` characters: a value from a file can be huge
    (a long string, a list YAML aliases blew up), and is never echoed whole. Only as much of it is
    looked at as is shown."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
