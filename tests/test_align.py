import random
import time

import pytest
from conftest import BERT_TOKENIZER, need

from bertner.align import (
    CharAligner,
    SubwordAligner,
    TokenizedText,
    chunk_ranges,
    default_mode,
    make_aligner,
    merge_chunk_predictions,
    token_spans,
    token_spans_to_spans,
    token_tags,
)
from bertner.errors import ModelError
from bertner.predict import strip_whitespace
from bertner.spans import Span
from bertner.tags import tags_to_spans

SPECIALS = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("血糖尿病患者空腹胰岛素abcdhg0123456789/.")
VOCAB = {token: i for i, token in enumerate(SPECIALS + CHARS)}


@pytest.fixture(scope="module")
def bert_tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(need(BERT_TOKENIZER)))


def random_text_and_spans(rng: random.Random, n: int) -> tuple[str, list[Span]]:
    alphabet = CHARS + list("ABCDG") + [" ", "\n", "\r", "\t", "\u3000"] + list("😀龘§")
    text = "".join(rng.choice(alphabet) for _ in range(n))
    spans, pos = [], 0
    while pos < n - 1:
        start = pos + rng.randrange(0, 5)
        end = start + rng.randrange(1, 6)
        if end > n:
            break
        spans.append(Span(start, end, rng.choice("AB")))
        pos = end + rng.randrange(0, 3)
    return text, spans


# --- char mode ------------------------------------------------------------------------------



def spans_from_token_tags(tokenized, tags, scheme="BIO"):
    """Character spans from per-token tags: the inverse of `token_tags` for exact entities."""
    return token_spans_to_spans(tokenized.offsets, tags_to_spans(tags, scheme))

def test_char_ids_fallbacks_and_specials():
    aligner = CharAligner(VOCAB)
    assert aligner.mode == "char"
    assert (aligner.cls_id, aligner.sep_id, aligner.pad_id) == (VOCAB["[CLS]"], VOCAB["[SEP]"], VOCAB["[PAD]"])
    text = "血A \n😀\u3000ａ"
    unk, space = VOCAB["[UNK]"], VOCAB["[unused1]"]
    skipped = CharAligner(VOCAB, whitespace_tokens=False).encode(text)  # space, newline, U+3000: no token
    assert skipped.ids == [VOCAB["血"], VOCAB["a"], unk, VOCAB["a"]]
    assert skipped.offsets == [(0, 1), (1, 2), (4, 5), (6, 7)]
    kept = aligner.encode(text)  # the default: whitespace has a token
    assert kept.ids == [VOCAB["血"], VOCAB["a"], space, space, unk, space, VOCAB["a"]]
    assert kept.offsets == [(i, i + 1) for i in range(7)]


def test_char_space_token_choice():
    no_unused = {k: v for k, v in VOCAB.items() if k != "[unused1]"}
    assert CharAligner(no_unused, whitespace_tokens=True).encode(" ").ids == [VOCAB["[UNK]"]]
    with_space = dict(no_unused, **{"[SPACE]": 99})
    assert CharAligner(with_space, whitespace_tokens=True).encode("\t").ids == [99]
    assert CharAligner(with_space, whitespace_tokens=False).encode("\t").ids == []
    with pytest.raises(ModelError):
        CharAligner({"[UNK]": 0})


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_char_round_trip_is_exact(scheme):
    rng = random.Random(7)
    aligner = CharAligner(VOCAB, whitespace_tokens=True)
    for _ in range(50):
        text, spans = random_text_and_spans(rng, 80)
        tokenized = aligner.encode(text)
        assert len(tokenized) == len(text)
        tags, inexact = token_tags(tokenized, spans, scheme)
        assert inexact == 0
        assert spans_from_token_tags(tokenized, tags, scheme) == sorted(spans)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_char_round_trip_skipping_whitespace(scheme):
    """Entities that neither start nor end on whitespace (all of Ruijin's) stay exact, inner spaces included."""
    rng = random.Random(8)
    aligner = CharAligner(VOCAB, whitespace_tokens=False)
    inner_spaces = 0
    for _ in range(50):
        text, raw = random_text_and_spans(rng, 80)
        trimmed = [strip_whitespace(text, sp) for sp in raw]
        spans = [sp for sp in trimmed if sp is not None]
        inner_spaces += sum(any(c.isspace() for c in text[sp.start : sp.end]) for sp in spans)
        tokenized = aligner.encode(text)
        assert len(tokenized) == sum(not c.isspace() for c in text)
        tags, inexact = token_tags(tokenized, spans, scheme)
        assert inexact == 0
        assert spans_from_token_tags(tokenized, tags, scheme) == sorted(spans)
        edged = [sp for sp in raw if text[sp.start].isspace() or text[sp.end - 1].isspace()]
        assert token_tags(tokenized, edged, scheme)[1] == len(edged)  # counted, never silently moved
    assert inner_spaces > 20


def test_char_mode_is_fast():
    aligner = CharAligner(VOCAB)
    text = ("血糖HbA1c 5.6mmol/L\n空腹😀\u3000" * 120_000)[:2_500_000]
    began = time.perf_counter()
    tokenized = aligner.encode(text)
    elapsed = time.perf_counter() - began
    assert len(tokenized) == 2_500_000
    assert elapsed < 6  # about 1 s on a free core; generous for shared machines


# --- subword mode ---------------------------------------------------------------------------


def test_subword_merges_tokens_and_counts_inexact(bert_tokenizer):
    aligner = SubwordAligner(bert_tokenizer)
    assert aligner.mode == "subword"
    assert aligner.cls_id == bert_tokenizer.cls_token_id and aligner.pad_id == bert_tokenizer.pad_token_id
    text = "HBA1C 5g mmol/L 血糖"
    tokenized = aligner.encode(text)
    pieces = [text[s:e] for s, e in tokenized.offsets]
    assert pieces[:2] == ["HBA1C", "5g"]  # each one token ("HBA1C" is an [UNK] in this vocabulary)
    assert "mmol/L" not in pieces and len([p for p in pieces if p in "mmol/L"]) >= 3  # cut in pieces
    assert all(not text[s:e].isspace() for s, e in tokenized.offsets)  # spaces belong to no token

    whole = [Span(0, 5, "Test"), Span(16, 18, "Item")]
    tags, inexact = token_tags(tokenized, whole)
    assert inexact == 0
    assert spans_from_token_tags(tokenized, tags) == whole

    # "5" of "5g" cannot be a token entity; "mol" starts inside "##ol"; " 5g" starts on a space
    partial = [Span(6, 7, "Value"), Span(10, 13, "Unit"), Span(5, 8, "Value")]
    pairs = token_spans(tokenized.offsets, partial)
    assert [exact for _, exact in pairs] == [False, False, False]
    assert token_spans_to_spans(tokenized.offsets, [pairs[0][0]]) == [Span(6, 8, "Value")]
    tags, inexact = token_tags(tokenized, partial)  # the third overlaps the first: dropped, counted
    assert inexact == 3
    assert spans_from_token_tags(tokenized, tags) == [Span(6, 8, "Value"), Span(9, 13, "Unit")]


def test_subword_whole_token_entities_round_trip(bert_tokenizer):
    aligner = make_aligner("subword", bert_tokenizer)
    rng = random.Random(3)
    words = ["血糖", "HBA1C", "5g", "mmol/L", "胰岛素", "空腹", "患者", "10.5", "2型糖尿病"]
    for _ in range(30):
        parts = [rng.choice(words) for _ in range(12)]
        text = " ".join(parts)
        tokenized = aligner.encode(text)
        # entities made of whole tokens: every second token
        spans = [Span(s, e, "X") for k, (s, e) in enumerate(tokenized.offsets) if k % 2 == 0]
        tags, inexact = token_tags(tokenized, spans)
        assert inexact == 0
        assert spans_from_token_tags(tokenized, tags) == spans


def test_entity_over_no_token_is_dropped_and_counted():
    tokenized = TokenizedText([1, 2], [(0, 1), (3, 4)])
    pairs = token_spans(tokenized.offsets, [Span(1, 3, "A"), Span(0, 4, "B")])
    assert pairs == [(None, False), (Span(0, 2, "B"), True)]


def test_default_mode(bert_tokenizer):
    assert default_mode(bert_tokenizer) == "char"
    assert default_mode(VOCAB) == "subword"
    assert make_aligner("auto", bert_tokenizer).mode == "char"
    assert make_aligner("char", VOCAB).mode == "char"
    with pytest.raises(ModelError):
        make_aligner("subword", VOCAB)
    with pytest.raises(ModelError):
        make_aligner("words", VOCAB)


def test_char_aligner_from_bert_tokenizer(bert_tokenizer):
    skipped = make_aligner("char", bert_tokenizer, whitespace_tokens=False).encode("HbA1c 血糖")
    assert skipped.ids == bert_tokenizer.convert_tokens_to_ids(list("hba1c") + ["血", "糖"])
    assert skipped.offsets[5] == (6, 7)
    kept = make_aligner("char", bert_tokenizer).encode("HbA1c 血糖")
    assert kept.ids == bert_tokenizer.convert_tokens_to_ids(list("hba1c") + ["[unused1]", "血", "糖"])


# --- chunking -------------------------------------------------------------------------------


@pytest.mark.parametrize("n,max_tokens,stride", [(1, 5, 2), (5, 5, 2), (6, 5, 2), (17, 5, 0), (100, 8, 4), (101, 10, 9)])
def test_chunk_ranges_cover_with_overlap(n, max_tokens, stride):
    ranges = chunk_ranges(n, max_tokens, stride)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(0 < end - start <= max_tokens for start, end in ranges)
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
        assert s1 < s2 and e1 - s2 >= stride  # overlap at least `stride`
    if n > max_tokens:
        assert all(end - start == max_tokens for start, end in ranges)


def test_chunk_ranges_examples():
    assert chunk_ranges(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert chunk_ranges(9, 4, 1) == [(0, 4), (3, 7), (5, 9)]
    assert chunk_ranges(0, 4, 1) == [(0, 0)]
    with pytest.raises(ValueError):
        chunk_ranges(10, 4, 4)


@pytest.mark.parametrize("n,max_tokens,stride", [(1, 5, 2), (37, 8, 3), (100, 10, 5), (64, 16, 0)])
def test_merge_equals_unchunked_for_position_independent_model(n, max_tokens, stride):
    values = [f"tag{i % 7}" for i in range(n)]
    ranges = chunk_ranges(n, max_tokens, stride)
    chunk_values = [values[start:end] for start, end in ranges]
    assert merge_chunk_predictions(n, ranges, chunk_values) == values


def test_merge_prefers_the_chunk_where_a_token_is_furthest_from_an_edge():
    ranges = chunk_ranges(10, 6, 4)  # [(0, 6), (2, 8), (4, 10)]
    assert ranges == [(0, 6), (2, 8), (4, 10)]
    chunk_values = [["a"] * 6, ["b"] * 6, ["c"] * 6]
    merged = merge_chunk_predictions(10, ranges, chunk_values)
    # 0-1 only in a; 2: a (text start is not an edge) vs b at distance 0; 3: a (inf/2=2) vs b (1)
    # 4: a (1) b (2) c (0) -> b; 5: a (0) b (2) c (1) -> b; 6: b (1) c (2) -> c; 7-9 -> c
    assert merged == ["a", "a", "a", "a", "b", "b", "c", "c", "c", "c"]


def test_merge_checks_its_input():
    with pytest.raises(ValueError):
        merge_chunk_predictions(4, [(0, 2)], [[1, 2]])  # tokens 2 and 3 in no chunk
    with pytest.raises(ValueError):
        merge_chunk_predictions(4, [(0, 4)], [[1, 2]])
