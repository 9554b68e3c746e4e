"""From annotated entities to the non-overlapping spans a tag sequence can hold.

Two steps, both counted so the user can see what changed:

1. The `--discontinuous` policy turns each `Entity` into spans:
   `merge` (first start to last end, the default), `first` (the first fragment only),
   `split` (every fragment its own span) or `drop` (discontinuous entities are left out).
2. Overlapping spans are resolved by keeping one: **the longer, then the earlier** (then the
   label in alphabetical order, so the result never depends on file order). Exact duplicates
   (same start, end and label) are removed first and counted as duplicates, not as overlaps.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from typing import Iterable

from bertner.errors import BertnerError
from bertner.spans import Entity, Span

POLICIES = ("merge", "first", "split", "drop")

# Keys of the change counter; overlaps are counted per label as f"{OVERLAP_DROPPED}{label}".
MERGED = "discontinuous merged"
FIRST_KEPT = "discontinuous cut to first fragment"
SPLIT_EXTRA = "discontinuous split (extra spans)"
DISCONTINUOUS_DROPPED = "discontinuous dropped"
DUPLICATES = "duplicates dropped"
OVERLAP_DROPPED = "overlap dropped: "



def check_policy(policy: str) -> str:
    policy = policy.lower()
    if policy not in POLICIES:
        raise BertnerError(f"unknown --discontinuous policy {policy!r}; use one of {', '.join(POLICIES)}")
    return policy


def entity_spans(entity: Entity, policy: str, changes: Counter) -> list[Span]:
    """The spans one entity becomes under `policy`; counts what the policy changed."""
    if not entity.discontinuous:
        return [Span(entity.start, entity.end, entity.label)]
    if policy == "merge":
        changes[MERGED] += 1
        return [Span(entity.start, entity.end, entity.label)]
    if policy == "first":
        changes[FIRST_KEPT] += 1
        start, end = entity.fragments[0]
        return [Span(start, end, entity.label)]
    if policy == "split":
        changes[SPLIT_EXTRA] += len(entity.fragments) - 1
        return [Span(s, e, entity.label) for s, e in entity.fragments]
    changes[DISCONTINUOUS_DROPPED] += 1
    return []


def resolve_overlaps(spans: Iterable[Span], changes: Counter) -> list[Span]:
    """Sorted non-overlapping spans: duplicates removed, then the longer, then the earlier kept."""
    unique = set()
    for span in spans:
        if span in unique:
            changes[DUPLICATES] += 1
        unique.add(span)
    # Greedy by priority; `kept` stays sorted by start and disjoint, so one neighbour check each side.
    kept: list[Span] = []
    for span in sorted(unique, key=lambda s: (-(s.end - s.start), s.start, s.label)):
        i = bisect_left(kept, span)
        clash = (i > 0 and kept[i - 1].overlaps(span)) or (i < len(kept) and kept[i].overlaps(span))
        if clash:
            changes[OVERLAP_DROPPED + span.label] += 1
        else:
            kept.insert(i, span)
    return kept


def apply_policy(entities: Iterable[Entity], policy: str = "merge") -> tuple[list[Span], Counter]:
    """Entities -> sorted non-overlapping spans, plus a counter of every change made."""
    policy = check_policy(policy)
    changes: Counter = Counter()
    candidates = [span for entity in entities for span in entity_spans(entity, policy, changes)]
    return resolve_overlaps(candidates, changes), changes


def overlaps_by_label(changes: Counter) -> Counter:
    """Only the overlap counts of a change counter, keyed by label."""
    return Counter({k[len(OVERLAP_DROPPED):]: v for k, v in changes.items() if k.startswith(OVERLAP_DROPPED)})
