"""File I/O shared by every command.

Inputs: listed by one helper that refuses what is not a readable file (a link that loops, a folder
named like a file, a pipe) and read by one decoder that refuses what is not UTF-8 text.
Outputs: written to a temporary name beside the target, then renamed, so nothing is half-written;
checked for writability before any work, and any OS error while writing is one line naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from bertner.errors import BertnerError, DataError, OutputError, OutputExistsError

# Universal line ends, as open() translates them: other separators (\x0b, \x85, \u2028) stay
# inside a line, because brat offsets count them as ordinary characters.
LINE_END = re.compile(r"\r\n|\r|\n")
LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")


# ----------------------------------------------------------------------------- inputs

def split_lines(text: str) -> list[str]:
    """`text` cut at `\\r\\n`, `\\r` and `\\n` alike, so a file with CR-only line ends reads as many lines."""
    return LINE_END.split(text)


def _unreadable_reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a link that loops"
    if path.is_symlink() and error.errno == errno.ENOENT:
        return "a link to nothing"
    return error.strerror or str(error)


def decode_utf8(path: Path) -> str:
    """The file's text exactly as stored (no newline translation); DataError if unreadable, not UTF-8 or binary."""
    try:
        data = path.read_bytes()
    except OSError as e:  # a folder, a link that loops, no permission
        raise DataError(f"cannot read: {_unreadable_reason(path, e)}", path) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        # Valid UTF-8 can hold NUL bytes, but no text file does: this is a binary file with a text name.
        raise DataError(f"looks like a binary file, not text (a NUL byte at byte {nul}); pass UTF-8 text files", path, _line_at(data, nul))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"not UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start}); re-save the file as UTF-8", path, _line_at(data, e.start)
        ) from None


def _line_at(data: bytes, position: int) -> int:
    return len(LINE_END_BYTES.findall(data, 0, position)) + 1


def check_input_file(path: Path) -> None:
    """DataError unless `path` (links followed) is a regular file: never a folder, a broken link or a pipe that would hang."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise DataError(f"cannot read: {_unreadable_reason(path, e)}", path) from None
    if stat.S_ISDIR(mode):
        raise DataError("is a folder with a file's name; rename it or move it out of the input folder", path)
    if not stat.S_ISREG(mode):
        raise DataError("is not a regular file (a pipe, socket or device); pass regular files", path)


def missing_input(path: Path) -> DataError:
    """The error for an input that is neither a file nor a folder: missing, or why it cannot be read."""
    if not os.path.lexists(path):
        return DataError("no such file or folder", path)
    try:
        check_input_file(path)
    except DataError as e:
        return e
    return DataError("cannot read", path)


def folder_entries(folder: Path) -> list[Path]:
    """The entries of `folder`, sorted; DataError (not a traceback) when it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"cannot list this folder: {_unreadable_reason(folder, e)}", folder) from None


def folder_suffixes(folder: Path) -> set[str]:
    """The name suffixes in `folder` (names only, nothing opened): enough to tell a corpus format."""
    return {entry.suffix for entry in folder_entries(folder)}


def input_files(folder: Path, suffixes: tuple[str, ...], recursive: bool = False, ignore_case: bool = False) -> list[Path]:
    """The files in `folder` whose suffix is one of `suffixes`, sorted by path.

    Every input folder is listed here. An entry with a matching name that is not a regular file
    (a folder called `x.txt`, a link that loops or points nowhere, a pipe) is a DataError naming
    it. With `recursive`, sub-folders are searched too; links to folders are never followed, so a
    link loop cannot make the search endless.
    """
    files: list[Path] = []
    for entry in folder_entries(folder):
        if recursive and entry.is_dir() and not entry.is_symlink():
            files.extend(input_files(entry, suffixes, recursive, ignore_case))
            continue
        suffix = entry.suffix.lower() if ignore_case else entry.suffix
        if suffix in suffixes:
            check_input_file(entry)
            files.append(entry)
    return sorted(files)


# ----------------------------------------------------------------------------- outputs

def check_writable(target: str | os.PathLike, folder: bool = False) -> None:
    """OutputError naming the path unless `target` (a file, or a folder with `folder`) can be written.

    Atomic writes create a temporary beside the target, so the nearest existing folder above it
    must be a writable folder, and so must the target itself when it is an existing folder.
    Run before any work, so a bad `--output` fails in a second, not after reading a corpus.
    """
    target = Path(target)
    if folder and target.is_symlink() and not target.exists():  # a file target just replaces the link
        raise OutputError(f"cannot write {target}: it is a broken link or a link that loops")
    above = target.parent
    while not above.exists() and not above.is_symlink() and above != above.parent:
        above = above.parent  # exists() is False under a file too; the loop stops at that file
    places = [above] + ([target] if folder and target.is_dir() else [])
    for place in places:
        if not place.is_dir():
            what = "a file, not a folder" if place.exists() else "a broken link"
            raise OutputError(f"cannot write {target}: {place} is {what}")
        if not writable(place):
            raise OutputError(f"cannot write {target}: {place} is not writable")


def writable(folder: Path) -> bool:
    # os.access says yes to root everywhere; a folder without a single write bit is read-only by intent.
    return os.access(folder, os.W_OK | os.X_OK) and bool(folder.stat().st_mode & 0o222)


@contextmanager
def output_errors(target: str | os.PathLike) -> Iterator[None]:
    """Turn an OS error while writing `target` (no permission, disk full) into one line naming it.

    Use around atomic writes only: they leave nothing behind, so the message can say so.
    """
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}; nothing was written") from None


def temporary_beside(target: Path, folder: bool) -> Path:
    """A fresh hidden temporary file (or folder) in `target`'s folder, made if needed.

    Whatever a caller checked before, the file system has the last word: its refusal is one line.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto the target."""
    target = Path(target)
    tmp_path = temporary_beside(target, folder=False)
    try:
        yield tmp_path
        # mkstemp makes 0600, and writers that replace the file (safetensors) do too: results get
        # the umask's mode like any file, set after writing so that no writer can undo it.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def append_text(target: str | os.PathLike, text: str) -> None:
    """Append to a file (creating it), never through a symbolic link planted at its name."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as e:
        if Path(target).is_symlink():
            raise BertnerError(f"{target} is a symbolic link; refusing to write through it: remove the link") from None
        raise BertnerError(f"cannot write {target}: {e.strerror or e}") from None
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(text)


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(target: str | os.PathLike, rows: list[dict]) -> None:
    write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success move each file written there into `target`.

    Only the files written replace files of the same name: nothing else in `target` is deleted,
    subfolders included. Every destination is checked before the first move, so a conflict (a path
    component that is a file, a folder where a file must go) leaves `target` untouched; a move that
    still fails (disk full) says exactly which files were already moved. On failure the temporary
    folder is removed and `target` is untouched.
    """
    target = Path(target)
    tmp = temporary_beside(target, folder=True)
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)  # a new folder: one rename, so all of it or nothing appears
        else:
            move_files_into(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def relative_files(folder: Path) -> list[str]:
    """Every file under `folder`, as sorted POSIX paths relative to it."""
    return sorted(
        (Path(root) / name).relative_to(folder).as_posix() for root, _, names in os.walk(folder) for name in names
    )


def output_conflict(target: Path, relative: Iterable[str]) -> str | None:
    """Why the files `relative` cannot be written under `target` ("cannot write X: Y is a file"), or None.

    Checks what would make a move fail before anything is moved: an existing path component that
    is not a folder, or a folder where a file must go.
    """
    seen: set[Path] = set()
    for name in relative:
        destination = target / name
        folders = [target, *(target / p for p in reversed(Path(name).parents[:-1]))]
        for folder in folders:
            if folder in seen:
                continue
            seen.add(folder)
            if not folder.exists():
                break  # made fresh from here down: nothing there to conflict with
            if not folder.is_dir():
                return f"cannot write {destination}: {folder} is a file"
        if destination.is_dir():
            return f"cannot write {destination}: {destination} is a folder"
    return None


def move_files_into(staging: Path, target: Path) -> None:
    """Move every file of `staging` to the same relative path under `target`, in name order."""
    files = relative_files(staging)
    conflict = output_conflict(target, files)
    if conflict is not None:
        raise OutputExistsError(f"{conflict}; nothing was written")
    for done, name in enumerate(files):
        destination = target / name
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, destination)
        except OSError as e:
            written = "nothing was written" if done == 0 else (
                f"the first {done} of {len(files)} files in name order ({files[0]} to {files[done - 1]}) were written, the rest were not"
            )
            raise BertnerError(f"cannot write {destination}: {e.strerror or e}; {written}") from None
