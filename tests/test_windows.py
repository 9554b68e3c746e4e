"""Windows: sentence packing, never inside an entity, long sentences, over-long entities."""

from __future__ import annotations

import random

from bertner.data.windows import make_windows
from bertner.spans import Span


def doc_spans(windows):
    return sorted(s.shifted(w.offset) for w in windows for s in w.spans)


def test_packs_whole_sentences_up_to_the_limit():
    text = "甲乙丙。丁戊己。庚辛壬。"
    windows, report = make_windows("d", text, [], max_chars=8)
    assert [w.text for w in windows] == ["甲乙丙。丁戊己。", "庚辛壬。"]
    assert [w.offset for w in windows] == [0, 8] and windows[1].id == "d#1" and windows[1].doc == "d"
    assert report.cut_inside_sentence == 0


def test_newlines_and_crlf_end_sentences():
    text = "abc\r\ndef\nghi"
    windows, _ = make_windows("d", text, [], max_chars=5)
    assert [w.text for w in windows] == ["abc\r\n", "def\n", "ghi"]


def test_never_cuts_inside_an_entity_and_spans_map_back():
    text = "患者有高血压。病史十年。"
    spans = [Span(3, 8, "Disease")]  # crosses the first 。
    windows, _ = make_windows("d", text, spans, max_chars=6)
    assert all(not (w.offset < 8 and w.offset > 3) for w in windows)
    assert doc_spans(windows) == spans
    assert "".join(w.text for w in windows) == text


def test_long_sentence_cut_prefers_comma_in_last_quarter():
    text = "一二三四五六七八九，十一二三四五六七八九十。"
    windows, report = make_windows("d", text, [], max_chars=12)
    assert windows[0].text == "一二三四五六七八九，"
    assert report.cut_inside_sentence == 1
    assert all(len(w.text) <= 12 for w in windows)


def test_long_sentence_cut_before_entity_at_limit():
    text = "一二三四五六七八九十一二三四五"
    windows, _ = make_windows("d", text, [Span(3, 7, "X")], max_chars=5)
    assert windows[0].text == "一二三" and windows[1].text.startswith("四五六七")
    assert doc_spans(windows) == [Span(3, 7, "X")]


def test_overlong_entity_kept_whole_and_reported():
    text = "甲" * 30 + "。乙乙"
    windows, report = make_windows("d", text, [Span(2, 25, "X")], max_chars=10)
    assert report.overlong_entities == 1 and "d:2-25 X" in report.overlong_examples[0]
    assert doc_spans(windows) == [Span(2, 25, "X")]
    assert report.longest_window > 10


def test_whitespace_windows_are_skipped():
    text = "甲。\n\n   \n\n乙。"
    windows, report = make_windows("d", text, [], max_chars=3)
    assert all(w.text.strip() for w in windows) and report.whitespace_skipped >= 1
    assert make_windows("d", "", [])[0] == []


def test_random_texts_keep_every_span_exactly():
    rng = random.Random(0)
    alphabet = "甲乙丙丁，。！\n "
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
        spans, pos = [], 0
        while pos < len(text) - 1:
            start = pos + rng.randint(0, 10)
            end = start + rng.randint(1, 15)
            if end > len(text):
                break
            spans.append(Span(start, end, rng.choice("AB")))
            pos = end
        max_chars = rng.randint(1, 30)
        windows, report = make_windows("d", text, spans, max_chars)
        assert doc_spans(windows) == spans
        for w in windows:
            assert text[w.offset:w.offset + len(w.text)] == w.text
            for s in w.spans:
                assert 0 <= s.start < s.end <= len(w.text)
        covered = sum(len(w.text) for w in windows)
        assert covered <= len(text)
        # windows exceed the limit only around entities longer than it
        if not any(len(s) > max_chars for s in spans):
            assert all(len(w.text) <= max_chars for w in windows)
