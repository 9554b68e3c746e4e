"""Train/dev/test splits by document (never by window), reproducible by seed.

Ratios are over **documents** (after grouping, whole groups move together, so the shares are
approximate when groups differ in size). Given each document's labels, a split in which dev and
test hold no label that train lacks is preferred: on a small corpus the seed's own shuffle often
leaves a rare label only in dev, where no model trained on train can find it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from bertner.errors import BertnerError

SPLITS = ("train", "dev", "test")
SHUFFLES = 200  # shuffles tried, from the seed, for a split whose dev and test labels all occur in train


def group_key(doc_id: str, group_by_prefix: bool) -> str:
    """`123_4`, `123_7`, `123_3_1` -> `123` when grouping (they come from one article)."""
    return doc_id.split("_", 1)[0] if group_by_prefix else doc_id


def check_ratios(dev_ratio: float, test_ratio: float) -> None:
    for name, ratio in (("--dev-ratio", dev_ratio), ("--test-ratio", test_ratio)):
        if not 0 <= ratio < 1:
            raise BertnerError(f"{name} must be at least 0 and below 1, not {ratio}")
    if dev_ratio + test_ratio >= 1:
        raise BertnerError(f"--dev-ratio + --test-ratio must be below 1 (got {dev_ratio} + {test_ratio}); nothing would be left to train on")


def _target(ratio: float, total: int) -> int:
    if ratio <= 0:
        return 0
    return max(1, round(ratio * total))  # a ratio above 0 always gets at least one document


def split_documents(
    doc_ids: Sequence[str], dev_ratio: float, test_ratio: float = 0.0, seed: int = 13, group_by_prefix: bool = False,
    labels: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, list[str]]:
    """`{"train": [...], "dev": [...], "test": [...]}` of document ids, whole groups to one split.

    With `labels` (document id -> its entity labels) the seed's shuffle is kept when every dev and test
    label also occurs in train; otherwise further shuffles derived from the seed are tried and the first
    that achieves it (else the one leaving the fewest labels out of train) is used.
    """
    check_ratios(dev_ratio, test_ratio)
    if len(set(doc_ids)) != len(doc_ids):
        raise BertnerError("document ids must be unique to split by document")
    groups: dict[str, list[str]] = defaultdict(list)
    for doc_id in doc_ids:
        groups[group_key(doc_id, group_by_prefix)].append(doc_id)
    total = len(doc_ids)
    targets = {"test": _target(test_ratio, total), "dev": _target(dev_ratio, total)}
    best: tuple[int, dict[str, list[str]]] | None = None
    for attempt in range(SHUFFLES if labels is not None and (dev_ratio or test_ratio) else 1):
        keys = sorted(groups)
        random.Random(seed if attempt == 0 else f"{seed}/{attempt}").shuffle(keys)
        result = _assign(keys, groups, targets)
        missing = len(unseen_labels(result, labels)) if labels is not None else 0
        if best is None or missing < best[0]:
            best = (missing, result)
        if missing == 0:
            break
    result = best[1]
    if not result["train"]:
        unit = "groups (articles)" if group_by_prefix else "documents"
        raise BertnerError(
            f"too few {unit} ({len(groups)}) for --dev-ratio {dev_ratio} and --test-ratio {test_ratio}: train would be empty"
        )
    return {name: sorted(ids) for name, ids in result.items()}


def _assign(keys: list[str], groups: Mapping[str, list[str]], targets: Mapping[str, int]) -> dict[str, list[str]]:
    """Groups in `keys` order to test, then dev, until each has its share; the rest to train."""
    result: dict[str, list[str]] = {name: [] for name in SPLITS}
    for key in keys:
        for name in ("test", "dev"):
            if len(result[name]) < targets[name]:
                result[name].extend(groups[key])
                break
        else:
            result["train"].extend(groups[key])
    return result


def unseen_labels(split: Mapping[str, Sequence[str]], labels: Mapping[str, Iterable[str]]) -> set[str]:
    """Labels of dev and test documents that no train document has."""
    known = {label for doc_id in split.get("train", ()) for label in labels.get(doc_id, ())}
    return {label for name in ("dev", "test") for doc_id in split.get(name, ()) for label in labels.get(doc_id, ())} - known
