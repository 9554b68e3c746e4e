"""File I/O shared by every command.

Inputs: listed by one helper that refuses what is not a readable file (a link that loops, a folder
named like a file, a pipe) and read by one decoder that refuses what is not UTF-8 text.
Outputs: written to a temporary name beside the target, then renamed, so nothing is half-written;
checked for writability before any work, and any OS error while writing is one line naming the path.
"""

from __future__ import annotations

import codecs
import errno
import json
import math
import os
import re
import shlex
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

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
    return decode_utf8_bytes(data, path)


# Byte-order marks of the encodings Windows editors save as "Unicode", longest first (UTF-32 LE starts as UTF-16 LE).
UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode_utf8_bytes(data: bytes, source: object) -> str:
    """`data` as UTF-8 text, checked as every input is (a file, or standard input with `source` "<stdin>").

    DataError naming `source` and the line for NUL bytes (a binary file), for UTF-16 or UTF-32 (named,
    with the command that converts it) and for any other bytes that are not UTF-8.
    """
    wide = wide_encoding(data)
    if wide is not None:
        if source == "<stdin>":
            convert = f"pipe it through iconv -f {wide} -t UTF-8"
        else:
            name, converted = shlex.quote(str(source)), shlex.quote(f"{source}.utf8")
            convert = f"convert it with: iconv -f {wide} -t UTF-8 {name} > {converted} && mv {converted} {name}"
        raise DataError(f"is {wide} text, not UTF-8; {convert}", source)
    nul = data.find(b"\x00")
    if nul >= 0:
        # Valid UTF-8 can hold NUL bytes, but no text file does: this is a binary file with a text name.
        raise DataError(f"looks like a binary file, not text (a NUL byte at byte {nul}); pass UTF-8 text files", source, _line_at(data, nul))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        fix = "convert it to UTF-8 (iconv -f ENCODING -t UTF-8)" if source == "<stdin>" else "re-save the file as UTF-8"
        raise DataError(f"not UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start}); {fix}", source, _line_at(data, e.start)) from None


def wide_encoding(data: bytes) -> str | None:
    """The encoding, as iconv names it, when `data` is UTF-16 or UTF-32 text, else None: told by its
    byte-order mark (UTF-16, UTF-32), or without one by the NUL byte beside each ASCII character (UTF-16LE, UTF-16BE)."""
    candidates = [name for bom, name in UNICODE_BOMS if data.startswith(bom)][:1]
    if not candidates and len(data) >= 8 and b"\x00" in data:
        # Every NUL on the same side of its byte pair, and in at least half the pairs: mostly ASCII text in UTF-16.
        candidates = [name for name, side in (("UTF-16LE", 0), ("UTF-16BE", 1))
                      if b"\x00" not in data[side::2] and data[1 - side :: 2].count(0) * 2 >= len(data) // 2]
    for name in candidates:
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        if all(c.isprintable() or c.isspace() for c in text.lstrip("\ufeff")):
            return name
    return None


def _line_at(data: bytes, position: int) -> int:
    return len(LINE_END_BYTES.findall(data, 0, position)) + 1


# Lists and mappings nested deeper than this in a JSON or YAML file are refused: no file bertner reads needs
# more than a few levels, and a deeper value would end in a RecursionError wherever it is used.
MAX_NESTING = 100


def parse_json(text: str) -> Any:
    """`json.loads`, refusing values nested more than MAX_NESTING deep (ValueError, as any bad JSON is)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested too deeply (more than {MAX_NESTING} levels)") from None
    check_nesting(value)
    return value


# Far more values than any config file or grid holds; ten lines of nested aliases stand for billions.
YAML_MAX_VALUES = 100_000


class YamlTooLarge(ValueError):
    """A YAML document whose aliases expand it past YAML_MAX_VALUES values, or into itself."""


def parse_yaml(text: str) -> Any:
    """The value of a YAML document as yaml.safe_load reads it (no code ever runs); every YAML file
    bertner reads goes through here. Refused (YamlTooLarge) when its aliases (`*name`) would expand it
    past YAML_MAX_VALUES values or into itself: safe_load keeps an alias as a shared reference, so a
    small file can stand for billions of values that any check, comparison or message would walk.
    Values nested more than MAX_NESTING deep are a ValueError too.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node)
        value = loader.construct_document(node)
    except RecursionError:  # PyYAML composes nested values recursively
        raise ValueError(f"nested too deeply (more than {MAX_NESTING} levels)") from None
    finally:
        loader.dispose()
    check_nesting(value)
    return value


def _check_expanded_size(root: yaml.Node) -> None:
    """YamlTooLarge when the node tree, every alias expanded, holds more than YAML_MAX_VALUES nodes.

    Counted without expanding: each node's size once (aliases share node objects), depth first
    without recursion, so nesting depth costs no stack.
    """
    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    sizes: dict[int, int] = {}
    expanding: set[int] = set()  # the nodes whose children are being counted: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        if counted:
            expanding.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children(node))
            if sizes[key] > YAML_MAX_VALUES:
                mark = node.start_mark
                raise YamlTooLarge(f"the value at line {mark.line + 1} holds more than {YAML_MAX_VALUES:,} values "
                                   "with its aliases (*name) expanded; no setting needs that many")
        elif key not in sizes:
            if key in expanding:
                mark = node.start_mark
                raise YamlTooLarge(f"the alias at line {mark.line + 1} refers to a value it is inside")
            expanding.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children(node) if id(child) not in sizes)


def check_nesting(value: Any) -> None:
    if nesting_depth(value) > MAX_NESTING:
        raise ValueError(f"nested too deeply (more than {MAX_NESTING} levels)")


def nesting_depth(value: Any) -> float:
    """How many lists and mappings deep `value` goes (inf for one that holds itself, as a YAML alias can).

    Without recursion, and each shared list or mapping (a YAML alias) measured once.
    """
    depths: dict[int, float] = {}
    open_ids: set[int] = set()  # the containers on the path being walked
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (list, dict)):
            continue
        children = [c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (list, dict))]
        if children_done:
            open_ids.discard(id(node))
            depths[id(node)] = 1 + max((depths[id(c)] for c in children), default=0)
        elif id(node) in open_ids:
            return math.inf
        elif id(node) not in depths:
            open_ids.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children)
    return depths.get(id(value), 0)


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

NAME_MAX = 255  # bytes in one file or folder name, on the common file systems
PATH_MAX = 4096  # bytes in a whole path (Linux)


def path_name_problem(path: str | os.PathLike) -> str | None:
    """Why no file system can hold `path` (a name over NAME_MAX bytes, or a path over PATH_MAX), or None.

    Checked for every path a command is given before it does anything (bertner.cli._app), so such a
    path is one line naming it, whichever file call would have met it first.
    """
    text = os.fspath(path)
    for part in Path(text).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            return f"{shortened(text, 80)}: the name {shortened(part, 40)} is {size} bytes long; file systems allow at most {NAME_MAX}"
    if len(os.fsencode(text)) >= PATH_MAX:
        return f"{shortened(text, 80)}: the path is {len(os.fsencode(text))} bytes long; file systems allow less than {PATH_MAX}"
    return None


def shortened(text: str, size: int) -> str:
    """`text` cut to at most `size` bytes of UTF-8 (at a character), with "..." when cut."""
    if len(os.fsencode(text)) <= size:
        return text
    cut = text
    while len(os.fsencode(cut)) > max(0, size - 3):
        cut = cut[:-1]
    return cut + "..."


def sibling_name(name: str, suffix: str, prefix: str = "", reserve: int = 0) -> str:
    """prefix + name + suffix, `name` cut (at a character) so the whole fits in NAME_MAX bytes, less `reserve`.

    Every name bertner makes beside an output (`.OUT.xxxxxxxx.tmp`, `OUT.partial`) comes from here, so
    any output name the file system accepts also gets its temporary and its partial file.
    """
    room = NAME_MAX - reserve - len(os.fsencode(prefix + suffix))
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return prefix + name + suffix


def check_writable(target: str | os.PathLike, folder: bool = False) -> None:
    """OutputError naming the path unless `target` (a file, or a folder with `folder`) can be written.

    Atomic writes create a temporary beside the target, so the nearest existing folder above it
    must be a writable folder, and so must the target itself when it is an existing folder.
    Run before any work, so a bad `--output` fails in a second, not after reading a corpus.
    """
    target = Path(target)
    if folder and target.is_symlink() and not target.exists():  # a file target just replaces the link
        raise OutputError(f"cannot write {target}: it is a broken link or a link that loops")
    if not folder and target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder; give a file name")
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


# What the operating system says when it refuses a write: disk full, quota, file too large, read-only, I/O, permission.
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM)


def write_failure(error: BaseException) -> str | None:
    """Why a write failed, when `error` is the operating system refusing it (disk full, no permission...);
    None for anything else. Libraries wrap that refusal in their own types (safetensors, tokenizers,
    torch.save), so their message is read for the system's words; our own errors are never one.
    """
    if isinstance(error, BertnerError):
        return None
    if isinstance(error, OSError):
        return error.strerror if error.errno in WRITE_ERRORS else None
    text = str(error)
    for code in WRITE_ERRORS:
        if os.strerror(code) in text:
            return os.strerror(code)
    if "file write failed" in text:  # torch.save's PytorchStreamWriter does not say why
        return "the file could not be written (is the disk full?)"
    return None


class WriteFailed(OutputError):
    """A write the operating system refused (`write_errors`), naming the output the user asked for."""

    def __init__(self, target: str | os.PathLike, reason: str, outcome: str):
        super().__init__(f"cannot write {target}: {reason}; {outcome}")
        self.reason = reason


@contextmanager
def write_errors(target: str | os.PathLike, outcome: str = "nothing was written") -> Iterator[None]:
    """A failed write inside (`write_failure`, or any OSError but a name too long) as one line:
    `cannot write TARGET: reason; outcome`. Only around code that writes and reads nothing.

    Nested (a file written atomically inside a folder written atomically), the outermost names it:
    the user asked for that output, not for a temporary file inside it.
    """
    try:
        yield
    except WriteFailed as failed:
        raise WriteFailed(target, failed.reason, outcome) from None
    except Exception as error:
        reason = write_failure(error)
        if reason is None and isinstance(error, OSError) and error.errno != errno.ENAMETOOLONG:
            reason = error.strerror or str(error)
        if reason is None:
            raise
        raise WriteFailed(target, reason, outcome) from None


def temporary_beside(target: Path, folder: bool) -> Path:
    """A fresh hidden temporary file (or folder) in `target`'s folder, made if needed.

    Whatever a caller checked before, the file system has the last word: its refusal is one line.
    """
    prefix = sibling_name(target.name, ".", prefix=".", reserve=len("xxxxxxxx.tmp"))  # 8 random characters, then .tmp
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto the target."""
    target = Path(target)
    if target.is_dir():
        raise OutputError(f"cannot write {target}: it is a folder; give a file name")
    tmp_path = temporary_beside(target, folder=False)
    try:
        with write_errors(target):
            yield tmp_path
            # mkstemp makes 0600, and writers that replace the file (safetensors) do too: results get
            # the umask's mode like any file, set after writing so that no writer can undo it.
            os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def umask_modes(folder: Path) -> None:
    """Give `folder` and everything in it the modes the umask gives new files and folders.

    mkdtemp makes the folder 0700, and some writers (safetensors, transformers' save_pretrained)
    make 0600 files: an output folder must read like any other the user makes.
    """
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


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
    with write_errors(target, "its earlier lines are kept"), os.fdopen(fd, "a", encoding="utf-8") as handle:
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
        with write_errors(target):
            yield tmp
            umask_modes(tmp)
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
