import pytest

from bertner.errors import BertnerError
from bertner.spans import Span
from bertner.tags import (
    label_set_to_tags,
    spans_to_tags,
    stray_inside_tags,
    tags_to_spans,
)

SPANS = [Span(0, 2, "A"), Span(2, 3, "A"), Span(5, 8, "B")]


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "BIOES"])
def test_round_trip(scheme):
    tags = spans_to_tags(9, SPANS, scheme)
    assert tags_to_spans(tags, scheme) == SPANS


def test_expected_tags():
    assert spans_to_tags(9, SPANS, "BIO") == ["B-A", "I-A", "B-A", "O", "O", "B-B", "I-B", "I-B", "O"]
    assert spans_to_tags(9, SPANS, "IOB1") == ["I-A", "I-A", "B-A", "O", "O", "I-B", "I-B", "I-B", "O"]
    assert spans_to_tags(9, SPANS, "BIOES") == ["B-A", "E-A", "S-A", "O", "O", "B-B", "I-B", "E-B", "O"]


def test_lenient_decoding_and_stray_detection():
    tags = ["I-A", "I-A", "O", "B-A", "I-B"]
    assert tags_to_spans(tags) == [Span(0, 2, "A"), Span(3, 4, "A"), Span(4, 5, "B")]
    assert stray_inside_tags(tags) == [0, 4]
    assert stray_inside_tags(tags, "IOB1") == []


def test_overlap_and_bad_tags_are_errors():
    with pytest.raises(ValueError, match="overlap"):  # a bug of ours, not the user's input
        spans_to_tags(5, [Span(0, 3, "A"), Span(2, 4, "B")])
    with pytest.raises(BertnerError):
        tags_to_spans(["X-A"])
    assert label_set_to_tags(["A"], "BIOES") == ["O", "B-A", "I-A", "E-A", "S-A"]


def test_allowed_transitions_bio_and_bioes():
    from bertner.tags import allowed_transitions

    tags = label_set_to_tags(["A", "B"], "BIO")  # O B-A I-A B-B I-B
    start, follow, end = allowed_transitions(tags, "BIO")
    index = {t: i for i, t in enumerate(tags)}
    assert start == [True, True, False, True, False]
    assert not follow[index["O"]][index["I-A"]] and follow[index["B-A"]][index["I-A"]]
    assert follow[index["I-A"]][index["I-A"]] and not follow[index["B-A"]][index["I-B"]]
    assert all(end)
    tags = label_set_to_tags(["A"], "BIOES")  # O B-A I-A E-A S-A
    start, follow, end = allowed_transitions(tags, "BIOES")
    index = {t: i for i, t in enumerate(tags)}
    assert not follow[index["B-A"]][index["O"]] and follow[index["B-A"]][index["E-A"]]
    assert end == [True, False, False, True, True]
