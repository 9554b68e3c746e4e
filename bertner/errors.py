"""Our exception types. The CLI prints any BertnerError as one line and exits non-zero."""

from __future__ import annotations


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


class TrainingError(BertnerError):
    """Training stopped for a reason the user must act on (NaN loss, out of memory)."""


class NotBuiltYet(BertnerError):
    """A command that exists in the CLI but is not implemented yet."""

    exit_code = 2
