"""`--lexicon`: reading sources, matching every occurrence, SoftLexicon features, runs that keep their lexicon."""

from __future__ import annotations

import builtins
import json
import random
import shutil
import sys

import pytest
import torch
from cli_helpers import assert_one_line_error, invoke

from bertner.config import TrainConfig
from bertner.data.jsonl import write_windows
from bertner.engine.trainer import train
from bertner.fileio import write_json
from bertner.lexicon import Lexicon, LexiconMatcher, fold, read_lexicon
from bertner.models.lexicon import LexiconEmbedding
from bertner.predict import Predictor
from bertner.spans import Span, Window


def lexicon_of(words: dict[str, str]) -> Lexicon:
    lexicon = Lexicon([], [], [])
    for term, kind in sorted(words.items()):
        lexicon.add(term, kind, 1.0)
    return lexicon


def brute_force(text: str, terms: set[str]) -> set[tuple[int, int, str]]:
    return {(i, j, text[i:j]) for i in range(len(text)) for j in range(i + 1, len(text) + 1) if text[i:j] in terms}


# ----------------------------------------------------------------------------- matching

def test_matching_finds_exactly_what_a_brute_force_scan_finds():
    rng = random.Random(7)
    alphabet = "甲乙丙丁戊己"  # few characters: many overlapping and nested terms
    terms = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(10_000)}
    lexicon = lexicon_of({t: "word" for t in terms})
    matcher = LexiconMatcher(lexicon)
    for _ in range(20):
        text = "".join(rng.choice(alphabet + "，x ") for _ in range(rng.randint(0, 200)))
        found = {(s, e, lexicon.terms[ids[0] - 1]) for s, e, ids in matcher.matches(text)}
        assert found == brute_force(text, terms)
        assert all(text[s:e] == term for s, e, term in found)


def test_nested_terms_give_each_character_its_sets():
    lexicon = lexicon_of({"糖尿病": "disease", "糖尿": "word", "尿": "word", "病": "symptom"})
    lexicon.fit(["糖尿病"])
    matcher = LexiconMatcher(lexicon)
    per_char = matcher.char_features("糖尿病")
    named = [{(lexicon.terms[e - 1], "BMES"[s]) for e, s in slots} for slots in per_char]
    assert named == [
        {("糖尿病", "B"), ("糖尿", "B")},
        {("糖尿病", "M"), ("糖尿", "E"), ("尿", "S")},
        {("糖尿病", "E"), ("病", "S")},
    ]


def test_matching_folds_case_without_moving_offsets():
    lexicon = lexicon_of({fold("HbA1c"): "test"})
    matcher = LexiconMatcher(lexicon)
    text = "İ查HBA1C高"  # İ lower-cases to two characters; offsets must not shift
    assert [(s, e) for s, e, _ in matcher.matches(text)] == [(2, 7)]


def test_a_character_changes_features_exactly_when_a_term_covering_it_is_added():
    rng = random.Random(3)
    alphabet = "甲乙丙丁戊"
    base = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))): "word" for _ in range(40)}
    text = "".join(rng.choice(alphabet) for _ in range(300))

    def named_features(words: dict[str, str]) -> list[set]:
        lexicon = lexicon_of(words)
        lexicon.fit([text])
        per_char = LexiconMatcher(lexicon).char_features(text)
        return [{(lexicon.terms[e - 1], lexicon.types[e - 1], s) for e, s in slots} for slots in per_char]

    before = named_features(base)
    for added in ("甲乙丙丁戊甲", "乙乙乙乙乙乙乙"):  # one that occurs, one that does not
        after = named_features({**base, added: "new"})
        covered = {i for s, e, _ in brute_force(text, {added}) for i in range(s, e)}
        changed = {i for i, (a, b) in enumerate(zip(before, after)) if a != b}
        assert changed == covered


# ----------------------------------------------------------------------------- sources

def test_term_files_and_folders(tmp_path):
    folder = tmp_path / "terms"
    folder.mkdir()
    (folder / "drug.txt").write_text("二甲双胍\n胰岛素\tDrug\t12\n\n阿司匹林\x7f\r\n", encoding="utf-8")
    (folder / "disease.txt").write_text("\ufeff糖尿病\n", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    lexicon = read_lexicon([str(folder)])
    assert sorted(zip(lexicon.terms, lexicon.types, lexicon.frequencies)) == sorted([
        ("二甲双胍", "drug", 1.0), ("胰岛素", "Drug", 12.0), ("糖尿病", "disease", 1.0), ("阿司匹林", "drug", 1.0)])


def test_jieba_dictionary_types():
    pytest.importorskip("jieba")
    lexicon = read_lexicon(["jieba"])
    assert len(lexicon) > 300_000
    kinds = dict(zip(zip(lexicon.terms, lexicon.types), lexicon.frequencies))
    assert ("北京", "place") in kinds and ("糖尿病", "word") in kinds


BAD_SOURCES = {
    "empty": (lambda p: p.write_text("\n  \n", encoding="utf-8"), "holds no terms"),
    "gbk": (lambda p: p.write_bytes("糖尿病\n".encode("gbk")), "not UTF-8"),
    "type with a space": (lambda p: p.write_text("糖尿病\tmy type\n", encoding="utf-8"), ":1: the type"),
    "huge term": (lambda p: p.write_text("药\n" + "糖" * 10_000 + "\n", encoding="utf-8"), ":2: a term of 10,000"),
    "bad frequency": (lambda p: p.write_text("糖尿病\tdisease\tmany\n", encoding="utf-8"), ":1: the frequency"),
    "four columns": (lambda p: p.write_text("a\tb\t1\tx\n", encoding="utf-8"), ":1: expected term"),
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Drugs (entities) and foods (not) in the same places; dev's are made of characters training never shows.

    Without the lexicon nothing tells dev's drugs from its foods; with it, their type does.
    """
    folder = tmp_path_factory.mktemp("lexdata")
    rng = random.Random(0)
    pairs = lambda chars: [a + b for a in chars for b in chars if a != b]  # noqa: E731
    # 90 names of each kind, each used a few times: like real text, most are rare, so training also
    # shows the model terms without a word vector of their own (shared with terms it never saw)
    train_drugs, train_foods = pairs("甲乙丙丁戊己庚辛壬癸"), pairs("金木水火土风雷山石田")
    unseen = pairs("子丑寅卯辰巳")
    dev_drugs, dev_foods = unseen[::2], unseen[1::2]
    filler = list("患者今日复诊自述良好无不适建议继续观察控制运动每周")

    def window(i: int, prefix: str, drugs: list[str], foods: list[str]) -> Window:
        text, spans = "", []
        for _ in range(3):
            text += "".join(rng.choice(filler) for _ in range(rng.randint(1, 5))) + rng.choice("服用加")
            if rng.random() < 0.5:
                drug = rng.choice(drugs)
                spans.append(Span(len(text), len(text) + len(drug), "Drug"))
                text += drug
            else:
                text += rng.choice(foods)
        return Window(f"{prefix}{i}#0", f"{prefix}{i}", 0, text + "。", spans)

    write_windows(folder / "train.jsonl", [window(i, "t", train_drugs, train_foods) for i in range(200)])
    write_windows(folder / "dev.jsonl", [window(i, "d", dev_drugs, dev_foods) for i in range(60)])
    write_json(folder / "labels.json", {"labels": ["Drug"]})
    (folder / "drugs.txt").write_text("\n".join(train_drugs + dev_drugs) + "\n", encoding="utf-8")
    (folder / "foods.txt").write_text("\n".join(train_foods + dev_foods) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_lexicon_files_are_one_line_and_create_no_run(tiny_data, tmp_path, case):
    write, expected = BAD_SOURCES[case]
    bad = tmp_path / "bad.txt"
    write(bad)
    run = tmp_path / "run"
    result = invoke("train", tiny_data, "--model", "bilstm", "--lexicon", bad, "--epochs", 1, "-o", run)
    assert_one_line_error(result, str(bad), expected)
    assert not run.exists()


def test_bad_lexicon_sources_are_one_line(tiny_data, tmp_path, monkeypatch):
    empty_folder = tmp_path / "nothing"
    empty_folder.mkdir()
    (empty_folder / "terms.csv").write_text("a\n", encoding="utf-8")
    run = tmp_path / "run"
    result = invoke("train", tiny_data, "--model", "bilstm", "--lexicon", empty_folder, "-o", run)
    assert_one_line_error(result, str(empty_folder), "TYPE.txt")
    result = invoke("train", tiny_data, "--model", "bilstm", "--lexicon", tmp_path / "missing.txt", "-o", run)
    assert_one_line_error(result, "missing.txt", "no such file")
    real_import = builtins.__import__

    def no_jieba(name, *args, **kwargs):
        if name == "jieba":
            raise ImportError("No module named 'jieba'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "jieba", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_jieba)
    result = invoke("train", tiny_data, "--model", "bilstm", "--lexicon", "jieba", "-o", run)
    assert_one_line_error(result, "jieba", 'pip install "bertner[zh]"')
    assert not run.exists()


def test_subword_alignment_is_refused(tiny_data, tmp_path):
    result = invoke("train", tiny_data, "--alignment", "subword", "--lexicon", tiny_data / "drugs.txt", "-o", tmp_path / "r")
    assert_one_line_error(result, "char alignment")


# ----------------------------------------------------------------------------- features reach the model

def test_a_term_only_dev_holds_still_reaches_the_features(tiny_data):
    lexicon = read_lexicon([str(tiny_data / "drugs.txt"), str(tiny_data / "foods.txt")])
    lexicon.fit(["服甲乙"] * 10)  # training text: 甲乙 matched often; 子丑 never
    matcher = LexiconMatcher(lexicon)
    embedding = LexiconEmbedding(lexicon, 8).eval()

    def vectors(text: str, m: LexiconMatcher) -> torch.Tensor:
        ids, sets = m.token_features(text, [(i, i + 1) for i in range(len(text))])
        return embedding(ids.unsqueeze(0), sets.unsqueeze(0))[0]

    seen, unseen = vectors("服甲乙", matcher), vectors("服子丑", matcher)
    assert lexicon.words[lexicon.terms.index("子丑")] == 0 and lexicon.words[lexicon.terms.index("甲乙")] > 0
    assert unseen[1:].abs().sum() > 0  # the unseen term's characters have features
    assert torch.equal(unseen[0], embedding.project.bias)  # 服 is in no term: nothing pooled, only the bias
    without = lexicon_of({"甲乙": "drugs"})
    without.fit(["服甲乙"] * 10)
    assert LexiconMatcher(without).char_features("服子丑") == [[], [], []]
    assert not torch.equal(seen[1:], unseen[1:])  # its own word vector against the shared unseen one


def lexicon_config(data, output, **overrides) -> TrainConfig:
    values = dict(data=str(data), output=str(output), model="bilstm", crf=True, epochs=8, batch_size=8,
                  rnn_hidden=32, char_dim=16, lexicon_dim=16, seed=1, num_threads=1, log_every=50)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def lexicon_run(tiny_data, tmp_path_factory):
    terms = tmp_path_factory.mktemp("src") / "drugs.txt"
    shutil.copy(tiny_data / "drugs.txt", terms)
    run = tmp_path_factory.mktemp("runs") / "lex"
    summary = train(lexicon_config(tiny_data, run, lexicon=[str(terms), str(tiny_data / "foods.txt")]))
    return run, terms, summary


def test_lexicon_finds_entities_training_never_showed(tiny_data, lexicon_run, tmp_path):
    """Dev's drug and food names are unseen characters: only their lexicon type can tell them apart."""
    _, _, with_lexicon = lexicon_run
    without = train(lexicon_config(tiny_data, tmp_path / "plain"))
    assert with_lexicon.best_f1 > 0.9
    assert without.best_f1 < 0.5


def test_a_lexicon_run_predicts_the_same_after_its_source_is_gone(lexicon_run, tmp_path):
    run, terms, summary = lexicon_run
    text = "患者服子丑，复诊用子寅，加甲丙。"  # an unseen drug, an unseen food, a trained drug
    before = Predictor.from_run(run, device="cpu").predict_text(text)
    assert [text[s.start:s.end] for s in before] == ["子丑", "甲丙"]
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    terms.unlink()
    after = Predictor.from_run(moved, device="cpu").predict_text(text)
    assert after == before
    assert json.loads((run / "summary.json").read_text(encoding="utf-8"))["best_f1"] == summary.best_f1


def test_a_lexicon_run_evaluates_and_refuses_export(lexicon_run, tiny_data, tmp_path):
    run, _, summary = lexicon_run
    result = invoke("evaluate", run, tiny_data / "dev.jsonl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["micro"]["f1"] == pytest.approx(summary.best_f1, abs=1e-9)
    result = invoke("export", run, tmp_path / "hf")
    assert_one_line_error(result, "--lexicon", "bertner predict")


def test_a_run_without_its_lexicon_file_is_refused(lexicon_run, tmp_path):
    run, _, _ = lexicon_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "lexicon.tsv.gz").unlink()
    note = tmp_path / "note.txt"
    note.write_text("患者服子丑。", encoding="utf-8")
    result = invoke("predict", copy, note, "--format", "jsonl")
    assert_one_line_error(result, "lexicon.tsv.gz is missing")


def test_lexicon_joins_a_transformer_output(tiny_data, tmp_path):
    summary = train(lexicon_config(tiny_data, tmp_path / "tiny", model="tiny", tiny_hidden=32, tiny_heads=2,
                                   lexicon=[str(tiny_data / "drugs.txt")], epochs=2))
    run = Predictor.from_run(tmp_path / "tiny", device="cpu").run
    assert run.model.lexicon is not None and not run.model.lexicon_into_encoder
    assert run.model.classifier.in_features == 32 + run.model.lexicon.out_dim
    assert summary.best_f1 is not None


def test_yaml_and_repeated_flags(tiny_data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"lexicon: {tiny_data / 'drugs.txt'}\nepochs: 1\nmodel: bilstm\n", encoding="utf-8")
    result = invoke("train", tiny_data, "--config", config, "-o", tmp_path / "r")
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "r" / "config.yaml").read_text(encoding="utf-8")
    assert f"- {tiny_data / 'drugs.txt'}" in saved


def test_sweep_names_runs_by_their_lexicon_sources():
    from bertner.sweep import run_name

    values = {"model": "bilstm", "crf": True, "gru": False}
    names = [run_name({**values, "lexicon": lexicon}, ["lexicon"])
             for lexicon in (None, ["jieba"], ["jieba", "../shared/lexicons/huatuo"], ["terms/drug.txt"])]
    assert names == ["bilstm-crf-no_lexicon", "bilstm-crf-lex-jieba", "bilstm-crf-lex-jieba+huatuo", "bilstm-crf-lex-drug"]
