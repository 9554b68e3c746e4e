"""Pretrained vectors from the user's own raw text (`bertner embeddings`), and reading vector files
for `--init-embeddings`.

`train_vectors` trains three word2vec models (gensim, skip-gram) on raw text: one on each text's
characters, one on its character bigrams, and, given lexicons, one on the lexicon words found in
it. The word sequence is every match of every term in text order (by start, then end), nested and
overlapping ones included, not a segmentation: SoftLexicon pools every matched term around a
character (`bertner/lexicon.py`), so every term the text holds needs a vector, and a segmentation
would give vectors only to the words it picks (never to 糖尿 inside 糖尿病).

One word2vec text file holds all three (`count dim`, then `token v1 .. vd` per line), told apart
by the token: a character is itself, a bigram is `[bigram]` + its two characters, a lexicon word
`[word]` + the term (case-folded as the lexicon matches). Without the prefixes a two-character word
would collide with a bigram, and a one-character word with a character. Other tools read the file
as any word2vec file; `read_vectors` reads it back, and reads a plain word2vec file from elsewhere
too: its one-character tokens are characters and, when it has no `[word]` entries, all its tokens
are words.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from bertner.errors import BertnerError, DataError, OutputExistsError
from bertner.fileio import atomic_path, check_input_file, check_writable, decode_utf8, input_files, missing_input, split_lines
from bertner.lexicon import JIEBA, LexiconMatcher, read_lexicon

log = logging.getLogger(__name__)

BIGRAM_PREFIX = "[bigram]"
WORD_PREFIX = "[word]"
KINDS = ("characters", "bigrams", "words")
# gensim cuts sentences longer than this many tokens (MAX_WORDS_IN_BATCH) without a word: longer texts go in pieces.
MAX_SENTENCE = 10_000
WINDOW = 5  # word2vec's usual context: +-5 tokens
NEGATIVE = 5


@dataclass
class VectorSettings:
    """`bertner embeddings` options. `dim` 128 is the bilstm's character width (`RecurrentConfig.char_dim`)."""

    dim: int = 128
    epochs: int = 5  # gensim's default; skip-gram passes are the slow part (Ruijin with jieba + huatuo: see README)
    min_count: int = 5  # as the lexicon's WORD_MIN_COUNT: rarer tokens get no vector (it would hardly train)
    workers: int | None = None  # None: every core this process may use
    seed: int = 42

    def check(self) -> None:
        for name, low in (("dim", 1), ("epochs", 1), ("min_count", 1), ("workers", 1), ("seed", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise BertnerError(f"--{name.replace('_', '-')} is {value!r}; give a whole number of at least {low}")

    @property
    def threads(self) -> int:
        if self.workers:
            return self.workers
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class VectorReport:
    """What `train_vectors` read and wrote."""

    output: Path
    files: int
    texts: int
    characters: int
    counts: dict[str, int]  # vectors written per kind (characters, bigrams, words)
    dim: int
    seconds: float
    bytes: int


# ----------------------------------------------------------------------------- raw text in

def raw_texts(inputs: Sequence[str | Path]) -> tuple[list[str], int]:
    """The texts of `inputs` and how many files held them.

    A `.jsonl` file gives the `text` of each line (preprocess's windows); any other file is plain
    text; a folder gives its `.txt` files, sub-folders included. A preprocessed data folder is
    refused: it holds dev and test text, which must not shape vectors a model is scored with.
    """
    from bertner.data.jsonl import read_windows

    files: list[Path] = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            if (path / "train.jsonl").is_file() and ((path / "dev.jsonl").exists() or (path / "labels.json").exists()):
                raise DataError(f"is a preprocessed data folder; give its training text alone ({path / 'train.jsonl'}): "
                                "dev and test text must not shape the vectors of a model scored on them", path)
            found = input_files(path, (".txt",), recursive=True, ignore_case=True)
            if not found:
                raise DataError("holds no .txt files (give text files, folders of them, or a train.jsonl)", path)
            files.extend(found)
        elif path.exists() or path.is_symlink():
            check_input_file(path)
            files.append(path)
        else:
            raise missing_input(path)
    texts: list[str] = []
    seen: set[tuple[int, int]] = set()
    for file in files:
        status = file.stat()
        if (status.st_dev, status.st_ino) in seen:  # a file given twice (or inside a folder also given) counts once
            continue
        seen.add((status.st_dev, status.st_ino))
        if file.suffix.lower() == ".jsonl":
            texts.extend(w.text for w in read_windows(file))
        else:
            texts.append(decode_utf8(file).lstrip("\ufeff"))
    if not any(not c.isspace() for text in texts for c in text):
        raise DataError("no text found: the inputs hold only empty or blank files", ", ".join(map(str, inputs)))
    return texts, len(seen)


def character_tokens(text: str) -> list[str]:
    """The text's characters, whitespace left out (the bilstm gives it a token of its own, not a vector)."""
    return [c for c in text if not c.isspace()]


def bigram_tokens(text: str) -> list[str]:
    """Each pair of neighbouring characters, none across whitespace (the bilstm's bigrams there hold its space token)."""
    return [a + b for a, b in zip(text, text[1:]) if not a.isspace() and not b.isspace()]


class WordTokens:
    """Every lexicon term matched in a text, in text order (start, then end); terms with whitespace left
    out (a word2vec token cannot hold a space)."""

    def __init__(self, matcher: LexiconMatcher):
        self.matcher = matcher
        self.terms = matcher.lexicon.terms

    def __call__(self, text: str) -> list[str]:
        matcher = self.matcher
        matches = matcher.match([text])
        starts = matches.ends - matcher.group_length[matches.groups]
        first_entries = matcher.group_entries[matcher.group_first[matches.groups]]  # a term's entries share it
        order = np.lexsort((matches.ends, starts))
        found = (self.terms[int(first_entries[i]) - 1] for i in order)
        return [term for term in found if not any(c.isspace() for c in term)]


class Sentences:
    """One kind's token sequences over the texts, made again on every pass (gensim makes epochs + 1):
    held whole, Ruijin's words alone would take gigabytes of Python strings."""

    def __init__(self, texts: list[str], tokens: Callable[[str], list[str]]):
        self.texts = texts
        self.tokens = tokens

    def __iter__(self) -> Iterator[list[str]]:
        for text in self.texts:
            tokens = self.tokens(text)
            for start in range(0, len(tokens), MAX_SENTENCE):
                yield tokens[start : start + MAX_SENTENCE]


# ----------------------------------------------------------------------------- training

def gensim_word2vec():
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise BertnerError('bertner embeddings needs gensim: pip install -e ".[embeddings]" '
                           '(or pip install "bertner[embeddings]")') from None
    return Word2Vec


def train_vectors(
    inputs: Sequence[str | Path],
    output: str | Path,
    lexicon: Sequence[str] = (),
    settings: VectorSettings = VectorSettings(),
    force: bool = False,
    on_epoch: Callable[[str, int], None] | None = None,
) -> VectorReport:
    """Train character, bigram and (with `lexicon` sources) lexicon-word vectors on the raw text of
    `inputs` and write them to `output` (word2vec text, atomically).

    `force`: replace an existing `output`. `on_epoch(kind, epoch)`: told after each epoch of each kind (1-based), for progress.
    """
    from bertner.runs import check_output_place

    settings.check()
    Word2Vec = gensim_word2vec()
    output = Path(output)
    check_output_place(output, [*inputs, *(s for s in lexicon if s != JIEBA)])
    check_writable(output)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists; pass --force to replace it")
    started = time.monotonic()
    texts, files = raw_texts(inputs)
    kinds: dict[str, Callable[[str], list[str]]] = {"characters": character_tokens, "bigrams": bigram_tokens}
    if lexicon:
        kinds["words"] = WordTokens(LexiconMatcher(read_lexicon(lexicon)))
    names = [{"characters": "character", "bigrams": "bigram", "words": "lexicon-word"}[kind] for kind in kinds]
    log.info(f"training {', '.join(names[:-1])} and {names[-1]} vectors on {sum(map(len, texts)):,} characters of text "
             f"from {files:,} file{'s' * (files != 1)}: word2vec skip-gram, {settings.dim} wide, {settings.epochs} epochs, "
             f"{settings.threads} worker{'s' * (settings.threads != 1)}")
    vectors: dict[str, tuple[list[str], object]] = {}
    for kind, tokens in kinds.items():
        model = Word2Vec(
            vector_size=settings.dim, window=WINDOW, min_count=settings.min_count, sg=1, negative=NEGATIVE,
            workers=settings.threads, seed=settings.seed,
        )
        sentences = Sentences(texts, tokens)
        model.build_vocab(sentences)
        if not model.wv.index_to_key:
            if kind == "characters":
                raise DataError(f"no character occurs {settings.min_count} times (--min-count); give more text",
                                ", ".join(map(str, inputs)))
            log.warning(f"no {kind[:-1]} occurs {settings.min_count} times (--min-count): the file holds no {kind}")
            continue
        model.train(sentences, total_examples=model.corpus_count, epochs=settings.epochs,
                    callbacks=[epoch_callback(kind, on_epoch)] if on_epoch else ())
        vectors[kind] = (list(model.wv.index_to_key), model.wv.vectors)
    size = write_vectors(output, vectors)
    return VectorReport(output, files, len(texts), sum(map(len, texts)), {k: len(v[0]) for k, v in vectors.items()},
                        settings.dim, time.monotonic() - started, size)


def epoch_callback(kind: str, on_epoch: Callable[[str, int], None]) -> object:
    """A gensim callback that tells `on_epoch` each finished epoch (gensim's callbacks must subclass its own)."""
    from gensim.models.callbacks import CallbackAny2Vec

    class Callback(CallbackAny2Vec):
        def __init__(self) -> None:
            self.epoch = 0

        def on_epoch_end(self, model) -> None:  # noqa: ARG002
            self.epoch += 1
            on_epoch(kind, self.epoch)

    return Callback()


def write_vectors(output: Path, vectors: dict[str, tuple[list[str], object]]) -> int:
    """One word2vec text file (characters, then bigrams, then words, each by frequency); its size in bytes."""
    prefixes = {"characters": "", "bigrams": BIGRAM_PREFIX, "words": WORD_PREFIX}
    count = sum(len(keys) for keys, _ in vectors.values())
    dim = next(iter(vectors.values()))[1].shape[1]
    with atomic_path(output) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(f"{count} {dim}\n")
        for kind, (keys, table) in vectors.items():
            prefix = prefixes[kind]
            for key, row in zip(keys, table.tolist()):
                handle.write(prefix + key + " " + " ".join(f"{v:.5g}" for v in row) + "\n")
    return output.stat().st_size


# ----------------------------------------------------------------------------- reading a vector file

@dataclass
class VectorTable:
    """Vectors by key: `index[key]` is the row of `vectors`."""

    index: dict[str, int] = field(default_factory=dict)
    vectors: Tensor = field(default_factory=lambda: torch.zeros(0, 0))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __getitem__(self, key: str) -> Tensor:
        return self.vectors[self.index[key]]


@dataclass
class PretrainedVectors:
    """`--init-embeddings`: character vectors, and where the source has them, bigram and lexicon-word vectors."""

    source: str
    characters: VectorTable
    bigrams: VectorTable = field(default_factory=VectorTable)  # keys: the two characters
    words: VectorTable = field(default_factory=VectorTable)  # keys: case-folded terms


def read_vectors(path: Path, words: set[str] | None = None) -> PretrainedVectors:
    """A word2vec text file (`[count dim]` header, then `token v1 .. vd`) as characters, bigrams and words.

    `words`: the (case-folded) terms whose vectors to keep (None: every word), so a large general
    file costs memory only for the terms a lexicon holds. DataError naming the line for a line
    that is not a token and numbers, a vector of another width, or a number that is not finite.
    """
    from bertner.lexicon import fold

    # Per kind: key -> row, and each row's numbers as text and line number (parsed together at the end: fast).
    found: dict[str, tuple[dict[str, int], list[str], list[int]]] = {kind: ({}, [], []) for kind in KINDS}
    plain_words: tuple[dict[str, int], list[str], list[int]] = ({}, [], [])  # all tokens, for a file without [word] entries
    has_words = False  # a [word] entry seen: the file's other tokens are not words
    for number, line in enumerate(split_lines(decode_utf8(path)), start=1):
        token, _, rest = line.strip(" ").partition(" ")
        if not line.strip() or (number == 1 and rest.isdigit() and token.isdigit()):
            continue
        if token.startswith(BIGRAM_PREFIX) and len(token) == len(BIGRAM_PREFIX) + 2:
            _add(found["bigrams"], token[len(BIGRAM_PREFIX):], rest, number)
        elif token.startswith(WORD_PREFIX) and len(token) > len(WORD_PREFIX):
            has_words = True
            if words is None or fold(token[len(WORD_PREFIX):]) in words:
                _add(found["words"], fold(token[len(WORD_PREFIX):]), rest, number)
        else:
            if len(token) == 1:
                _add(found["characters"], token, rest, number)
            if words is None or fold(token) in words:
                _add(plain_words, fold(token), rest, number)
    if not has_words:
        found["words"] = plain_words
    if not found["characters"][0]:
        raise DataError("holds no single-character vectors (word2vec text: `token v1 .. vd` per line)", path)
    width = len(found["characters"][1][0].split())
    tables = {kind: VectorTable(index, _parse_rows(rows, lines, width, path)) for kind, (index, rows, lines) in found.items()}
    return PretrainedVectors(str(path), tables["characters"], tables["bigrams"], tables["words"])


def _add(table: tuple[dict[str, int], list[str], list[int]], key: str, numbers: str, line: int) -> None:
    index, rows, lines = table
    if key not in index:  # the first vector of a key wins, as gensim's reader keeps it
        index[key] = len(rows)
        rows.append(numbers)
        lines.append(line)


def _parse_rows(rows: list[str], lines: list[int], width: int, path: Path) -> Tensor:
    """`[len(rows), width]` floats from each row's numbers as text; DataError naming the first bad line."""
    import warnings

    import numpy as np

    if not rows:
        return torch.zeros(0, width)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy's note that it stopped at text that is not a number
            values = np.fromstring(" ".join(rows), dtype=np.float32, sep=" ")
    except ValueError:  # numpy 2: text that is not a number
        values = np.zeros(0, dtype=np.float32)
    if values.size != len(rows) * width:  # a row of another width, or text that is not a number: find the line
        for numbers, line in zip(rows, lines):
            parts = numbers.split()
            try:
                [float(v) for v in parts]
            except ValueError:
                raise DataError("not a word2vec text line (a token, then numbers separated by spaces)", path, line) from None
            if len(parts) != width:
                raise DataError(f"a vector of {len(parts)} numbers where the file's others have {width}", path, line)
        raise DataError("not word2vec text (numbers that do not parse)", path)
    table = values.reshape(len(rows), width)
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        raise DataError("a vector holds a number that is not finite (nan or inf)", path, lines[int(np.argmin(finite))])
    return torch.from_numpy(table)


def narrowed(vectors: Tensor, width: int, what: str) -> Tensor:
    """`vectors` at `width` columns: as they are, or their first `width` principal components when
    the table is narrower (how a 128-wide file starts a 50-wide lexicon word table); never wider."""
    if width == vectors.shape[1]:
        return vectors
    if width > vectors.shape[1]:
        raise BertnerError(f"{what} is {width} wide, wider than the {vectors.shape[1]}-wide vectors of --init-embeddings; "
                           f"give at most {vectors.shape[1]}")
    centred = (vectors - vectors.mean(0, keepdim=True)).double()
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    projected = (centred @ basis[:width].T).float()
    # Fewer vectors than `width`: the components past their rank are zero.
    return torch.nn.functional.pad(projected, (0, width - projected.shape[1]))
