"""Lexicons: dictionaries whose words become features of each character (`--lexicon`).

A lexicon is a list of entries, each a term with a type (`disease`, `person`, `word`) and a
frequency. Sources: `jieba` (the general Chinese dictionary inside the jieba package, its
part-of-speech tags read as types), a term-list file (`term[TAB type[TAB frequency]]` per line)
or a folder of them (each file's name is the type of its terms).

Features per character follow SoftLexicon (Ma et al., ACL 2020): the entries whose term the
character Begins, is in the Middle of, Ends, or is as a Single-character term. `LexiconMatcher`
finds every occurrence in many windows at once (a trie walked with numpy) and turns them into
flat slots, once per window and run; the model pools each set into a vector (`models/lexicon.py`).
Entries are numbered from 1 (0 is "no entry", padding).

A trained run keeps its lexicon in `lexicon.tsv.gz` (entries, each with the weight and word
vector id training gave it), so predict and evaluate never need the source again.
"""

from __future__ import annotations

import gzip
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Container, Sequence

import numpy as np
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

    def fit(self, counts: Sequence[int], pretrained: Container[str] = ()) -> None:
        """Weights and word ids from how often the training text holds each entry's term, per feature id
        (`LexiconMatcher.entry_counts`; index 0 unused).

        `pretrained`: terms with a pretrained vector (`--init-embeddings`); each gets a word vector of its
        own however rarely training matched it, as pretrained characters join the vocabulary.
        """
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
        # Level 1: jieba's 349k entries in 0.4-0.8 s instead of 3-4.6 at gzip's default 9; the file is 18% larger.
        with atomic_path(path) as temporary, gzip.open(temporary, "wt", compresslevel=1, encoding="utf-8",
                                                       newline="\n") as handle:
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
    # Fast path: lower() of the whole text is lower() of each character, unless a character lowers to
    # several (the length grows) or a capital sigma's lower case depends on its neighbours.
    if "\u03a3" not in text and len(low := text.lower()) == len(text):
        return low
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


def jieba_module(purpose: str):
    """The jieba package, or a one-line error saying what needs it (`purpose` ... needs the jieba package)."""
    try:
        import jieba
    except ImportError:
        raise BertnerError(f'{purpose} needs the jieba package: pip install "bertner[zh]"') from None
    return jieba


def read_jieba() -> dict[tuple[str, str], float]:
    """jieba's `dict.txt` (word, frequency, part of speech), its entity-like tags as types."""
    path = Path(jieba_module("--lexicon jieba").__file__).parent / "dict.txt"
    rows = [line.split() for line in decode_utf8(path).splitlines()]
    words = fold("\n".join(parts[0] if parts else "" for parts in rows)).split("\n")  # one fold for all words
    entries: dict[tuple[str, str], float] = {}
    for number, (parts, word) in enumerate(zip(rows, words), start=1):
        if len(parts) < 2:
            continue
        try:
            frequency = float(parts[1])
        except ValueError:
            raise DataError("not a jieba dictionary line (word, frequency, tag)", path, number) from None
        key = (word, JIEBA_TYPES.get(parts[2] if len(parts) > 2 else "", "word"))
        entries[key] = max(frequency, entries.get(key, 0.0))
    return entries


# ----------------------------------------------------------------------------- matching

SEPARATOR = "\x00"  # between texts matched in one pass: no term holds a control character, so none spans two
MATCHES_PER_CHUNK = 1 << 20  # features are built for this many matches at a time (bounded memory)


@dataclass
class TextMatches:
    """Every term occurrence in some texts, found in one pass over them joined by SEPARATOR.

    Match `i` is term group `groups[i]` (a term and all its entries), ending before `ends[i]` of the
    joined texts; matches come in the order of their ends, and none leaves its text.
    """

    text_starts: np.ndarray  # int64 [texts + 1]: where each text begins in the joined texts, then the end
    ends: np.ndarray  # int64 per match, exclusive, ascending
    groups: np.ndarray  # int64 per match

    def __len__(self) -> int:
        return len(self.text_starts) - 1

    def text_bounds(self) -> np.ndarray:
        """Per text (and the end), the index of its first match: text t holds matches [b[t], b[t + 1])."""
        return np.searchsorted(self.ends, self.text_starts, side="right")


@dataclass
class LexiconSlots:
    """Lexicon features of a text (or a model input): one slot per (character, entry around it).

    Sorted by position (character or token), then in the order the entries were matched.
    """

    positions: np.ndarray  # int32: the character (or token) of each slot
    entries: np.ndarray  # int32: feature id (1-based entry)
    sets: np.ndarray  # int8: 0 B, 1 M, 2 E, 3 S

    def __len__(self) -> int:
        return len(self.positions)


class LexiconMatcher:
    """Every occurrence of every term in some texts (overlapping and nested ones too), and the features they give.

    The terms form a trie, kept as one sorted array of (parent node, character) keys per depth. Matching
    walks every start position of the texts down it at once, one depth per step, in numpy: MSRA's
    training text against jieba's 349k words in about a second, where pyahocorasick's automaton took
    five times as long to iterate (it scans a node's children one by one: 20,000 at the root).
    """

    def __init__(self, lexicon: Lexicon):
        by_term: dict[str, list[int]] = {}
        for index, term in enumerate(lexicon.terms, start=1):
            if SEPARATOR not in term:  # only an edited run file could hold one; it would match across texts
                by_term.setdefault(term, []).append(index)
        sizes = [len(ids) for ids in by_term.values()]
        self.group_length = np.array([len(term) for term in by_term], dtype=np.int64)  # a group: a term, all its entries
        self.group_size = np.array(sizes, dtype=np.int64)
        self.group_first = np.cumsum(self.group_size) - self.group_size  # a group's entries in group_entries
        self.group_entries = np.array([i for ids in by_term.values() for i in ids], dtype=np.int64)
        self.depths = build_trie(list(by_term), self.group_length)
        self.lexicon = lexicon

    def match(self, texts: Sequence[str]) -> TextMatches:
        """Every term occurrence in `texts`, all texts in one walk."""
        text_starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(text) + 1 for text in texts], out=text_starts[1:])
        ends, groups = walk_trie(self.depths, codepoints(fold(SEPARATOR.join(texts))))
        return TextMatches(text_starts, ends, groups)

    def entry_counts(self, matches: TextMatches) -> list[int]:
        """How often each entry's term occurs in the matched texts, per feature id (index 0 unused)."""
        per_group = np.bincount(matches.groups, minlength=len(self.group_length))
        counts = np.zeros(len(self.lexicon) + 1, dtype=np.int64)
        counts[self.group_entries] = np.repeat(per_group, self.group_size)
        return counts.tolist()

    def features(self, matches: TextMatches) -> list[LexiconSlots]:
        """Per text, the entries each character Begins, is in the Middle of, Ends or is as a Single-character term.

        A character keeps at most MAX_SLOTS entries, those training matched most (before fitting: the
        source's frequencies); ties keep the order of matching.
        """
        bounds = matches.text_bounds()
        result: list[LexiconSlots] = []
        first = 0
        while first < len(matches):
            # Texts first..last-1: as many as hold at most MATCHES_PER_CHUNK matches, and at least one.
            fitting = int(np.searchsorted(bounds, bounds[first] + MATCHES_PER_CHUNK, side="right")) - 1
            last = min(max(first + 1, fitting), len(matches))
            a, b = bounds[first], bounds[last]
            result.extend(self._chunk_features(matches.ends[a:b], matches.groups[a:b], matches.text_starts[first:last + 1]))
            first = last
        return result

    def text_features(self, texts: Sequence[str]) -> list[LexiconSlots]:
        """`features(match(texts))`: per text, its characters' lexicon slots."""
        return self.features(self.match(texts))

    def _chunk_features(self, ends: np.ndarray, groups: np.ndarray, text_starts: np.ndarray) -> list[LexiconSlots]:
        # Each match, once per entry of its term (a term can have several types) ...
        starts = ends - self.group_length[groups]
        sizes = self.group_size[groups]
        pair_first = np.cumsum(sizes) - sizes
        pair_entry = self.group_entries[np.repeat(self.group_first[groups] - pair_first, sizes) + np.arange(sizes.sum())]
        pair_length = np.repeat(self.group_length[groups], sizes)
        pair_start = np.repeat(starts, sizes)
        # ... then once per character it covers, with the character's set.
        within = np.arange(pair_length.sum()) - np.repeat(np.cumsum(pair_length) - pair_length, pair_length)
        length = np.repeat(pair_length, pair_length)
        chars = np.repeat(pair_start, pair_length) + within
        sets = np.where(length == 1, 3, np.where(within == 0, 0, np.where(within == length - 1, 2, 1))).astype(np.int8)
        entries = np.repeat(pair_entry, pair_length)
        order = np.argsort(chars, kind="stable")  # by character; each character's slots in the order matched
        chars, entries, sets = chars[order], entries[order], sets[order]
        chars, entries, sets = self._cap(chars, entries, sets)
        cuts = np.searchsorted(chars, text_starts)
        return [LexiconSlots((chars[x:y] - offset).astype(np.int32), entries[x:y].astype(np.int32), sets[x:y])
                for x, y, offset in zip(cuts[:-1], cuts[1:], text_starts[:-1])]

    def _cap(self, chars: np.ndarray, entries: np.ndarray, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At most MAX_SLOTS slots per character (`chars` sorted): the best ranked, ties in their order."""
        if len(chars) == 0:
            return chars, entries, sets
        base = chars[0]
        per_char = np.bincount(chars - base)
        crowded = np.flatnonzero((per_char > MAX_SLOTS)[chars - base])  # whole runs of slots, in order
        if len(crowded) == 0:
            return chars, entries, sets
        ranks = self.lexicon.weights or self.lexicon.frequencies
        rank = np.array([0.0, *ranks], dtype=np.float64)
        reordered = crowded[np.lexsort((crowded, -rank[entries[crowded]], chars[crowded]))]
        entries[crowded], sets[crowded] = entries[reordered], sets[reordered]
        run = chars[crowded]
        run_starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
        place = np.arange(len(run)) - np.repeat(run_starts, np.diff(np.r_[run_starts, len(run)]))
        keep = np.ones(len(chars), dtype=bool)
        keep[crowded[place >= MAX_SLOTS]] = False
        return chars[keep], entries[keep], sets[keep]


CHAR_BITS = 21  # every code point is below 2**21: a trie key is parent node * 2**21 + code point


def codepoints(text: str) -> np.ndarray:
    """The text's code points (lone surrogates too), one int64 per character."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)


def build_trie(terms: list[str], lengths: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per depth d (from 1), the sorted keys of the trie's nodes there and, per node, the term ending there (-1: none).

    A node's number is its key's index at its depth, so its children's keys at depth d + 1 are that number
    times 2**CHAR_BITS plus their characters.
    """
    chars = codepoints("".join(terms))
    first = np.cumsum(lengths) - lengths
    node = np.zeros(len(terms), dtype=np.int64)  # each term's node at the depth reached
    alive = np.arange(len(terms))
    depths = []
    for depth in range(1, int(lengths.max(initial=0)) + 1):
        alive = alive[lengths[alive] >= depth]
        keys, node[alive] = np.unique((node[alive] << CHAR_BITS) + chars[first[alive] + depth - 1], return_inverse=True)
        ending = np.full(len(keys), -1, dtype=np.int64)
        done = lengths[alive] == depth
        ending[node[alive[done]]] = alive[done]
        depths.append((keys, ending))
    return depths


def walk_trie(depths: list[tuple[np.ndarray, np.ndarray]], chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(end, term) of every occurrence of a trie's terms in `chars`, by end, the longer first where ends tie.

    That is the order an Aho-Corasick automaton reports them in (tests/test_lexicon.py holds one as reference).
    """
    start = np.arange(len(chars))
    node = np.zeros(len(chars), dtype=np.int64)
    found_ends, found_terms, found_lengths = [], [], []
    for depth, (keys, ending) in enumerate(depths, start=1):
        inside = start + depth - 1 < len(chars)
        start, node = start[inside], node[inside]
        key = (node << CHAR_BITS) + chars[start + depth - 1]
        at = np.searchsorted(keys, key).clip(max=len(keys) - 1)
        going = keys[at] == key
        start, node = start[going], at[going]
        term = ending[node]
        here = term >= 0
        found_ends.append(start[here] + depth)
        found_terms.append(term[here])
        found_lengths.append(np.full(int(here.sum()), depth, dtype=np.int64))
        if len(start) == 0:
            break
    if not found_ends:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ends, terms, lengths = np.concatenate(found_ends), np.concatenate(found_terms), np.concatenate(found_lengths)
    order = np.lexsort((-lengths, ends))
    return ends[order], terms[order]
