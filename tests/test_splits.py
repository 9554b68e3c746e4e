"""Document splits: reproducible, disjoint, grouped by article prefix, validated ratios."""

from __future__ import annotations

import pytest

from bertner.data.splits import group_key, split_documents
from bertner.errors import BertnerError

IDS = [f"{a}_{b}" for a in range(20) for b in range(1, 4)] + ["123_3_1", "7"]


def test_reproducible_and_disjoint():
    first = split_documents(IDS, 0.2, 0.1, seed=1)
    assert first == split_documents(IDS, 0.2, 0.1, seed=1)
    assert first != split_documents(IDS, 0.2, 0.1, seed=2)
    together = first["train"] + first["dev"] + first["test"]
    assert sorted(together) == sorted(IDS)
    assert len(first["dev"]) == round(0.2 * len(IDS)) and len(first["test"]) == round(0.1 * len(IDS))


def test_group_by_prefix_keeps_articles_together():
    assert group_key("123_3_1", True) == group_key("123_7", True) == "123"
    assert group_key("123_7", False) == "123_7"
    split = split_documents(IDS, 0.3, 0.2, seed=5, group_by_prefix=True)
    owner = {}
    for name, ids in split.items():
        for doc_id in ids:
            assert owner.setdefault(doc_id.split("_")[0], name) == name


def test_zero_dev_ratio_gives_empty_dev():
    split = split_documents(IDS, 0.0, 0.0)
    assert split["dev"] == [] and split["test"] == [] and len(split["train"]) == len(IDS)


@pytest.mark.parametrize("dev, test, message", [(-0.1, 0, "--dev-ratio"), (0.5, 0.5, "below 1"), (0, 1.0, "--test-ratio")])
def test_bad_ratios(dev, test, message):
    with pytest.raises(BertnerError, match=message):
        split_documents(IDS, dev, test)


def test_too_few_documents():
    with pytest.raises(BertnerError, match="train would be empty"):
        split_documents(["a_1", "a_2"], 0.5, 0.0, group_by_prefix=True)
