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


def test_dev_labels_are_kept_in_train_when_a_split_allows_it():
    from bertner.data.splits import unseen_labels

    ids = [f"{a}_{b}" for a in range(12) for b in (1, 2)]
    labels = {doc_id: {"Common"} for doc_id in ids}
    labels["5_2"] = {"Common", "Rare"}  # one article holds the only Rare entities
    plain_bad = 0
    for seed in range(40):
        plain = split_documents(ids, 0.2, seed=seed, group_by_prefix=True)
        aware = split_documents(ids, 0.2, seed=seed, group_by_prefix=True, labels=labels)
        assert not unseen_labels(aware, labels)
        assert aware == split_documents(ids, 0.2, seed=seed, group_by_prefix=True, labels=labels)  # reproducible
        if unseen_labels(plain, labels):
            plain_bad += 1
            assert len(aware["dev"]) == len(plain["dev"])  # the same shares, other articles
        else:
            assert aware == plain  # the seed's own split, when it already works
    assert plain_bad  # the situation the labels are there for does arise


def test_twelve_ruijin_documents_split_by_article_keep_dev_labels_in_train(tmp_path):
    import json
    import shutil

    from conftest import RUIJIN_TRAIN, need
    from typer.testing import CliRunner

    from bertner.cli import app

    raw = tmp_path / "raw"
    raw.mkdir()
    for txt in sorted(need(RUIJIN_TRAIN).glob("*.txt"))[:12]:  # 0, 12 and ten parts of article 123
        shutil.copy(txt, raw)
        shutil.copy(txt.with_suffix(".ann"), raw)
    result = CliRunner().invoke(app, ["preprocess", str(raw), "-o", str(tmp_path / "data"), "--dev-ratio", "0.2"])
    assert result.exit_code == 0, result.output
    assert "no train document has" not in result.stderr

    def labels(name):
        rows = (tmp_path / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        return {e["label"] for row in rows for e in json.loads(row)["entities"]}

    assert labels("dev") and labels("dev") <= labels("train")
