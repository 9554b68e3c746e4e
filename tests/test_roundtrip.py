"""Policies and the round trip gold spans -> windows -> tags -> spans on real corpora."""

from __future__ import annotations

import pytest
from conftest import MSRA, RUIJIN_TRAIN, need

from bertner.data import policies
from bertner.data.brat import read_brat_folder
from bertner.data.conll import read_conll_file
from roundtrip import round_trip_check
from bertner.spans import Document, Entity, Span

DISC = Entity("T1", "Disease", ((0, 2), (5, 8)))
PLAIN = Entity("T2", "Anatomy", ((10, 12),))


@pytest.mark.parametrize(
    "policy, spans, change",
    [
        ("merge", [Span(0, 8, "Disease"), Span(10, 12, "Anatomy")], {policies.MERGED: 1}),
        ("first", [Span(0, 2, "Disease"), Span(10, 12, "Anatomy")], {policies.FIRST_KEPT: 1}),
        ("split", [Span(0, 2, "Disease"), Span(5, 8, "Disease"), Span(10, 12, "Anatomy")], {policies.SPLIT_EXTRA: 1}),
        ("drop", [Span(10, 12, "Anatomy")], {policies.DISCONTINUOUS_DROPPED: 1}),
    ],
)
def test_discontinuous_policies(policy, spans, change):
    assert policies.apply_policy([DISC, PLAIN], policy) == (spans, change)


def test_overlaps_longer_then_earlier_and_duplicates():
    entities = [
        Entity("T1", "A", ((0, 4),)), Entity("T2", "B", ((2, 8),)),  # B longer: kept
        Entity("T3", "C", ((10, 13),)), Entity("T4", "D", ((12, 15),)),  # same length: earlier C kept
        Entity("T5", "C", ((10, 13),)),  # exact duplicate of T3
        Entity("T6", "E", ((20, 21),)),
    ]
    spans, changes = policies.apply_policy(entities)
    assert spans == [Span(2, 8, "B"), Span(10, 13, "C"), Span(20, 21, "E")]
    assert changes[policies.DUPLICATES] == 1
    assert policies.overlaps_by_label(changes) == {"A": 1, "D": 1}


def test_unknown_policy():
    with pytest.raises(Exception, match="unknown --discontinuous"):
        policies.apply_policy([DISC], "glue")


def test_round_trip_small_document_and_reports_a_lost_span(monkeypatch):
    doc = Document("d", "甲乙丙", [Entity("T1", "X", ((0, 2),))])
    assert round_trip_check([doc], "merge", 2) == []
    assert round_trip_check([doc], "merge", 2, scheme="BIOES") == []
    monkeypatch.setattr("roundtrip.tags_to_spans", lambda tags, scheme: [])
    assert round_trip_check([doc], "merge", 2) == ["d: lost Span(start=0, end=2, label='X') '甲乙'"]


@pytest.fixture(scope="module")
def ruijin():
    docs, _ = read_brat_folder(need(RUIJIN_TRAIN))
    return docs


@pytest.mark.parametrize("policy", ["merge", "first", "split"])
def test_ruijin_round_trip_is_exact(ruijin, policy):
    assert round_trip_check(ruijin, policy, 256) == []


def test_msra_test_round_trip_is_exact():
    docs, _ = read_conll_file(need(MSRA) / "test.bio", repair=True)
    assert round_trip_check(docs, "merge", 256) == []
    assert round_trip_check(docs[:500], "merge", 32, scheme="BIOES") == []
