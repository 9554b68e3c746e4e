"""Train/dev/test splits by document (never by window), reproducible by seed.

Ratios are over **documents** (after grouping, whole groups move together, so the shares are
approximate when groups differ in size).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from bertner.errors import BertnerError

SPLITS = ("train", "dev", "test")


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
    doc_ids: Sequence[str], dev_ratio: float, test_ratio: float = 0.0, seed: int = 13, group_by_prefix: bool = False
) -> dict[str, list[str]]:
    """`{"train": [...], "dev": [...], "test": [...]}` of document ids, whole groups to one split."""
    check_ratios(dev_ratio, test_ratio)
    if len(set(doc_ids)) != len(doc_ids):
        raise BertnerError("document ids must be unique to split by document")
    groups: dict[str, list[str]] = defaultdict(list)
    for doc_id in doc_ids:
        groups[group_key(doc_id, group_by_prefix)].append(doc_id)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)

    total = len(doc_ids)
    targets = {"test": _target(test_ratio, total), "dev": _target(dev_ratio, total)}
    result: dict[str, list[str]] = {name: [] for name in SPLITS}
    for key in keys:
        for name in ("test", "dev"):
            if len(result[name]) < targets[name]:
                result[name].extend(groups[key])
                break
        else:
            result["train"].extend(groups[key])
    if not result["train"]:
        unit = "groups (articles)" if group_by_prefix else "documents"
        raise BertnerError(
            f"too few {unit} ({len(keys)}) for --dev-ratio {dev_ratio} and --test-ratio {test_ratio}: train would be empty"
        )
    return {name: sorted(ids) for name, ids in result.items()}
