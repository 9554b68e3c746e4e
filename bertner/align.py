"""Characters <-> tokens: the only module that knows about tokens.

Two modes:

* `char`: one character is one token, exact by construction (Chinese BERT vocabularies hold
  every common character). Unknown characters fall back to their lower-case / NFKC form, then
  `[UNK]`. Whitespace gets a token of its own (`[unused1]` / `[SPACE]`): line breaks and spaces
  separate adjacent entities in clinical text (dropping them cost 0.04 dev F1 on Ruijin after one
  epoch, 0.003 after two). `whitespace_tokens=False` skips it as Hugging Face tokenizers do (14%
  fewer tokens on Ruijin; no Ruijin entity starts or ends on whitespace, so spans stay exact).
* `subword`: the fast tokenizer's own pieces with their offset mapping. Whitespace belongs to no
  token; an entity boundary inside a token (`5` of `5g`) cannot be represented exactly and is
  counted as *inexact*.

Everything else in bertner speaks character `Span`s; the helpers at the bottom convert spans to
token spans / tags and back, and cut long token sequences into overlapping chunks.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from bertner.errors import ModelError
from bertner.spans import Span
from bertner.tags import spans_to_tags

CJK_CHAR_THRESHOLD = 5000  # vocabularies with more single CJK characters than this are "Chinese"


@dataclass
class TokenizedText:
    """The tokens of one text, without special tokens, each with its character span `[start, end)`."""

    ids: list[int]
    offsets: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)


def _special_id(vocab: Mapping[str, int], token: str, what: str) -> int:
    if token not in vocab:
        raise ModelError(f"the vocabulary has no {what} token {token!r}; char alignment needs it")
    return vocab[token]


class CharAligner:
    """One character -> one token, by vocabulary look-up (cached per distinct character)."""

    mode = "char"

    def __init__(
        self,
        vocab: Mapping[str, int],
        unk_token: str = "[UNK]",
        space_token: str | None = None,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        whitespace_tokens: bool = True,
    ):
        self.whitespace_tokens = whitespace_tokens
        self.vocab = dict(vocab)
        self.unk_id = _special_id(self.vocab, unk_token, "unknown")
        self.cls_id = _special_id(self.vocab, cls_token, "[CLS]")
        self.sep_id = _special_id(self.vocab, sep_token, "[SEP]")
        self.pad_id = _special_id(self.vocab, pad_token, "padding")
        if space_token is None:
            space_token = next((t for t in ("[unused1]", "[SPACE]") if t in self.vocab), unk_token)
        elif space_token not in self.vocab:
            raise ModelError(f"the vocabulary has no space token {space_token!r}")
        self.space_token = space_token
        self.space_id = self.vocab[space_token]
        self._cache: dict[str, int] = {}

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, space_token: str | None = None, whitespace_tokens: bool = True
    ) -> "CharAligner":
        vocab = tokenizer.get_vocab()
        return cls(
            vocab,
            unk_token=str(tokenizer.unk_token or "[UNK]"),
            space_token=space_token,
            cls_token=str(tokenizer.cls_token or "[CLS]"),
            sep_token=str(tokenizer.sep_token or "[SEP]"),
            pad_token=str(tokenizer.pad_token or "[PAD]"),
            whitespace_tokens=whitespace_tokens,
        )

    def token_id(self, char: str) -> int:
        """The id of one character: itself, its lower case, its NFKC form (lowered), else [UNK]."""
        found = self._cache.get(char)
        if found is not None:
            return found
        if char.isspace():
            found = self.space_id
        else:
            vocab = self.vocab
            found = vocab.get(char)
            if found is None:
                nfkc = unicodedata.normalize("NFKC", char)
                for candidate in (char.lower(), nfkc, nfkc.lower()):
                    if candidate in vocab:
                        found = vocab[candidate]
                        break
                else:
                    found = self.unk_id
        self._cache[char] = found
        return found

    def encode(self, text: str) -> TokenizedText:
        cache = self._cache
        for char in set(text):
            if char not in cache:
                self.token_id(char)
        if self.whitespace_tokens:
            ids = list(map(cache.__getitem__, text))
            offsets = list(zip(range(len(text)), range(1, len(text) + 1)))
        else:
            kept = [i for i, char in enumerate(text) if not char.isspace()]
            ids = [cache[text[i]] for i in kept]
            offsets = [(i, i + 1) for i in kept]
        return TokenizedText(ids, offsets)


class SubwordAligner:
    """The fast tokenizer's pieces with their character offsets (no special tokens)."""

    mode = "subword"

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(
                f"subword alignment needs a fast tokenizer with offset mappings; "
                f"{type(tokenizer).__name__} is not one (use --alignment char for a BERT-style vocabulary)"
            )
        self.tokenizer = tokenizer
        ids = {
            "cls": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
            "sep": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
            "pad": tokenizer.pad_token_id,
        }
        missing = [name for name, value in ids.items() if value is None]
        if missing:
            raise ModelError(f"the tokenizer has no {', '.join(missing)} token; cannot build model inputs")
        self.cls_id, self.sep_id, self.pad_id = ids["cls"], ids["sep"], ids["pad"]

    def encode(self, text: str) -> TokenizedText:
        if not text:
            return TokenizedText([], [])
        # The backend tokenizer: no length warnings, no truncation, no special tokens.
        encoding = self.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for token_id, (start, end) in zip(encoding.ids, encoding.offsets):
            # Byte-level BPE offsets may include the leading space; a token owns only non-space text.
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if start >= end:
                continue  # a token for nothing but whitespace: drop it, like the characters it stands for
            ids.append(token_id)
            offsets.append((start, end))
        return TokenizedText(ids, offsets)


Aligner = CharAligner | SubwordAligner


def _vocab_of(tokenizer_or_vocab: Any) -> dict[str, int]:
    if isinstance(tokenizer_or_vocab, Mapping):
        return dict(tokenizer_or_vocab)
    return tokenizer_or_vocab.get_vocab()


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK Unified Ideographs
        or 0x3400 <= code <= 0x4DBF  # Extension A
        or 0x20000 <= code <= 0x2A6DF  # Extension B
        or 0xF900 <= code <= 0xFAFF  # Compatibility Ideographs
    )


def default_mode(tokenizer_or_vocab: Any) -> str:
    """`char` for Chinese vocabularies (many single CJK characters), else `subword`."""
    vocab = _vocab_of(tokenizer_or_vocab)
    cjk = sum(1 for token in vocab if len(token) == 1 and _is_cjk(token))
    return "char" if cjk > CJK_CHAR_THRESHOLD else "subword"


def make_aligner(mode: str, tokenizer_or_vocab: Any, whitespace_tokens: bool = True) -> Aligner:
    """An aligner for `mode` (`char`, `subword` or `auto`) from a fast tokenizer or a plain vocab.

    `whitespace_tokens` (char mode only): give whitespace characters a token, or skip them.
    """
    if mode == "auto":
        mode = default_mode(tokenizer_or_vocab)
    if mode == "char":
        if isinstance(tokenizer_or_vocab, Mapping):
            return CharAligner(tokenizer_or_vocab, whitespace_tokens=whitespace_tokens)
        return CharAligner.from_tokenizer(tokenizer_or_vocab, whitespace_tokens=whitespace_tokens)
    if mode == "subword":
        if isinstance(tokenizer_or_vocab, Mapping):
            raise ModelError("subword alignment needs a tokenizer, not only a vocabulary")
        return SubwordAligner(tokenizer_or_vocab)
    raise ModelError(f"unknown alignment {mode!r}; use auto, char or subword")


# ---------------------------------------------------------------------------------------------
# spans <-> token spans


def token_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[tuple[Span | None, bool]]:
    """For each character span: its token span (None when it covers no token) and whether it is exact.

    A token belongs to an entity when its characters overlap the entity. An entity is *inexact*
    when its start or end does not fall on a token boundary (inside a token, or on characters no
    token covers such as a leading space), so the round trip would change it. Offsets in text order.
    """
    starts = [start for start, _ in offsets]
    ends = [end for _, end in offsets]
    result: list[tuple[Span | None, bool]] = []
    for span in spans:
        first = bisect_right(ends, span.start)  # first token ending after the entity starts
        last = bisect_left(starts, span.end) - 1  # last token starting before the entity ends
        while first <= last and offsets[first][1] <= offsets[first][0]:
            first += 1  # skip empty tokens
        while last >= first and offsets[last][1] <= offsets[last][0]:
            last -= 1
        if first > last:
            result.append((None, False))
        else:
            exact = starts[first] == span.start and ends[last] == span.end
            result.append((Span(first, last + 1, span.label), exact))
    return result


def token_spans_to_spans(offsets: Sequence[tuple[int, int]], token_spans: Sequence[Span]) -> list[Span]:
    """Token-index spans -> character spans (start of the first token to end of the last)."""
    return [Span(offsets[s.start][0], offsets[s.end - 1][1], s.label) for s in token_spans]


def token_tags(tokenized: TokenizedText, spans: Sequence[Span], scheme: str = "BIO") -> tuple[list[str], int]:
    """Tag strings per token for character `spans`, and how many entities are not exactly kept.

    Entities sharing a token with an earlier one (`5` and `g` of `5g`) cannot both be tagged:
    the later one is dropped. Each entity that is dropped or inexact counts once.
    """
    pairs = sorted(
        ((token_span, exact) for token_span, exact in token_spans(tokenized.offsets, spans)),
        key=lambda pair: (pair[0] is None, pair[0] or Span(0, 0, "")),
    )
    kept: list[Span] = []
    bad = 0
    for token_span, exact in pairs:
        if token_span is None or (kept and kept[-1].end > token_span.start):
            bad += 1
            continue
        kept.append(token_span)
        bad += not exact
    return spans_to_tags(len(tokenized.ids), kept, scheme), bad


# ---------------------------------------------------------------------------------------------
# chunking of sequences longer than the encoder's limit


def chunk_ranges(n_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Cut `n_tokens` into `[start, end)` chunks of at most `max_tokens`, overlapping by >= `stride`.

    `stride` is the overlap (as in Hugging Face's `stride`), `0 <= stride < max_tokens`. The last
    chunk is moved left to be full length, so it may overlap its neighbour more. A sequence that
    fits is one chunk; an empty one is `[(0, 0)]`.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, not {max_tokens}")
    if not 0 <= stride < max_tokens:
        raise ValueError(f"stride (the overlap) must be in [0, {max_tokens}), not {stride}")
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max_tokens - stride
    ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + max_tokens
        if end >= n_tokens:
            ranges.append((n_tokens - max_tokens, n_tokens))
            break
        ranges.append((start, end))
        start += step
    return ranges


def merge_chunk_predictions(
    n_tokens: int, ranges: Sequence[tuple[int, int]], chunk_values: Sequence[Sequence[Any]]
) -> list[Any]:
    """One value per token, each from the chunk where the token is furthest from a chunk edge.

    `chunk_values[k]` holds the values of the tokens `ranges[k]`. The distance of token `i` in
    chunk `[start, end)` is `min(i - start, end - 1 - i)`, where an edge at the start or end of
    the whole text counts as infinitely far (there is no missing context there). Ties go to the
    earlier chunk.
    """
    if len(ranges) != len(chunk_values):
        raise ValueError(f"{len(ranges)} chunk ranges but {len(chunk_values)} chunk predictions")
    best: list[Any] = [None] * n_tokens
    best_distance = [-1] * n_tokens
    far = n_tokens + 1
    for (start, end), values in zip(ranges, chunk_values):
        if len(values) < end - start:
            raise ValueError(f"chunk {start}:{end} has only {len(values)} predictions")
        for i in range(start, end):
            left = far if start == 0 else i - start
            right = far if end >= n_tokens else end - 1 - i
            distance = min(left, right)
            if distance > best_distance[i]:
                best_distance[i] = distance
                best[i] = values[i - start]
    missing = [i for i, d in enumerate(best_distance) if d < 0]
    if missing:
        raise ValueError(f"tokens {missing[:5]} are in no chunk")
    return best
