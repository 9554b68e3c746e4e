"""Hand-computed checks of the scorers and the error classifier."""

from __future__ import annotations

import json
import random

import pytest

from bertner.errors import BertnerError
from bertner.metrics import entity_scores, error_kinds, span_scores
from bertner.spans import Span
from bertner.tags import spans_to_tags, tags_to_spans


def test_two_gold_three_predicted_one_correct() -> None:
    gold = [["B-Drug", "I-Drug", "O", "B-Disease", "O", "O"]]
    pred = [["B-Drug", "I-Drug", "O", "B-Drug", "B-Disease", "O"]]
    s = entity_scores(gold, pred)
    assert s.micro.precision == pytest.approx(1 / 3)
    assert s.micro.recall == pytest.approx(1 / 2)
    assert s.micro.f1 == pytest.approx(0.4)
    assert s.micro.support == 2
    # Drug: 1 of 2 predicted right, 1 of 1 gold found; Disease: 0 of 1, 0 of 1.
    assert s.per_type["Drug"].precision == pytest.approx(0.5) and s.per_type["Drug"].recall == 1.0
    assert s.per_type["Disease"].f1 == 0.0 and s.per_type["Disease"].support == 1
    assert s.macro.f1 == pytest.approx((2 / 3 + 0) / 2)
    json.dumps(s.to_dict())  # JSON-serialisable: no numpy scalars


def test_strict_mode_an_inside_start_is_not_an_entity() -> None:
    gold = [["O", "B-Drug", "I-Drug", "O"]]
    pred = [["O", "I-Drug", "I-Drug", "O"]]  # lenient conlleval would count this as correct
    s = entity_scores(gold, pred)
    assert s.micro.precision == 0.0 and s.micro.recall == 0.0 and s.micro.f1 == 0.0


def test_no_entities_anywhere_is_all_zero_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    s = entity_scores([["O", "O"], []], [["O", "O"], []])
    assert s.micro.f1 == 0.0 and s.macro.f1 == 0.0 and s.per_type == {}
    assert not recwarn.list


def test_mismatched_lengths_and_bad_tags_are_bugs_not_user_errors() -> None:
    with pytest.raises(ValueError, match="2 sentences"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="BIO"):
        entity_scores([["S-Drug"]], [["O"]])
    with pytest.raises(BertnerError):
        entity_scores([["X-Drug"]], [["O"]])


def test_span_scores_hand_computed_and_documents_kept_apart() -> None:
    gold = [("d1", 0, 2, "Drug"), ("d1", 5, 8, "Disease")]
    pred = [("d1", 0, 2, "Drug"), ("d2", 5, 8, "Disease"), ("d1", 5, 7, "Disease")]
    s = span_scores(gold, pred)
    assert (s.micro.precision, s.micro.recall) == (pytest.approx(1 / 3), 0.5)
    assert s.per_type["Drug"].f1 == 1.0 and s.per_type["Disease"].f1 == 0.0
    assert s.macro.f1 == pytest.approx(0.5)
    assert span_scores([], []).micro.f1 == 0.0


def test_span_and_entity_scores_agree_on_well_formed_tags() -> None:
    rng = random.Random(3)
    labels = ["Drug", "Disease", "Test"]
    for _ in range(50):
        gold_tags, pred_tags, gold_keys, pred_keys = [], [], [], []
        for sent in range(rng.randint(1, 5)):
            n = rng.randint(0, 15)
            for tags, keys in ((gold_tags, gold_keys), (pred_tags, pred_keys)):
                spans, pos = [], 0
                while pos < n:
                    start = pos + rng.randint(0, 3)
                    end = min(n, start + rng.randint(1, 3))
                    if start < end:
                        spans.append(Span(start, end, rng.choice(labels)))
                    pos = end
                seq = spans_to_tags(n, spans)
                tags.append(seq)
                keys += [(sent, s.start, s.end, s.label) for s in tags_to_spans(seq)]
        a, b = entity_scores(gold_tags, pred_tags).to_dict(), span_scores(gold_keys, pred_keys).to_dict()
        assert a.keys() == b.keys() and a["per_type"].keys() == b["per_type"].keys()
        for part in ("micro", "macro"):
            assert a[part] == pytest.approx(b[part])
        for label in a["per_type"]:
            assert a["per_type"][label] == pytest.approx(b["per_type"][label])


def test_error_kinds_on_a_hand_made_case() -> None:
    text = "Took aspirin for headache and fever, then ibuprofen daily."
    #       0123456789012345678901234567890123456789012345678901234567
    gold = {"d": [Span(5, 12, "Drug"), Span(17, 25, "Disease"), Span(30, 35, "Disease"),
                  Span(42, 51, "Drug"), Span(0, 4, "Action")]}
    pred = {"d": [Span(5, 12, "Drug"),        # correct
                  Span(17, 25, "Symptom"),    # wrong type
                  Span(30, 36, "Disease"),    # wrong boundary
                  Span(42, 57, "Dose"),       # wrong boundary and type
                  Span(52, 57, "Frequency")]}  # spurious; Action is missed
    kinds = {k["kind"]: k for k in error_kinds(gold, pred, {"d": text}, n_examples=2)}
    assert {k: v["count"] for k, v in kinds.items()} == {
        "wrong_type": 1, "wrong_boundary": 1, "wrong_boundary_type": 1, "missed": 1, "spurious": 1}
    assert kinds["wrong_type"]["pairs"] == {"Disease->Symptom": 1}
    assert kinds["missed"]["pairs"] == {"Action->-": 1}
    assert kinds["wrong_boundary_type"]["pairs"] == {"Drug->Dose": 1}
    assert kinds["spurious"]["pairs"] == {"-->Frequency": 1}
    assert "for [{headache}] and" in kinds["wrong_type"]["examples"][0]
    assert "(gold=Disease pred=Symptom)" in kinds["wrong_type"]["examples"][0]
    assert "{[fever],}" in kinds["wrong_boundary"]["examples"][0]
    assert "{[ibuprofen] daily}" in kinds["wrong_boundary_type"]["examples"][0]
    json.dumps(list(kinds.values()))
