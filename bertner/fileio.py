"""Atomic writes: write to a temporary name beside the target, then rename, so nothing is half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from bertner.errors import BertnerError, OutputExistsError


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto the target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
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
