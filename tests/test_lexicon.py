"""`--lexicon`: reading sources, matching every occurrence, SoftLexicon features, runs that keep their lexicon."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import Counter

import pytest
import torch
from cli_helpers import assert_one_line_error, invoke, without_module

import bertner.lexicon
from bertner.config import TrainConfig
from bertner.data.jsonl import write_windows
from bertner.engine.trainer import train
from bertner.fileio import write_json
from bertner.lexicon import MAX_SLOTS, Lexicon, LexiconMatcher, fold, read_lexicon
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


def occurrences(matcher: LexiconMatcher, texts: list[str]) -> list[set[tuple[int, int, str]]]:
    """Per text, (start, end, term) of each match `LexiconMatcher.match` finds."""
    matches = matcher.match(texts)
    bounds = matches.text_bounds()
    found = []
    for t in range(len(texts)):
        ends, groups = matches.ends[bounds[t]:bounds[t + 1]], matches.groups[bounds[t]:bounds[t + 1]]
        offset = matches.text_starts[t]
        terms = [matcher.lexicon.terms[matcher.group_entries[matcher.group_first[g]] - 1] for g in groups]
        found.append({(int(e - offset) - len(term), int(e - offset), term) for e, term in zip(ends, terms)})
    return found


def char_slots(matcher: LexiconMatcher, text: str) -> list[list[tuple[int, int]]]:
    """Per character of `text`, its (feature id, set) pairs in order."""
    slots = matcher.text_features([text])[0]
    per_char: list[list[tuple[int, int]]] = [[] for _ in text]
    for position, entry, kind in zip(slots.positions.tolist(), slots.entries.tolist(), slots.sets.tolist()):
        per_char[position].append((entry, kind))
    return per_char


# ----------------------------------------------------------------------------- matching

def test_matching_finds_exactly_what_a_brute_force_scan_finds():
    rng = random.Random(7)
    alphabet = "甲乙丙丁戊己"  # few characters: many overlapping and nested terms
    terms = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(10_000)}
    lexicon = lexicon_of({t: "word" for t in terms})
    matcher = LexiconMatcher(lexicon)
    texts = ["".join(rng.choice(alphabet + "，x ") for _ in range(rng.randint(0, 200))) for _ in range(20)]
    for text, found in zip(texts, occurrences(matcher, texts)):  # all texts in one pass: none leaks into the next
        assert found == brute_force(text, terms)
        assert all(text[s:e] == term for s, e, term in found)


def test_nested_terms_give_each_character_its_sets():
    lexicon = lexicon_of({"糖尿病": "disease", "糖尿": "word", "尿": "word", "病": "symptom"})
    matcher = LexiconMatcher(lexicon)
    lexicon.fit(matcher.entry_counts(matcher.match(["糖尿病"])))
    assert lexicon.weights == [math.log(3)] * 4
    per_char = char_slots(matcher, "糖尿病")
    named = [{(lexicon.terms[e - 1], "BMES"[s]) for e, s in slots} for slots in per_char]
    assert named == [
        {("糖尿病", "B"), ("糖尿", "B")},
        {("糖尿病", "M"), ("糖尿", "E"), ("尿", "S")},
        {("糖尿病", "E"), ("病", "S")},
    ]


def random_lexicon(rng: random.Random, alphabet: str, size: int) -> Lexicon:
    """Terms of 1-6 characters, some with two types; integer frequencies, so the cap's ranking has ties."""
    lexicon = Lexicon([], [], [])
    entries = {("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))), rng.choice("xyz")) for _ in range(size)}
    for term, kind in sorted(entries):
        lexicon.add(fold(term), kind, float(rng.randint(0, 3)))
    return lexicon


def brute_force_slots(lexicon: Lexicon, text: str) -> list[tuple[int, int, int]]:
    """SoftLexicon's features by their definition, slowly: (character, feature id, set) in order.

    Every substring that is a term, by end and the longer first where ends tie (an Aho-Corasick
    automaton's order), each of its entries on each character it covers; a character with more than
    MAX_SLOTS keeps the best ranked (training's weights, else the source's frequencies), ties in order.
    """
    entries_of: dict[str, list[int]] = {}
    for entry, term in enumerate(lexicon.terms, start=1):
        entries_of.setdefault(term, []).append(entry)
    folded = fold(text)
    per_char: list[list[tuple[int, int]]] = [[] for _ in text]
    for end in range(1, len(text) + 1):
        for start in range(end):
            for entry in entries_of.get(folded[start:end], []):
                for i in range(start, end):
                    kind = 3 if end - start == 1 else 0 if i == start else 2 if i == end - 1 else 1
                    per_char[i].append((entry, kind))
    rank = lexicon.weights or lexicon.frequencies
    kept = [sorted(slots, key=lambda slot: -rank[slot[0] - 1])[:MAX_SLOTS] if len(slots) > MAX_SLOTS else slots
            for slots in per_char]
    return [(i, entry, kind) for i, slots in enumerate(kept) for entry, kind in slots]


def test_features_match_their_definition_on_random_lexicons(monkeypatch):
    rng = random.Random(11)
    crowded = 0
    for trial in range(40):
        monkeypatch.setattr(bertner.lexicon, "MATCHES_PER_CHUNK", rng.choice([1, 7, 1 << 20]))  # texts in chunks
        alphabet = rng.choice(["甲乙丙丁戊己", "甲乙", "abAB甲"])  # few characters: crowded characters, the cap
        lexicon = random_lexicon(rng, alphabet, rng.choice([5, 50, 2000]))
        texts = ["".join(rng.choice(alphabet + " ，") for _ in range(rng.randint(0, 120))) for _ in range(rng.randint(1, 12))]
        matcher = LexiconMatcher(lexicon)
        if trial % 2:  # fitted: the cap ranks by weights
            lexicon.fit(matcher.entry_counts(matcher.match(texts)))
            counts = Counter(fold(text)[i:j] for text in texts for i in range(len(text)) for j in range(i + 1, len(text) + 1))
            assert lexicon.weights == [math.log(2 + counts[term]) for term in lexicon.terms]
        features = matcher.text_features(texts)
        assert len(features) == len(texts)
        for text, slots in zip(texts, features):
            expected = brute_force_slots(lexicon, text)
            crowded += sum(n == MAX_SLOTS for n in Counter(i for i, _, _ in expected).values())
            assert list(zip(slots.positions.tolist(), slots.entries.tolist(), slots.sets.tolist())) == expected
    assert crowded > 10  # the cap was exercised


@pytest.mark.parametrize("whitespace_tokens", [True, False])
def test_pooled_batches_match_the_definition(whitespace_tokens):
    """Windows -> slots -> tokens (chunked, whitespace with or without tokens) -> batch -> pooled vectors, against
    each character's weighted means computed one by one."""
    from bertner.align import CharAligner
    from bertner.engine.batching import collate, encode_windows

    rng = random.Random(5)
    alphabet = "甲乙丙丁"
    lexicon = random_lexicon(rng, alphabet, 300)
    texts = ["".join(rng.choice(alphabet + " ") for _ in range(rng.randint(1, 40))) for _ in range(9)]
    matcher = LexiconMatcher(lexicon)
    lexicon.fit(matcher.entry_counts(matcher.match(texts)))
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *alphabet])}
    aligner = CharAligner(vocab, whitespace_tokens=whitespace_tokens)
    windows = [Window(f"w{i}#0", f"w{i}", 0, text, []) for i, text in enumerate(texts)]
    encoded = encode_windows(windows, aligner, 16, lexicon=matcher.text_features(texts), stride=5)  # chunks of 14
    torch.manual_seed(0)
    embedding = LexiconEmbedding(lexicon, 8).eval()
    batch = collate(encoded.examples, range(len(encoded.examples)), aligner.cls_id, aligner.sep_id, aligner.pad_id, False)
    pooled = embedding(*batch.lexicon, *batch.input_ids.shape)
    words, types, weights = lexicon.tensors()
    slots = {i: brute_force_slots(lexicon, text) for i, text in enumerate(texts)}
    for row, example in enumerate(encoded.examples):
        offsets = encoded.offsets[example.window][example.token_start:example.token_start + len(example.ids)]
        for token, (char, _) in enumerate(offsets):
            around = [(entry, kind) for i, entry, kind in slots[example.window] if i == char]
            expected = torch.zeros(4, embedding.words.embedding_dim + embedding.types.embedding_dim)
            total = sum(weights[entry] for entry, _ in around)
            for entry, kind in around:
                vector = torch.cat([embedding.words.weight[words[entry]], embedding.types.weight[types[entry]]])
                expected[kind] += weights[entry] / total * vector
            assert torch.allclose(pooled[row, token + 1], embedding.project(expected.view(-1)), atol=1e-6)
    spaces = [texts[e.window][s] == " " for e in encoded.examples
              for s, _ in encoded.offsets[e.window][e.token_start:e.token_start + len(e.ids)]]
    assert any(spaces) == whitespace_tokens
    assert len(encoded.examples) > len(texts)  # long windows were chunked


def test_matching_folds_case_without_moving_offsets():
    lexicon = lexicon_of({fold("HbA1c"): "test"})
    matcher = LexiconMatcher(lexicon)
    text = "İ查HBA1C高"  # İ lower-cases to two characters; offsets must not shift
    assert [(s, e) for s, e, _ in occurrences(matcher, [text])[0]] == [(2, 7)]


def test_a_character_changes_features_exactly_when_a_term_covering_it_is_added():
    rng = random.Random(3)
    alphabet = "甲乙丙丁戊"
    base = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))): "word" for _ in range(40)}
    text = "".join(rng.choice(alphabet) for _ in range(300))

    def named_features(words: dict[str, str]) -> list[set]:
        lexicon = lexicon_of(words)
        matcher = LexiconMatcher(lexicon)
        lexicon.fit(matcher.entry_counts(matcher.match([text])))
        per_char = char_slots(matcher, text)
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
    without_module(monkeypatch, "jieba")
    result = invoke("train", tiny_data, "--model", "bilstm", "--lexicon", "jieba", "-o", run)
    assert_one_line_error(result, "jieba", 'pip install "bertner[zh]"')
    assert not run.exists()


def test_subword_alignment_is_refused(tiny_data, tmp_path):
    result = invoke("train", tiny_data, "--alignment", "subword", "--lexicon", tiny_data / "drugs.txt", "-o", tmp_path / "r")
    assert_one_line_error(result, "char alignment")


# ----------------------------------------------------------------------------- features reach the model

def test_a_term_only_dev_holds_still_reaches_the_features(tiny_data):
    lexicon = read_lexicon([str(tiny_data / "drugs.txt"), str(tiny_data / "foods.txt")])
    matcher = LexiconMatcher(lexicon)
    lexicon.fit(matcher.entry_counts(matcher.match(["服甲乙"] * 10)))  # training text: 甲乙 matched often; 子丑 never
    embedding = LexiconEmbedding(lexicon, 8).eval()

    def vectors(text: str, m: LexiconMatcher) -> torch.Tensor:
        slots = m.text_features([text])[0]
        bags = torch.from_numpy(slots.positions.astype("int64") * 4 + slots.sets)
        return embedding(bags, torch.from_numpy(slots.entries.astype("int64")), 1, len(text))[0]

    seen, unseen = vectors("服甲乙", matcher), vectors("服子丑", matcher)
    assert lexicon.words[lexicon.terms.index("子丑")] == 0 and lexicon.words[lexicon.terms.index("甲乙")] > 0
    assert unseen[1:].abs().sum() > 0  # the unseen term's characters have features
    assert torch.equal(unseen[0], embedding.project.bias)  # 服 is in no term: nothing pooled, only the bias
    without = lexicon_of({"甲乙": "drugs"})
    assert char_slots(LexiconMatcher(without), "服子丑") == [[], [], []]
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
    assert run.model.lexicon is not None and not run.model.extras_into_encoder
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
