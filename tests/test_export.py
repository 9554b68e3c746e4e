"""`bertner export`: plain transformers loads the folder offline and finds the entities `bertner predict` finds."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
import yaml
from conftest import ALBERT_TINY, BERT_TOKENIZER, need
from synthetic import write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.config import TrainConfig
from bertner.engine.trainer import train

runner = CliRunner()
# Whitespace between entities, upper-case and full-width Latin (read through fallbacks), a literal special token,
# a character no vocabulary holds, a line break.
TEXTS = [
    "患者今日复诊，血压正常，口服二甲双胍。",
    "HbA1c 7.5%，诊断 糖尿病\n建议胰岛素 阿司匹林。",
    "ＨＢＡ１Ｃ升高[UNK]高血压 冠心病𝔸肾病。",
    "无不适。",
]


def tiny_run(data, output, crf: bool):
    return train(TrainConfig(
        data=str(data), output=str(output), model="tiny", epochs=3, batch_size=16, warmup_ratio=0.05, tiny_layers=1,
        tiny_hidden=64, tiny_heads=2, lr=5e-3, seed=1, num_threads=1, crf=crf, crf_lr_mult=10 if crf else None,
    ))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_synthetic(root / "data", n_train=200, n_dev=20)
    for name, crf in (("softmax", False), ("crf", True)):
        assert tiny_run(data, root / name, crf).best_f1 > 0.8  # a model that finds entities
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def export(run, out, *args):
    result = runner.invoke(app, ["export", str(run), str(out), *args])
    assert result.exit_code == 0, result.output
    return result


def predicted(run, tmp_path) -> list[list[tuple[int, int, str]]]:
    """What `bertner predict --format jsonl` finds in TEXTS."""
    inputs = tmp_path / "texts"
    inputs.mkdir()
    for i, text in enumerate(TEXTS):
        (inputs / f"{i}.txt").write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["predict", str(run), str(inputs), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = {row["doc"]: row for row in map(json.loads, result.stdout.splitlines())}
    return [[(e["start"], e["end"], e["label"]) for e in rows[str(i)]["entities"]] for i in range(len(TEXTS))]


def trimmed(text: str, start: int, end: int, label: str) -> tuple[int, int, str] | None:
    """A pipeline entity less whitespace at its edges, as bertner reports it (the documented difference)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end, label) if start < end else None


def test_softmax_export_gives_predicts_entities_through_a_plain_pipeline(runs, tmp_path):
    from transformers import AutoModelForTokenClassification, pipeline

    out = tmp_path / "hf"
    result = export(runs / "softmax", out)
    assert "softmax head" in result.stderr and "what differs from `bertner predict`" in result.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
            "bertner_export.json"} <= {p.name for p in out.iterdir()}
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForTokenClassification"
    assert set(model.config.id2label.values()) == {"O", "B-Disease", "I-Disease", "B-Drug", "I-Drug", "B-Test", "I-Test"}

    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="simple", device="cpu")
    expected = predicted(runs / "softmax", tmp_path)
    assert sum(map(len, expected)) >= 8  # the comparison has entities to compare
    for text, bertner_entities in zip(TEXTS, expected):
        found = [trimmed(text, e["start"], e["end"], e["entity_group"]) for e in tagger(text)]
        assert [e for e in found if e] == bertner_entities, text


def test_the_exported_tokenizer_cuts_text_as_bertner_does(runs, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertner.runs import load_run

    out = tmp_path / "hf"
    export(runs / "softmax", out)
    run = load_run(runs / "softmax")
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    assert_same_inputs_and_logits(run, tokenizer, model, TEXTS + ["[CLS] 与 [SEP]\t\u3000x"])


def assert_same_inputs_and_logits(run, tokenizer, model, texts):
    """Token by token the export feeds the model the embedding bertner feeds it, and the logits agree."""
    ours = run.model.encoder.get_input_embeddings().weight
    theirs = model.get_input_embeddings().weight
    for text in texts:
        tokens = run.aligner.encode(text)
        encoded = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        assert [tuple(o) for o in encoded.pop("offset_mapping")[0, 1:-1].tolist()] == tokens.offsets, text
        ids = encoded["input_ids"][0, 1:-1]
        assert torch.equal(theirs[ids], ours[torch.tensor(tokens.ids)]), text  # new ids copy bertner's rows
        with torch.no_grad():
            logits = model(**encoded).logits[0, 1:-1]
            x = torch.tensor([[run.aligner.cls_id, *tokens.ids, run.aligner.sep_id]])
            emissions = run.model.emissions(x, torch.ones_like(x))[0, :-1]
        torch.testing.assert_close(logits, emissions, rtol=1e-4, atol=1e-4)


def test_crf_export_holds_the_transitions_and_its_readme_decodes_like_predict(runs, tmp_path):
    out = tmp_path / "hf"
    result = export(runs / "crf", out)
    assert "crf head" in result.stderr and "crf.safetensors" in result.stderr
    card = (out / "README.md").read_text(encoding="utf-8")
    decoding = re.findall(r"```python\n(.*?)```", card, re.S)[-1]
    namespace: dict = {}
    exec(decoding, namespace)  # the README's own code, as a user would paste it
    for text, bertner_entities in zip(TEXTS, predicted(runs / "crf", tmp_path)):
        found = [trimmed(text, *e) for e in namespace["crf_entities"](text)]
        assert [e for e in found if e] == bertner_entities, text


def test_runs_without_a_transformers_equivalent_are_refused_in_one_line(runs, tmp_path):
    for change, why in (({"gru": True}, "GRU"), ({"model": "bilstm"}, "--model bilstm")):
        run = tmp_path / next(iter(change))
        shutil.copytree(runs / "softmax", run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, **change}))
        result = runner.invoke(app, ["export", str(run), str(tmp_path / "out")])
        assert result.exit_code == 1 and why in result.output and len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_an_existing_folder_needs_force(runs, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(runs / "softmax"), str(out)])
    assert result.exit_code == 1 and "--force" in result.output
    export(runs / "softmax", out, "--force")
    assert (out / "notes.txt").read_text() == "mine" and (out / "config.json").exists()


def test_albert_export_uses_its_class_and_the_bert_vocabulary_cut_per_character(tmp_path):
    """A pretrained encoder: ALBERT's class, bert-base-chinese's vocabulary, upper case and whitespace handled."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertner.runs import load_run

    data = write_synthetic(tmp_path / "data", n_train=16, n_dev=4)
    train(TrainConfig(data=str(data), output=str(tmp_path / "run"), model=str(need(ALBERT_TINY)), epochs=1,
                      max_steps=1, batch_size=16, seed=1, num_threads=1))
    export(tmp_path / "run", tmp_path / "hf")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(model).__name__ == "AlbertForTokenClassification"
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    # The encoder's own tokenizer would give "hba", "##1c" here, and drop the spaces.
    texts = ["HbA1c 7.5%，Diabetes Mellitus 2型\n血压 130/80 mmHg", "ＡＢＣ [UNK] 𝔸"]
    assert_same_inputs_and_logits(load_run(tmp_path / "run"), tokenizer, model, texts)


def test_subword_runs_keep_the_encoders_tokenizer(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertner.runs import load_run

    model = tmp_path / "small-bert"  # bert-base-chinese's tokenizer on a BERT small enough to train here
    shutil.copytree(need(BERT_TOKENIZER), model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    (model / "config.json").write_text(json.dumps(config))
    data = write_synthetic(tmp_path / "data", n_train=16, n_dev=4)
    train(TrainConfig(data=str(data), output=str(tmp_path / "run"), model=str(model), random_init=True,
                      alignment="subword", epochs=1, max_steps=1, batch_size=16, seed=1, num_threads=1))
    result = export(tmp_path / "run", tmp_path / "hf")
    assert "whitespace alone" in result.stderr
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    exported = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert_same_inputs_and_logits(load_run(tmp_path / "run"), tokenizer, exported, ["HbA1c 7.5%，诊断 糖尿病", "Diabetes 2型"])


def test_skip_whitespace_runs_export_a_tokenizer_that_skips_it_too(runs, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from bertner.runs import load_run

    train(TrainConfig(data=str(runs / "data"), output=str(tmp_path / "run"), model="tiny", whitespace_tokens=False,
                      tiny_layers=1, tiny_hidden=32, tiny_heads=2, epochs=1, max_steps=1, seed=1, num_threads=1))
    export(tmp_path / "run", tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    assert_same_inputs_and_logits(load_run(tmp_path / "run"), tokenizer, model, TEXTS + ["甲 \t\u3000\n乙\u2028丙"])


# ----------------------------------------------------------------------------- issue 22: word, stride, model card

def test_the_pipeline_words_are_the_texts_and_the_cards_stride_reads_long_texts(runs, tmp_path):
    out = tmp_path / "hf"
    export(runs / "softmax", out)
    usage = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(encoding="utf-8"), re.S)[0]
    namespace: dict = {}
    exec(usage, namespace)  # the card's own snippet: builds `tagger` (and tags one sentence)
    tagger = namespace["tagger"]
    words = [(e["word"], text[e["start"] : e["end"]]) for text in TEXTS for e in tagger(text)]
    assert len(words) >= 8 and all(word == span for word, span in words), words  # no space between characters

    assert "stride=" in usage
    long_text = "".join(TEXTS) * 12  # longer than the encoder reads at once
    max_tokens = json.loads((out / "config.json").read_text())["max_position_embeddings"]
    assert len(long_text) > max_tokens
    entities = tagger(long_text)
    assert all(e["word"] == long_text[e["start"] : e["end"]] for e in entities)
    assert max(e["end"] for e in entities) > max_tokens  # stride= read past the first piece


def test_the_exported_card_carries_the_hubs_metadata(runs, tmp_path):
    from cli_helpers import assert_one_line_error

    from bertner.runs import RunDir

    out = tmp_path / "hf"
    export(runs / "crf", out)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    metadata = yaml.safe_load(card.split("---\n")[1])
    summary = RunDir(runs / "crf").read_summary()
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "token-classification"
    assert metadata["language"] == "zh"  # the run's dev text is Chinese
    assert metadata["labels"] == ["Disease", "Drug", "Test"]
    metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"f1": round(summary.best_f1, 4), "precision": round(summary.best_precision, 4),
                       "recall": round(summary.best_recall, 4)}
    export(runs / "crf", out, "--force", "--language", "en")
    assert yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---\n")[1])["language"] == "en"
    refused = runner.invoke(app, ["export", str(runs / "crf"), str(tmp_path / "other"), "--language", "Chinese"])
    assert_one_line_error(refused, "--language")
    assert not (tmp_path / "other").exists()
