"""predict and evaluate through the CLI: offsets exact in the original files, scores that agree."""

import json
import shutil

import pytest
from conftest import RUIJIN_UNLABELED, need
from synthetic import make_window, write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.config import TrainConfig
from bertner.engine.trainer import train

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = write_synthetic(root / "data")
    config = TrainConfig(
        data=str(data), output=str(root / "run"), model="tiny", epochs=6, batch_size=16, warmup_ratio=0.05,
        tiny_layers=1, tiny_hidden=64, tiny_heads=2, lr=5e-3, seed=1, num_threads=1, crf=True, crf_lr_mult=10,
    )
    train(config)
    return root / "run"


@pytest.fixture(scope="module")
def gold_brat(tmp_path_factory):
    """A brat folder of synthetic notes, several windows per document, one entity across a line break."""
    import random

    rng = random.Random(7)
    folder = tmp_path_factory.mktemp("gold")
    for d in range(6):
        text, lines = "", []
        for k in range(3):
            window = make_window(rng, k, f"g{d}-")
            lines += [(s.start + len(text), s.end + len(text), s.label) for s in window.spans]
            text += window.text + "\n"
        ann = "".join(f"T{i + 1}\t{label} {s} {e}\t{text[s:e]}\n" for i, (s, e, label) in enumerate(lines))
        (folder / f"doc{d}.txt").write_text(text, encoding="utf-8")
        (folder / f"doc{d}.ann").write_text(ann, encoding="utf-8")
    return folder


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_brat_predictions_score_exactly_like_evaluate(run_dir, gold_brat, tmp_path):
    pred = tmp_path / "pred"
    result = invoke("predict", run_dir, gold_brat, "--format", "brat", "-o", pred)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in pred.glob("*.ann")) == [f"doc{d}.ann" for d in range(6)]
    on_run = json.loads(invoke("evaluate", run_dir, gold_brat, "--json").stdout)
    on_files = json.loads(invoke("evaluate", pred, gold_brat, "--json").stdout)
    assert on_run["document"] == on_files["document"]
    assert on_run["micro"] == on_files["micro"]
    assert on_run["document"]["micro"]["f1"] > 0.9  # the model learned the synthetic entities


def test_jsonl_offsets_index_the_original_text(run_dir, tmp_path):
    text = "第一行：患者有糖尿病，\r\n第二行口服二甲双胍😀和阿司匹林。\u200b血压 正常。"
    source = tmp_path / "note.txt"
    source.write_bytes(text.encode("utf-8"))
    result = invoke("predict", run_dir, source, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["doc"] == "note"
    assert row["entities"], "the model should find the drugs and the disease"
    for e in row["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]
        assert 0.0 <= e["score"] <= 1.0
    assert {"二甲双胍", "阿司匹林"} <= {e["text"] for e in row["entities"]}


def test_html_page_highlights_the_entities_jsonl_finds_with_the_text_exact(run_dir, tmp_path):
    from test_html import visible

    text = "<script>alert(1)</script>患者有糖尿病，\r\n口服二甲双胍和阿司匹林 & 胰岛素。"
    source = tmp_path / "note.txt"
    source.write_bytes(text.encode("utf-8"))
    entities = json.loads(invoke("predict", run_dir, source, "-f", "jsonl").stdout)["entities"]
    result = invoke("predict", run_dir, source, "-f", "html", "-o", tmp_path / "note.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "note.html").read_bytes().decode("utf-8")
    assert "<script>" not in page and "&#13;\n" in page and visible(page).texts == [text]
    assert visible(page).titles == [f"{e['label']} {e['score']:.2f}" for e in entities] and entities
    marked = [m for m in page.split('<mark class="ent"')[1:]]
    assert [m.split(">", 1)[1].split("</mark>")[0] for m in marked] == [e["text"] for e in entities]


def test_train_keeps_the_best_checkpoints_dev_predictions(run_dir):
    from bertner.metrics import span_scores
    from bertner.runs import RunDir

    rows = RunDir(run_dir).read_dev_predictions()
    summary = RunDir(run_dir).read_summary()
    assert len(rows) == summary.dev_windows and all(w.text for w in rows)
    gold = [(w.id, s.start, s.end, s.label) for w in rows for s in w.gold]
    predicted = [(w.id, s.start, s.end, s.label) for w in rows for s in w.spans]
    # The same exact-span F1 that training logged for the best checkpoint.
    assert span_scores(gold, predicted).micro.f1 == pytest.approx(summary.best_f1, abs=1e-9)


def test_evaluate_json_and_errors(run_dir, tmp_path):
    data = write_synthetic(tmp_path / "other", n_train=1, n_dev=30, seed=5)
    scores = json.loads(invoke("evaluate", run_dir, data / "dev.jsonl", "--json").stdout)
    assert set(scores) >= {"micro", "macro", "per_type"}
    for block in [scores["micro"], scores["macro"], *scores["per_type"].values()]:
        assert set(block) == {"precision", "recall", "f1", "support"}
    result = invoke("evaluate", run_dir, data / "dev.jsonl", "--errors", "2")
    assert result.exit_code == 0 and "micro" in result.stdout


def test_predict_picks_the_best_run_and_says_so(run_dir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / "good")
    shutil.copytree(run_dir, runs / "worse")
    summary = json.loads((runs / "worse" / "summary.json").read_text())
    summary["best_f1"] = 0.01
    (runs / "worse" / "summary.json").write_text(json.dumps(summary))
    note = tmp_path / "n.txt"
    note.write_text("口服二甲双胍。", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("predict", note, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert "runs/good" in result.stderr


def test_ruijin_unlabeled_brat_offsets_are_exact(run_dir, tmp_path):
    source = need(RUIJIN_UNLABELED)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sorted(source.glob("*.txt"))[:5]:
        shutil.copy(path, inputs / path.name)
    pred = tmp_path / "pred"
    assert invoke("predict", run_dir, inputs, "-f", "brat", "-o", pred).exit_code == 0
    checked = 0
    for ann in pred.glob("*.ann"):
        text = (inputs / ann.with_suffix(".txt").name).read_text(encoding="utf-8")
        for line in ann.read_text(encoding="utf-8").splitlines():
            _, middle, surface = line.split("\t")
            fragments = [tuple(map(int, f.split())) for f in middle.split(" ", 1)[1].split(";")]
            assert " ".join(text[s:e] for s, e in fragments) == surface
            checked += 1
    assert len(list(pred.glob("*.ann"))) == 5 and checked > 0


def discontinuous_gold(folder):
    """Notes where one Drug entity is two words around 和 (`4 8;9 13`): each policy reads it differently."""
    folder.mkdir()
    text = "患者口服二甲双胍和阿司匹林，复查肌酐，无高血压。\n"
    ann = "T1\tDrug 4 8;9 13\t二甲双胍 阿司匹林\nT2\tTest 16 18\t肌酐\nT3\tDisease 20 23\t高血压\n"
    for d in range(3):
        (folder / f"note{d}.txt").write_text(text * (d + 1), encoding="utf-8")
        (folder / f"note{d}.ann").write_text(ann, encoding="utf-8")
    return folder


def run_with_policy(run_dir, folder, policy):
    """A copy of the module's run that records `policy` as its training data's discontinuous policy."""
    shutil.copytree(run_dir, folder)
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    labels["data"] = {**labels.get("data", {}), "discontinuous": policy}
    (folder / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return folder


def test_brat_predictions_score_like_evaluate_under_every_policy(run_dir, tmp_path):
    gold = discontinuous_gold(tmp_path / "gold")
    document_f1 = {}
    for policy in ("merge", "first", "split", "drop"):
        run = run_with_policy(run_dir, tmp_path / f"run-{policy}", policy)
        pred = tmp_path / f"pred-{policy}"
        assert invoke("predict", run, gold, "-f", "brat", "-o", pred).exit_code == 0
        on_run = json.loads(invoke("evaluate", run, gold, "--json").stdout)
        on_files = json.loads(invoke("evaluate", pred, gold, "--json").stdout)
        assert (on_files["document"], on_files["micro"]) == (on_run["document"], on_run["micro"]), policy
        assert json.loads((pred / "bertner_predict.json").read_text())["discontinuous"] == policy
        document_f1[policy] = on_files["document"]["micro"]["f1"]
    assert document_f1["split"] > document_f1["merge"]  # the policies really score differently here


def test_evaluate_a_prediction_folder_without_its_record(run_dir, tmp_path):
    gold = discontinuous_gold(tmp_path / "gold")
    run = run_with_policy(run_dir, tmp_path / "run", "split")
    pred = tmp_path / "pred"
    assert invoke("predict", run, gold, "-f", "brat", "-o", pred).exit_code == 0
    on_run = json.loads(invoke("evaluate", run, gold, "--json").stdout)
    (pred / "bertner_predict.json").unlink()  # .ann files from an older bertner or another tool
    guessed = invoke("evaluate", pred, gold, "--json")
    assert guessed.exit_code == 0 and "--discontinuous" in guessed.stderr  # says it assumed merge
    told = json.loads(invoke("evaluate", pred, gold, "--json", "--discontinuous", "split").stdout)
    assert told["document"] == on_run["document"]
    result = invoke("evaluate", run, gold, "--discontinuous", "merge")
    assert result.exit_code != 0 and not result.stdout
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {run} scores with the policy it was trained with (split); --discontinuous is for a folder of predicted .ann files"
    ]


def test_ann_files_an_earlier_predict_left_are_named(run_dir, gold_brat, tmp_path):
    """--force deletes nothing it does not write, so older .ann files can stay: predict and evaluate say so."""
    pred = tmp_path / "pred"
    assert invoke("predict", run_dir, gold_brat, "-f", "brat", "-o", pred).exit_code == 0
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for d in (0, 1):
        shutil.copy(gold_brat / f"doc{d}.txt", fewer)
    again = invoke("predict", run_dir, fewer, "-f", "brat", "-o", pred, "--force")
    assert again.exit_code == 0 and "4 .ann files" in again.stderr
    assert len(list(pred.glob("*.ann"))) == 6
    scored = invoke("evaluate", pred, gold_brat, "--json")
    assert scored.exit_code == 0 and "4 .ann files" in scored.stderr and "not written by the last predict" in scored.stderr


def test_predict_stream_reads_documents_as_it_goes(run_dir):
    """Documents are tagged in groups: the first predictions come out before the last input is read."""
    import random

    from bertner.predict import Predictor
    from bertner.spans import Document

    predictor = Predictor.from_run(run_dir, device="cpu", batch_size=2)
    rng = random.Random(3)
    docs = [Document(f"s{i}", make_window(rng, i, "s").text) for i in range(200)]
    taken = []

    def source():
        for doc in docs:
            taken.append(doc.id)
            yield doc

    stream = predictor.predict_stream(source())
    first = next(stream)
    assert first.doc == "s0" and len(taken) < 100
    predictions = [first, *stream]
    assert [p.doc for p in predictions] == [d.id for d in docs]
    for doc, p in zip(docs, predictions):
        assert all(0 <= s.start < s.end <= len(doc.text) for s in p.spans) and len(p.scores) == len(p.spans)


# ----------------------------------------------------------------------------- issue 22: held-out documents

def run_trained_on(run_dir, folder, documents):
    """A copy of the module's run whose data_fingerprint.json says it also trained on `documents`."""
    shutil.copytree(run_dir, folder)
    fingerprint = json.loads((folder / "data_fingerprint.json").read_text(encoding="utf-8"))
    fingerprint["train"]["documents"] = sorted(fingerprint["train"]["documents"] + list(documents))
    (folder / "data_fingerprint.json").write_text(json.dumps(fingerprint), encoding="utf-8")
    return folder


def gold_entities(folder, documents):
    return sum(len((folder / f"{d}.ann").read_text(encoding="utf-8").splitlines()) for d in documents)


def test_held_out_scores_only_the_documents_the_run_did_not_train_on(run_dir, gold_brat, tmp_path):
    run = run_trained_on(run_dir, tmp_path / "run", ["doc0", "doc1", "doc2"])
    everything = invoke("evaluate", run, gold_brat, "--json")
    assert everything.exit_code == 0, everything.output
    assert json.loads(everything.stdout)["trained_on_documents"] == 3
    assert "3 of the 6 documents" in everything.stderr and "--held-out scores only the 3" in " ".join(everything.stderr.split())

    held_out = invoke("evaluate", run, gold_brat, "--held-out", "--json")
    assert held_out.exit_code == 0, held_out.output
    scores = json.loads(held_out.stdout)
    assert scores["held_out"] is True and "trained_on_documents" not in scores and "warning" not in held_out.stderr
    assert scores["document"]["micro"]["support"] == gold_entities(gold_brat, ["doc3", "doc4", "doc5"])
    unseen = tmp_path / "unseen"  # the same three documents on their own give the same scores
    unseen.mkdir()
    for d in ("doc3", "doc4", "doc5"):
        for suffix in (".txt", ".ann"):
            shutil.copy(gold_brat / f"{d}{suffix}", unseen)
    alone = json.loads(invoke("evaluate", run, unseen, "--json").stdout)
    assert (alone["document"], alone["micro"]) == (scores["document"], scores["micro"])

    # The same from predicted .ann files: predict records what the run trained on, and says so.
    pred = tmp_path / "pred"
    predicted = invoke("predict", run, gold_brat, "-f", "brat", "-o", pred)
    assert predicted.exit_code == 0 and "3 of the 6 inputs were in" in " ".join(predicted.stderr.split())
    on_files = json.loads(invoke("evaluate", pred, gold_brat, "--held-out", "--json").stdout)
    assert (on_files["document"], on_files["micro"]) == (scores["document"], scores["micro"])
    trained = invoke("evaluate", pred, gold_brat, "--json")
    assert json.loads(trained.stdout)["trained_on_documents"] == 3 and "--held-out" in trained.stderr


def test_predicting_a_document_the_run_trained_on_says_so(run_dir, gold_brat, tmp_path):
    run = run_trained_on(run_dir, tmp_path / "run", ["doc0"])
    seen = invoke("predict", run, gold_brat / "doc0.txt", "-f", "jsonl")
    assert seen.exit_code == 0 and f"doc0 was in {run}'s training data" in " ".join(seen.stderr.split())
    unseen = invoke("predict", run, gold_brat / "doc1.txt", "-f", "jsonl")
    assert unseen.exit_code == 0 and "training data" not in unseen.stderr


def test_held_out_is_refused_when_it_cannot_tell_or_nothing_is_left(run_dir, gold_brat, tmp_path):
    from cli_helpers import assert_one_line_error

    everything = run_trained_on(run_dir, tmp_path / "all", [f"doc{d}" for d in range(6)])
    assert_one_line_error(invoke("evaluate", everything, gold_brat, "--held-out"), "all 6 documents", "nothing held out")
    unrecorded = tmp_path / "old"
    shutil.copytree(run_dir, unrecorded)
    (unrecorded / "data_fingerprint.json").unlink()  # a run from before bertner kept one
    assert_one_line_error(invoke("evaluate", unrecorded, gold_brat, "--held-out"), "data_fingerprint.json")
    pred = tmp_path / "pred"
    assert invoke("predict", unrecorded, gold_brat, "-f", "brat", "-o", pred).exit_code == 0
    assert_one_line_error(invoke("evaluate", pred, gold_brat, "--held-out"), "bertner_predict.json",
                          "which documents its run trained on")


def test_predictions_and_gold_without_a_shared_document_are_an_error(run_dir, gold_brat, tmp_path):
    from cli_helpers import assert_one_line_error

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "other.txt").write_text((gold_brat / "doc0.txt").read_text(encoding="utf-8"), encoding="utf-8")
    pred = tmp_path / "pred"
    assert invoke("predict", run_dir, notes, "-f", "brat", "-o", pred).exit_code == 0
    result = invoke("evaluate", pred, gold_brat)
    assert_one_line_error(result, "no document", "nothing to score")
    assert not result.stdout  # no table of zeros
    # Predicted documents that are all training documents leave nothing held out either.
    run = run_trained_on(run_dir, tmp_path / "run", ["doc0"])
    only_trained = tmp_path / "only-trained"
    assert invoke("predict", run, gold_brat / "doc0.txt", "-f", "brat", "-o", only_trained).exit_code == 0
    held_out = invoke("evaluate", only_trained, gold_brat, "--held-out")
    assert_one_line_error(held_out, "nothing held out")
    assert not held_out.stdout
