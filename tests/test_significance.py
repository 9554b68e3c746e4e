"""`compare --baseline`: runs with known per-document outcomes, so the tests' verdicts are certain."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from study_runs import dev_windows, hits_per_document, study_run
from test_compare import fake_run

from bertner.cli import app
from bertner.compare import compare_runs
from bertner.errors import BertnerError
from bertner.significance import compare_to_baseline, holm, paired_bootstrap, seed_test

runner = CliRunner()


@pytest.fixture
def study(tmp_path):
    """Softmax baseline; CRF x100 finds one more entity in every document; CRF x1 predicts exactly as the baseline."""
    root, windows, hits = tmp_path / "runs", dev_windows(), hits_per_document()
    better = [k + 1 for k in hits]
    for seed, noise in ((1, 0.0), (2, 0.01), (3, -0.01)):
        study_run(root / f"softmax-seed{seed}", windows, hits, f1=0.60 + noise, seed=seed)
        study_run(root / f"crf-x100-seed{seed}", windows, better, f1=0.70 + noise + 0.002 * seed, crf=True,
                  crf_lr_mult=100, seed=seed)
        study_run(root / f"crf-x1-seed{seed}", windows, hits, f1=0.60 + noise, crf=True, seed=seed)
    return root


def test_holm_multiplies_by_rank_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.045, 0.04]) == pytest.approx([0.08, 0.08])  # never below a smaller p's adjusted value
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_bootstrap_excludes_zero_for_a_variant_better_on_every_document_and_not_for_an_identical_one(study):
    result = compare_to_baseline(compare_runs(study), "bert+softmax", resamples=2000)
    rows = {d.group: d for d in result.differences}
    assert set(rows) == {"bert+crf, crf_lr_mult=x100", "bert+crf, crf_lr_mult=x1"}
    better, same = rows["bert+crf, crf_lr_mult=x100"].documents, rows["bert+crf, crf_lr_mult=x1"].documents
    assert better.low > 0 and better.difference > 0
    assert (better.seeds, better.documents) == (3, 30)
    assert same.low <= 0 <= same.high and same.difference == 0 and same.p_value == 1.0
    # Holm across the two comparisons: the smaller p doubled, the larger one kept (here 1.0).
    assert better.p_holm == pytest.approx(min(1.0, 2 * better.p_value)) and better.p_holm > better.p_value
    assert same.p_holm == 1.0
    assert better.p_value == pytest.approx(1 / 2001)  # no resample of an always-better variant strays to 0
    seeds = rows["bert+crf, crf_lr_mult=x100"].seeds
    assert seeds.method == "paired t over seeds" and seeds.seeds == 3 and seeds.low > 0
    # The identical variant's seeds differ by exactly 0 each: no t test, so the seed family holds one test.
    assert "same difference" in rows["bert+crf, crf_lr_mult=x1"].seeds_note and seeds.p_holm == seeds.p_value
    assert rows["bert+crf, crf_lr_mult=x100"].verdict() == "better"
    assert rows["bert+crf, crf_lr_mult=x1"].verdict() == "no clear difference"


def test_bootstrap_difference_is_the_pooled_f1_difference():
    # One pair, two documents: baseline finds 1 of 2 entities in each (F1 0.5), the other both (F1 1.0).
    base = np.array([[[1, 2, 2], [1, 2, 2]]])
    other = np.array([[[2, 2, 2], [2, 2, 2]]])
    result = paired_bootstrap(base, other, resamples=500)
    assert result.difference == pytest.approx(0.5) and result.low == pytest.approx(0.5) and result.high == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap(base, other[:, :1], resamples=10)


def test_seed_test_is_paired_for_the_same_seeds_welch_otherwise_and_needs_two_seeds():
    paired = seed_test({1: 0.60, 2: 0.62, 3: 0.61}, {1: 0.70, 2: 0.71, 3: 0.72})
    assert paired.method == "paired t over seeds" and paired.difference == pytest.approx(0.1)
    assert paired.low < 0.1 < paired.high and paired.p_value < 0.01
    welch = seed_test({1: 0.60, 2: 0.62}, {3: 0.70, 4: 0.71, 5: 0.72})
    assert welch.method == "Welch t over seeds" and welch.difference == pytest.approx(0.71 - 0.61)
    assert "at least 2 seeds" in seed_test({1: 0.6}, {1: 0.7})


def test_one_seed_per_group_gives_the_bootstrap_only(tmp_path):
    windows, hits = dev_windows(), hits_per_document()
    study_run(tmp_path / "softmax", windows, hits, f1=0.6)
    study_run(tmp_path / "crf", windows, [k + 1 for k in hits], f1=0.7, crf=True)
    row = compare_to_baseline(compare_runs(tmp_path), "bert+softmax", resamples=500).differences[0]
    assert row.seeds is None and "needs at least 2 seeds" in row.seeds_note
    assert row.documents.low > 0 and row.documents.p_holm == row.documents.p_value  # one comparison: Holm changes nothing
    assert row.sentence().startswith("bert+crf vs bert+softmax: better; +")
    assert "1 seed x 30 documents" in row.sentence() and "needs at least 2 seeds" in row.sentence()


def test_too_few_documents_skip_the_bootstrap(tmp_path):
    windows, hits = dev_windows(5), hits_per_document(5)
    for seed in (1, 2):
        study_run(tmp_path / f"softmax-seed{seed}", windows, hits, f1=0.6 + 0.01 * seed, seed=seed)
        study_run(tmp_path / f"crf-seed{seed}", windows, [k + 1 for k in hits], f1=0.7 + 0.03 * seed, crf=True, seed=seed)
    row = compare_to_baseline(compare_runs(tmp_path), "bert+softmax", resamples=100).differences[0]
    assert row.documents is None and "at least 10 dev documents (found 5)" in row.documents_note
    assert row.seeds.difference == pytest.approx(0.13) and "found 5" in row.sentence()


def test_runs_without_dev_predictions_skip_the_bootstrap_and_say_so(tmp_path):
    fake_run(tmp_path / "softmax-seed1", seed=1, f1=0.6)
    fake_run(tmp_path / "softmax-seed2", seed=2, f1=0.62)
    fake_run(tmp_path / "crf-seed1", crf=True, seed=1, f1=0.7)
    fake_run(tmp_path / "crf-seed2", crf=True, seed=2, f1=0.73)
    result = compare_to_baseline(compare_runs(tmp_path), "bert+softmax", resamples=100)
    row = result.differences[0]
    assert row.documents is None and "no dev_predictions.jsonl" in row.documents_note
    assert row.seeds.difference == pytest.approx(0.715 - 0.61) and row.seeds.p_holm == row.seeds.p_value
    assert sorted(result.without_predictions) == ["crf-seed1", "crf-seed2", "softmax-seed1", "softmax-seed2"]


def test_unknown_baseline_lists_the_groups(study):
    with pytest.raises(BertnerError, match=r"--baseline 'crf' is not a group \(nor the start of one\); the groups are: 'bert\+crf, crf_lr_mult=x100'; .*'bert\+softmax'"):
        compare_to_baseline(compare_runs(study), "crf")
    result = runner.invoke(app, ["compare", str(study), "--baseline", "softmax"])
    assert result.exit_code == 1
    assert "is not a group (nor the start of one); the groups are:" in result.output and "Traceback" not in result.output
    # Spelling after commas and case do not matter.
    assert compare_to_baseline(compare_runs(study), "BERT+crf,crf_lr_mult=x1", resamples=50).baseline == "bert+crf, crf_lr_mult=x1"


def test_cli_prints_a_sentence_per_group_and_json_has_the_numbers(study):
    result = runner.invoke(app, ["compare", str(study), "--baseline", "bert+softmax", "--resamples", "500"])
    assert result.exit_code == 0, result.output
    assert "bert+crf, crf_lr_mult=x100 vs bert+softmax: better; +" in result.output
    assert "3 seeds x 30 documents" in result.output
    result = runner.invoke(app, ["compare", str(study), "--baseline", "bert+softmax", "--resamples", "500", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["significance"]["baseline"] == "bert+softmax" and data["significance"]["correction"] == "holm"
    rows = {d["group"]: d for d in data["significance"]["differences"]}
    top = rows["bert+crf, crf_lr_mult=x100"]
    assert top["documents"]["low"] > 0 and top["documents"]["p_holm"] >= top["documents"]["p_value"]
    assert top["seeds"]["method"] == "paired t over seeds" and top["verdict"] == "better"
    assert len(data["runs"]) == 9  # the usual compare JSON is still there
