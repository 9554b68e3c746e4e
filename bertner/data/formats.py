"""The input formats, in one registry that `preprocess` and `evaluate` both use.

Each format registers its name, how a path is recognised as it, and its reader. Every reader returns
the same `Corpus`: documents (by the input's own split, or all under "all"), what was read, warnings.
A new format is one reader module plus one `register` call here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bertner.data.brat import read_brat_folder
from bertner.data.conll import COLUMN_SUFFIXES, read_conll
from bertner.data.jsonl import read_jsonl_documents
from bertner.data.splits import SPLITS
from bertner.errors import BertnerError, DataError
from bertner.fileio import folder_suffixes, input_files, missing_input
from bertner.spans import Document


@dataclass
class ReadOptions:
    """What some readers take: brat's strictness, CoNLL's tag scheme and stray-tag repair."""

    strict: bool = False
    scheme: str = "BIO"
    repair_tags: bool = False


@dataclass
class Corpus:
    """What a reader gives back: documents (by given split, or under "all"), read counts and warnings."""

    documents: dict[str, list[Document]]
    read: dict
    warnings: list[str] = field(default_factory=list)

    def all_documents(self) -> list[Document]:
        return [d for docs in self.documents.values() for d in docs]


@dataclass(frozen=True)
class InputFormat:
    """One input format: its name (--format), how a file or folder is recognised as it, and its reader."""

    name: str
    # Whether a folder holding files with these suffixes is this format (a file is told by its suffix).
    claims_folder: Callable[[set[str]], bool]
    claims_file: Callable[[Path], bool]
    read: Callable[[Path, ReadOptions], Corpus]


FORMATS: dict[str, InputFormat] = {}


def register(input_format: InputFormat) -> None:
    FORMATS[input_format.name] = input_format


def detect_format(path: Path, hint: str = "") -> str:
    """The name of the registered format a file or folder is in (the first that claims it, in order).

    `hint`: what to add when none does (preprocess: `; use --format`).
    """
    if path.is_file():
        return next(f.name for f in FORMATS.values() if f.claims_file(path))
    if not path.is_dir():
        raise missing_input(path)  # missing, or not a regular file (a pipe, a device)
    suffixes = {s.lower() for s in folder_suffixes(path)}  # the reader checks each file it reads
    for input_format in FORMATS.values():
        if input_format.claims_folder(suffixes):
            return input_format.name
    raise DataError(f"cannot tell the format: no .ann, .jsonl or column files{hint}", path)


def read_corpus(path: Path, name: str, options: ReadOptions | None = None) -> Corpus:
    if name not in FORMATS:
        raise BertnerError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[name].read(path, options or ReadOptions())


# ----------------------------------------------------------------------------- the readers


def _read_brat(path: Path, options: ReadOptions) -> Corpus:
    docs, r = read_brat_folder(path, options.strict)
    read = {
        "files": r.files, "characters": r.characters, "entities": r.entities, "discontinuous": r.discontinuous,
        "ignored_annotation_lines": dict(r.ignored), "text_mismatches": len(r.text_mismatches),
        "unpaired_files_skipped": len(r.unpaired), "bom_files": len(r.bom_files), "crlf_files": r.crlf_files,
    }
    return Corpus({"all": docs}, read, r.warnings)


def _read_conll(path: Path, options: ReadOptions) -> Corpus:
    by_split, r = read_conll(path, options.scheme, options.repair_tags)
    read = {
        "files": r.files, "sentences": r.sentences, "tokens": r.tokens, "characters": r.characters,
        "entities": r.entities, "discontinuous": 0, "repaired_tags": r.repaired_tags,
    }
    return Corpus(by_split, read, r.warnings)


def _read_jsonl(path: Path, options: ReadOptions) -> Corpus:  # noqa: ARG001 (no option applies)
    files = jsonl_files(path)
    names = {f.stem.lower(): f for f in files}
    given = {n: names[n] for n in SPLITS if n in names}
    if given:
        by_split = {n: read_jsonl_documents(f) for n, f in given.items()}
    else:
        by_split = {"all": [d for f in files for d in read_jsonl_documents(f)]}
    docs = [d for ds in by_split.values() for d in ds]
    read = {"files": len(given or files), "characters": sum(len(d.text) for d in docs),
            "entities": sum(len(d.entities) for d in docs), "discontinuous": 0}
    return Corpus(by_split, read, [])


def jsonl_files(path: Path) -> list[Path]:
    """The file itself, or the `.jsonl` files of a folder (at least one)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise missing_input(path)
    files = input_files(path, (".jsonl",))
    if not files:
        raise DataError("no .jsonl files found", path)
    return files


# Order matters: a folder with .ann files is brat even when it also holds other files.
register(InputFormat("brat", lambda suffixes: ".ann" in suffixes, lambda path: False, _read_brat))
register(InputFormat("jsonl", lambda suffixes: ".jsonl" in suffixes, lambda path: path.suffix.lower() == ".jsonl", _read_jsonl))
register(InputFormat("conll", lambda suffixes: bool(suffixes & set(COLUMN_SUFFIXES)), lambda path: True, _read_conll))
