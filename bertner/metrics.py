"""Scores for NER output: tag sequences or spans in, JSON-ready numbers out.

- `entity_scores`: CoNLL-style strict entity scores via seqeval (BIO tags per sentence).
- `span_scores`: exact (document, start, end, label) set matching, the competition measure.
- `error_kinds`: what the mistakes are (wrong type, wrong boundary, missed, ...) with examples.
"""

from __future__ import annotations

import functools
import sys
import unicodedata
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Hashable, Iterable, Mapping, Sequence

from bertner.spans import Span
from bertner.tags import split_tag


@dataclass
class Score:
    """Precision, recall and F1 of one type (or micro/macro), and the number of gold entities."""

    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    support: int = 0  # number of gold entities


@dataclass
class Scores:
    """Micro, macro and per-type scores."""

    micro: Score = field(default_factory=Score)
    macro: Score = field(default_factory=Score)  # unweighted mean over types in gold or pred
    per_type: dict[str, Score] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _prf(tp: int, n_pred: int, n_gold: int) -> Score:
    # Zero division gives 0, as seqeval's zero_division=0.
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return Score(p, r, f, n_gold)


def _macro(per_type: Mapping[str, Score]) -> Score:
    if not per_type:
        return Score()
    n = len(per_type)
    return Score(sum(s.precision for s in per_type.values()) / n, sum(s.recall for s in per_type.values()) / n,
                 sum(s.f1 for s in per_type.values()) / n, sum(s.support for s in per_type.values()))


def _check_bio(sentences: Sequence[Sequence[str]], which: str) -> None:
    for i, tags in enumerate(sentences):
        for tag in tags:
            prefix, _ = split_tag(tag)
            if prefix in ("E", "S"):
                raise ValueError(f"{which} sentence {i} has tag {tag!r}: entity_scores expects BIO (IOB2) tags")


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Scores:
    """Strict entity-level P/R/F1 (seqeval, IOB2): an entity counts only with its exact B-I... run.

    In strict mode a run that starts with I- is not an entity at all, so it can never match. Both sides
    come from our own code, so sequences that do not pair up are a bug (ValueError), not the user's input.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but predictions have {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: gold has {len(g)} tags but prediction has {len(p)}")
    _check_bio(gold, "gold")
    _check_bio(pred, "predicted")

    from seqeval.metrics import (
        classification_report,  # slow import; only scoring needs it
    )
    from seqeval.scheme import IOB2

    with warnings.catch_warnings():
        # seqeval warns (and numpy warns on empty means) when there are no entities at all.
        warnings.simplefilter("ignore")
        report = classification_report([list(g) for g in gold], [list(p) for p in pred], mode="strict",
                                       scheme=IOB2, output_dict=True, zero_division=0)
    averages = ("micro avg", "macro avg", "weighted avg")
    per_type = {label: _score(row) for label, row in sorted(report.items()) if label not in averages}
    micro = _score(report["micro avg"]) if per_type else Score()
    return Scores(micro=micro, macro=_macro(per_type), per_type=per_type)


def _score(row: Mapping[str, float]) -> Score:
    # seqeval returns numpy scalars; plain floats keep the result JSON-serialisable.
    return Score(float(row["precision"]), float(row["recall"]), float(row["f1-score"]), int(row["support"]))


SpanKey = tuple[Hashable, int, int, str]  # (document, start, end, label)


def span_scores(gold: Iterable[SpanKey], pred: Iterable[SpanKey]) -> Scores:
    """Exact-match scores over sets of (document, start, end, label); duplicates count once."""
    gold_set, pred_set = set(gold), set(pred)
    hits = gold_set & pred_set
    n_gold, n_pred, tp = Counter(k[3] for k in gold_set), Counter(k[3] for k in pred_set), Counter(k[3] for k in hits)
    labels = sorted(set(n_gold) | set(n_pred))
    per_type = {label: _prf(tp[label], n_pred[label], n_gold[label]) for label in labels}
    return Scores(micro=_prf(len(hits), len(pred_set), len(gold_set)), macro=_macro(per_type), per_type=per_type)


KINDS = ("wrong_type", "wrong_boundary", "wrong_boundary_type", "missed", "spurious")


# The marks around the gold entity and the predicted one in error examples, the familiar ones first. Each
# evaluation takes the first pair of each whose characters occur nowhere in its examples (text, document ids and
# labels), so a bracket of the text itself (Ruijin writes "[关键词]") is never taken for a mark; every mark in an
# example is one (the CLI colours by them).
GOLD_MARKS = ("[]", "⟦⟧", "【】", "⟨⟩", "⌈⌉")
PREDICTED_MARKS = ("{}", "⦃⦄", "〔〕", "⟪⟫", "⌊⌋")


@functools.cache
def _bracket_pairs() -> tuple[str, ...]:
    """Every opening bracket of Unicode followed by its closing one (71): what is left when the usual marks are in the text."""
    return tuple(chr(i) + chr(i + 1) for i in range(sys.maxunicode) if unicodedata.category(chr(i)) == "Ps"
            and unicodedata.category(chr(i + 1)) == "Pe")


def choose_marks(used: set[str]) -> dict[str, str]:
    """Mark pairs for gold and predicted entities, none of whose characters is in `used`."""
    fixed = set("().=:- ")  # the characters the example's own frame ("...", " (gold=X pred=Y)") uses
    chosen: dict[str, str] = {}
    for role, preferred in (("gold", GOLD_MARKS), ("predicted", PREDICTED_MARKS)):
        taken = used | fixed | set("".join(chosen.values()))
        free = [pair for pair in preferred if not set(pair) & taken]
        free = free or [pair for pair in _bracket_pairs() if not set(pair) & taken]
        chosen[role] = free[0] if free else preferred[0]  # only a text holding all 71 Unicode bracket pairs gets none
    return chosen


def _excerpt(text: str, gold: Span | None, pred: Span | None, width: int = 20) -> tuple[int, int]:
    spans = [s for s in (gold, pred) if s is not None]
    return max(0, min(s.start for s in spans) - width), min(len(text), max(s.end for s in spans) + width)


def _in_context(text: str, gold: Span | None, pred: Span | None, marks: dict[str, str]) -> str:
    """The text around the spans on one line, the gold entity and the prediction between their marks."""
    lo, hi = _excerpt(text, gold, pred)
    # Sort so marks nest: at one position closers come first; the longer span opens first
    # and closes last (gold outside prediction when both are the same span).
    placed: list[tuple[int, int, int, int, str]] = []
    for idx, (span, pair) in enumerate(((gold, marks["gold"]), (pred, marks["predicted"]))):
        if span is not None:
            placed += [(span.start, 1, -span.end, idx, pair[0]), (span.end, 0, -span.start, -idx, pair[1])]
    out, pos = [], lo
    for at, *_, mark in sorted(placed):
        out += [text[pos:at], mark]
        pos = at
    out.append(text[pos:hi])
    prefix, suffix = ("..." if lo > 0 else ""), ("..." if hi < len(text) else "")
    labels = " ".join(x for x in (f"gold={gold.label}" if gold else "", f"pred={pred.label}" if pred else "") if x)
    return f"{prefix}{''.join(out)}{suffix}  ({labels})".replace("\n", " ")


def error_kinds(gold_spans_by_doc: Mapping[str, Sequence[Span]], pred_spans_by_doc: Mapping[str, Sequence[Span]],
                texts: Mapping[str, str], n_examples: int = 3) -> list[dict]:
    """Classify every non-exact prediction and every unmatched gold span.

    After exact matches are removed: a prediction with a gold's exact boundaries is `wrong_type`;
    one overlapping a gold of its label is `wrong_boundary`, else overlapping any gold is
    `wrong_boundary_type`; else `spurious`. A gold span no remaining prediction overlaps is
    `missed` (an overlapped one is already counted through that prediction).
    Returns one dict per kind: `kind`, `count`, `pairs` ("gold->pred" label counts), `examples` (`doc: context`
    with the gold entity and the prediction between `marks`: {"gold": "[]", "predicted": "{}"}, chosen so that
    they occur nowhere else in the examples).
    """
    counts: Counter[str] = Counter()
    pairs: dict[str, Counter[str]] = defaultdict(Counter)
    found: dict[str, list[tuple[str, Span | None, Span | None]]] = defaultdict(list)

    def record(kind: str, doc: str, gold: Span | None, pred: Span | None) -> None:
        counts[kind] += 1
        pairs[kind][f"{gold.label if gold else '-'}->{pred.label if pred else '-'}"] += 1
        if len(found[kind]) < n_examples:
            found[kind].append((doc, gold, pred))

    for doc in sorted(set(gold_spans_by_doc) | set(pred_spans_by_doc), key=str):
        gold_all, pred_all = set(gold_spans_by_doc.get(doc, ())), set(pred_spans_by_doc.get(doc, ()))
        golds, preds = sorted(gold_all - pred_all), sorted(pred_all - gold_all)
        overlapped: set[Span] = set()
        for p in preds:
            touching = [g for g in golds if g.overlaps(p)]
            same_bounds = [g for g in touching if (g.start, g.end) == (p.start, p.end)]
            same_label = [g for g in touching if g.label == p.label]
            if same_bounds:
                record("wrong_type", doc, same_bounds[0], p)
            elif same_label:
                record("wrong_boundary", doc, same_label[0], p)
            elif touching:
                record("wrong_boundary_type", doc, touching[0], p)
            else:
                record("spurious", doc, None, p)
            overlapped.update(touching)
        for g in golds:
            if g not in overlapped:
                record("missed", doc, g, None)

    shown = [example for kind in KINDS for example in found[kind]]
    used = {c for doc, gold, pred in shown for c in doc + texts.get(doc, "")[slice(*_excerpt(texts.get(doc, ""), gold, pred))]}
    used |= {c for _, gold, pred in shown for span in (gold, pred) if span is not None for c in span.label}
    marks = choose_marks(used)
    examples = {kind: [f"{doc}: " + _in_context(texts.get(doc, ""), gold, pred, marks) for doc, gold, pred in found[kind]]
                for kind in KINDS}
    return [{"kind": k, "count": counts[k], "pairs": dict(pairs[k].most_common()), "examples": examples[k], "marks": marks}
            for k in KINDS]
