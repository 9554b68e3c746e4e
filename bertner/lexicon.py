"""Lexicons: dictionaries whose words become features of each character (`--lexicon`).

A lexicon is a list of entries, each a term with a type (`disease`, `person`, `word`) and a
frequency. Sources: `jieba` (the general Chinese dictionary inside the jieba package, its
part-of-speech tags read as types), a term-list file (`term[TAB type[TAB frequency]]` per line)
or a folder of them (each file's name is the type of its terms).

Features per character follow SoftLexicon (Ma et al., ACL 2020): the entries whose term the
character Begins, is in the Middle of, Ends, or is as a Single-character term. `text_features`
finds them with an Aho-Corasick automaton (pyahocorasick) once per window; the model pools each
set into a vector (`models/lexicon.py`). Entries are numbered from 1 (0 is "no entry", padding).

A trained run keeps its lexicon in `lexicon.tsv.gz` (entries, each with the weight and word
vector id training gave it), so predict and evaluate never need the source again.
"""

from __future__ import annotations

import gzip
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Container, Iterable, Sequence

import torch
from torch import Tensor

from bertner.errors import BertnerError, DataError, RunError
from bertner.fileio import atomic_path, decode_utf8, input_files, split_lines

JIEBA = "jieba"
# jieba's part-of-speech tags that name entity-like words; every other tag is a plain "word".
JIEBA_TYPES = {"nr": "person", "ns": "place", "nt": "organization", "nz": "proper_noun"}
MAX_TERM_CHARS = 256  # the default window: a longer term can never match inside one
SETS = ("B", "M", "E", "S")  # begins, middle, ends, single
# A term matched fewer times in training gets no vector of its own (it shares "rare or unseen" 0 with
# terms first met at prediction): its vector would hardly train, and the table's size is most of a
# lexicon step's cost on CPU (MSRA with jieba: 77k matched terms, 26k at 5 or more).
WORD_MIN_COUNT = 5
MAX_SLOTS = 24  # entries kept per character (the most frequent): Ruijin with jieba + huatuo peaks near 30
FILE_HEADER = "#bertner-lexicon 1\tterm\ttype\tweight\tword"
FILE_NAME = "lexicon.tsv.gz"


@dataclass
class Lexicon:
    """Entries (term, type, frequency); after `fit`, each entry's pooling weight and word vector id.

    Entry `i` (0-based here) is feature id `i + 1`. Terms that training text matched fewer than
    WORD_MIN_COUNT times share word vector 0, so a term first met at prediction time still reaches
    the model by its type and its set (B/M/E/S); `weights` rank entries by how often training matched them.
    """

    terms: list[str]
    types: list[str]
    frequencies: list[float]
    sources: list[str] = field(default_factory=list)
    weights: list[float] | None = None  # log(2 + matches in the training text), set by `fit`
    words: list[int] | None = None  # word vector id per entry (0: rare or unseen in training), set by `fit`

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def type_names(self) -> list[str]:
        return sorted(set(self.types))

    @property
    def word_count(self) -> int:
        """Rows of the word vector table: 0 (rare or unseen words) and one per word training matched often."""
        return max(self.words, default=0) + 1 if self.words is not None else 1

    def fit(self, texts: Iterable[str], matcher: "LexiconMatcher | None" = None, pretrained: Container[str] = ()) -> None:
        """Weights and word ids from the training text: how often each entry's term occurs there.

        `matcher`: this lexicon's, when the caller has one already (building the automaton takes seconds).
        `pretrained`: terms with a pretrained vector (`--init-embeddings`); each gets a word vector of its
        own however rarely training matched it, as pretrained characters join the vocabulary.
        """
        matcher = matcher or LexiconMatcher(self)
        counts: Counter[int] = Counter()
        for text in texts:
            for _, _, entries in matcher.matches(text):
                counts.update(entries)
        self.weights = [math.log(2 + counts[i + 1]) for i in range(len(self))]
        word_ids: dict[str, int] = {}
        self.words = []
        for i, term in enumerate(self.terms):
            if counts[i + 1] >= WORD_MIN_COUNT or term in pretrained:
                self.words.append(word_ids.setdefault(term, len(word_ids) + 1))
            else:
                self.words.append(0)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per feature id (row 0: padding): word vector id, type id, pooling weight."""
        if self.words is None or self.weights is None:
            raise ValueError("the lexicon is not fitted to training text yet")
        type_ids = {name: i for i, name in enumerate(self.type_names)}
        words = torch.tensor([0, *self.words], dtype=torch.long)
        types = torch.tensor([0, *(type_ids[t] for t in self.types)], dtype=torch.long)
        weights = torch.tensor([0.0, *self.weights], dtype=torch.float32)
        return words, types, weights

    # -- the run's copy ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        if self.words is None or self.weights is None:
            raise ValueError("only a fitted lexicon is saved with a run")
        lines = [FILE_HEADER, "#sources\t" + "\t".join(self.sources)]
        lines += [f"{t}\t{y}\t{w:.6g}\t{i}" for t, y, w, i in zip(self.terms, self.types, self.weights, self.words)]
        with atomic_path(path) as temporary, gzip.open(temporary, "wt", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Lexicon":
        """A run's saved lexicon, checked (a damaged file is a RunError naming it)."""
        try:
            with gzip.open(path, "rt", encoding="utf-8", newline="\n") as handle:
                lines = handle.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise RunError(f"{path}: unreadable lexicon ({exc})") from None
        if not lines or lines[0] != FILE_HEADER:
            raise RunError(f"{path}: not a bertner lexicon (first line {lines[0][:40]!r})")
        sources = lines[1].split("\t")[1:] if len(lines) > 1 and lines[1].startswith("#sources") else []
        lexicon = cls([], [], [], sources, [], [])
        for number, line in enumerate(lines[2:], start=3):
            if not line:
                continue
            parts = line.split("\t")
            try:
                term, kind, weight, word = parts
                lexicon.add(term, kind, 1.0)
                lexicon.weights.append(float(weight))
                lexicon.words.append(int(word))
            except (ValueError, TypeError):
                raise RunError(f"{path}:{number}: damaged lexicon entry") from None
        if not lexicon.terms or min(lexicon.words) < 0:
            raise RunError(f"{path}: damaged lexicon (no entries, or a negative word id)")
        return lexicon

    def add(self, term: str, kind: str, frequency: float) -> None:
        self.terms.append(term)
        self.types.append(kind)
        self.frequencies.append(frequency)


# ----------------------------------------------------------------------------- reading sources

def fold(text: str) -> str:
    """Case-folded character by character, so offsets stay those of the text (`İ`.lower() is two)."""
    return "".join(c if len(low := c.lower()) != 1 else low for c in text)


def read_lexicon(sources: Sequence[str]) -> Lexicon:
    """All `sources` merged into one lexicon: one entry per distinct (term, type), the highest frequency kept."""
    merged: dict[tuple[str, str], float] = {}
    for source in sources:
        entries = read_source(source)
        for key, frequency in entries.items():
            merged[key] = max(frequency, merged.get(key, 0.0))
    lexicon = Lexicon([], [], [], list(sources))
    for (term, kind), frequency in sorted(merged.items()):
        lexicon.add(term, kind, frequency)
    return lexicon


def read_source(source: str) -> dict[tuple[str, str], float]:
    """One `--lexicon` value: `jieba`, a term-list file or a folder of them; DataError naming the file and line."""
    if source == JIEBA:
        return read_jieba()
    path = Path(source).expanduser()
    if path.is_dir():
        files = input_files(path, (".txt",), ignore_case=True)
        if not files:
            raise DataError("a lexicon folder needs term-list files named TYPE.txt; found none", path)
        entries: dict[tuple[str, str], float] = {}
        for file in files:
            entries.update(read_term_file(file, file.stem))
        return entries
    if not path.exists():
        raise BertnerError(f"--lexicon {source}: no such file or folder (give a term-list file, a folder of them, or jieba)")
    return read_term_file(path, path.stem)


def read_term_file(path: Path, default_type: str) -> dict[tuple[str, str], float]:
    """`term[TAB type[TAB frequency]]` per line; blank lines skipped; the type defaults to the file's name."""
    check_type(default_type, path, None, "the file name")
    entries: dict[tuple[str, str], float] = {}
    for number, line in enumerate(split_lines(decode_utf8(path).lstrip("\ufeff")), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) > 3:
            raise DataError(f"expected term, type and frequency separated by tabs; found {len(parts)} columns", path, number)
        term = strip_controls(parts[0])
        kind = parts[1].strip() if len(parts) > 1 and parts[1].strip() else default_type
        check_term(term, path, number)
        check_type(kind, path, number, "the type")
        frequency = 1.0
        if len(parts) == 3 and parts[2].strip():
            try:
                frequency = float(parts[2])
            except ValueError:
                frequency = -1.0
            if not (math.isfinite(frequency) and frequency >= 0):
                raise DataError(f"the frequency {parts[2].strip()[:20]!r} is not a number >= 0", path, number)
        key = (fold(term), kind)
        entries[key] = max(frequency, entries.get(key, 0.0))
    if not entries:
        raise DataError("the lexicon holds no terms", path)
    return entries


def strip_controls(term: str) -> str:
    """Whitespace and control characters off both ends: term lists in the wild end lines in DEL (0x7f)."""
    start, end = 0, len(term)
    while start < end and (term[start].isspace() or unicodedata.category(term[start]) == "Cc"):
        start += 1
    while end > start and (term[end - 1].isspace() or unicodedata.category(term[end - 1]) == "Cc"):
        end -= 1
    return term[start:end]


def check_term(term: str, path: Path, line: int) -> None:
    if not term:
        raise DataError("a line with a type but no term", path, line)
    if len(term) > MAX_TERM_CHARS:
        raise DataError(f"a term of {len(term):,} characters; terms are at most {MAX_TERM_CHARS}", path, line)
    if any(unicodedata.category(c) == "Cc" for c in term):
        raise DataError("a term holding a control character", path, line)


def check_type(kind: str, path: Path, line: int | None, what: str) -> None:
    if not kind or any(c.isspace() or unicodedata.category(c) == "Cc" for c in kind):
        raise DataError(f"{what} {kind[:40]!r} is not a type name (no spaces or control characters)", path, line)


def read_jieba() -> dict[tuple[str, str], float]:
    """jieba's `dict.txt` (word, frequency, part of speech), its entity-like tags as types."""
    try:
        import jieba
    except ImportError:
        raise BertnerError('--lexicon jieba needs the jieba package: pip install "bertner[zh]"') from None
    path = Path(jieba.__file__).parent / "dict.txt"
    entries: dict[tuple[str, str], float] = {}
    for number, line in enumerate(decode_utf8(path).splitlines(), start=1):
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            frequency = float(parts[1])
        except ValueError:
            raise DataError("not a jieba dictionary line (word, frequency, tag)", path, number) from None
        kind = JIEBA_TYPES.get(parts[2] if len(parts) > 2 else "", "word")
        key = (fold(parts[0]), kind)
        entries[key] = max(frequency, entries.get(key, 0.0))
    return entries


# ----------------------------------------------------------------------------- matching

class LexiconMatcher:
    """Every occurrence of every term in a text (overlapping and nested ones too)."""

    def __init__(self, lexicon: Lexicon):
        import ahocorasick

        by_term: dict[str, list[int]] = {}
        for index, term in enumerate(lexicon.terms, start=1):
            by_term.setdefault(term, []).append(index)
        self.automaton = ahocorasick.Automaton()
        for term, entries in by_term.items():
            self.automaton.add_word(term, tuple(entries))
        self.automaton.make_automaton()
        self.lexicon = lexicon

    def matches(self, text: str) -> list[tuple[int, int, tuple[int, ...]]]:
        """(start, end, feature ids) of every term occurrence, ends exclusive."""
        if not text:
            return []
        found = []
        for last, entries in self.automaton.iter(fold(text)):
            length = len(self.lexicon.terms[entries[0] - 1])
            found.append((last + 1 - length, last + 1, entries))
        return found

    def char_features(self, text: str) -> list[list[tuple[int, int]]]:
        """Per character, its (feature id, set) pairs: set 0 B, 1 M, 2 E, 3 S."""
        per_char: list[list[tuple[int, int]]] = [[] for _ in text]
        for start, end, entries in self.matches(text):
            if end - start == 1:
                for entry in entries:
                    per_char[start].append((entry, 3))
                continue
            for entry in entries:
                per_char[start].append((entry, 0))
                per_char[end - 1].append((entry, 2))
                for i in range(start + 1, end - 1):
                    per_char[i].append((entry, 1))
        for i, slots in enumerate(per_char):
            if len(slots) > MAX_SLOTS:
                # Keep the entries training matched most (before fitting: the source's frequencies).
                rank = self.lexicon.weights or self.lexicon.frequencies
                per_char[i] = sorted(slots, key=lambda slot: -rank[slot[0] - 1])[:MAX_SLOTS]
        return per_char

    def token_features(self, text: str, offsets: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """`[tokens, K]` feature ids and sets (0-padded) for tokens that are one character each (char alignment)."""
        per_char = self.char_features(text)
        rows = [per_char[start] for start, _ in offsets]
        width = max((len(r) for r in rows), default=0) or 1
        flat_ids: list[int] = []
        flat_sets: list[int] = []
        for slots in rows:
            pad = width - len(slots)
            flat_ids.extend([s[0] for s in slots] + [0] * pad)
            flat_sets.extend([s[1] for s in slots] + [0] * pad)
        shape = (len(rows), width)
        return (torch.tensor(flat_ids, dtype=torch.int32).view(shape),
                torch.tensor(flat_sets, dtype=torch.int8).view(shape))
