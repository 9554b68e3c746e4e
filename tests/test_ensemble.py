"""--ensemble: runs tagging as one through averaged character tag probabilities, decoded once."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, invoke
from synthetic import make_window, write_synthetic
from test_crf import path_score
from torch import nn

from bertner.data.jsonl import read_windows, write_windows
from bertner.engine.batching import EncodedWindows, Example
from bertner.ensemble import (
    EnsemblePredictor,
    char_probabilities,
    char_projections,
    decode_characters,
    token_probabilities,
)
from bertner.errors import RunError
from bertner.fileio import write_json
from bertner.models.tagger import HeadSpec, Tagger
from bertner.predict import Predictor
from bertner.spans import Span, Window
from bertner.tags import label_set_to_tags, spans_to_tags

CHAR_TAGS = label_set_to_tags(["Drug", "Test"], "BIO")  # O B-Drug I-Drug B-Test I-Test


def test_crf_marginals_are_the_brute_force_posteriors_of_each_tag() -> None:
    gen = torch.Generator().manual_seed(3)
    for k, steps in ((2, 1), (3, 4), (4, 3)):
        tagger = Tagger(nn.Identity(), 8, HeadSpec(num_tags=k, crf=True))
        with torch.no_grad():
            for p in (tagger.crf.start_transitions, tagger.crf.end_transitions, tagger.crf.transitions):
                p.copy_(torch.randn(p.shape, generator=gen))
        emissions = torch.randn(2, steps, k, generator=gen)
        lengths = [steps, max(1, steps - 1)]
        label_mask = torch.zeros(2, steps + 1, dtype=torch.bool)  # position 0 is [CLS]
        for b, n in enumerate(lengths):
            label_mask[b, 1 : n + 1] = True
        with torch.no_grad():  # as prediction calls it
            marginals = tagger.marginals(emissions, label_mask)
        for b, n in enumerate(lengths):
            paths = list(itertools.product(range(k), repeat=n))
            weights = torch.tensor([path_score(tagger.crf, emissions[b].double(), p) for p in paths]).double()
            weights = (weights - weights.logsumexp(0)).exp()
            for t in range(n):
                expected = [sum(float(w) for w, p in zip(weights, paths) if p[t] == j) for j in range(k)]
                assert marginals[b, t].tolist() == pytest.approx(expected, abs=1e-5)
            assert marginals[b, n:].abs().sum() == 0  # nothing past the row's end


def test_a_softmax_heads_marginals_are_its_probabilities() -> None:
    tagger = Tagger(nn.Identity(), 8, HeadSpec(num_tags=3))
    emissions = torch.randn(1, 2, 3)
    mask = torch.tensor([[False, True, True]])
    assert torch.allclose(tagger.marginals(emissions, mask), emissions.softmax(-1))


def test_each_scheme_projects_to_character_bio() -> None:
    tags = label_set_to_tags(["Drug", "Test"], "BIOES")  # O, then B I E S per type
    first, later = char_projections(tags, "BIOES", CHAR_TAGS)
    as_tag = lambda m: {tags[k]: CHAR_TAGS[int(m[k].argmax())] for k in range(len(tags))}  # noqa: E731
    assert as_tag(first) == {"O": "O", "B-Drug": "B-Drug", "I-Drug": "I-Drug", "E-Drug": "I-Drug", "S-Drug": "B-Drug",
                             "B-Test": "B-Test", "I-Test": "I-Test", "E-Test": "I-Test", "S-Test": "B-Test"}
    assert as_tag(later) == {"O": "O", "B-Drug": "I-Drug", "I-Drug": "I-Drug", "E-Drug": "I-Drug", "S-Drug": "I-Drug",
                             "B-Test": "I-Test", "I-Test": "I-Test", "E-Test": "I-Test", "S-Test": "I-Test"}
    assert (first.sum(1) == 1).all() and (later.sum(1) == 1).all()  # probability is moved, never made or lost
    with pytest.raises(RunError, match="IOB1"):
        char_projections(label_set_to_tags(["Drug"], "IOB1"), "IOB1", CHAR_TAGS)


def test_word_pieces_spread_over_their_characters_and_gaps_continue_the_token_before() -> None:
    # "ab cdefg": tokens "a", "b", "cde" (a word piece of three characters), "fg"; the space is in no token.
    window = Window("w#0", "w", 0, "ab cdefg", [])
    offsets = [(0, 1), (1, 2), (3, 6), (6, 8)]
    tags = label_set_to_tags(["Drug", "Test"], "BIO")
    one_hot = lambda tag: np.eye(len(tags), dtype=np.float32)[tags.index(tag)]  # noqa: E731
    tokens = np.stack([one_hot("O"), one_hot("B-Test"), one_hot("I-Test"), one_hot("B-Drug")])
    # Two overlapping chunks: tokens 0-2 and 1-3. Token 2 is the first chunk's last token, one from
    # the second's start: the second chunk saw more of its context, and its reading wins.
    chunk_a = tokens[0:3].copy()
    chunk_a[2] = one_hot("O")
    chunk_b = tokens[1:4].copy()
    encoded = EncodedWindows([window], [offsets], [Example(0, 0, [1, 2, 3], []), Example(0, 1, [2, 3, 4], [])], 0)
    first, later = char_projections(tags, "BIO", CHAR_TAGS)
    chars = char_probabilities(encoded, [chunk_a, chunk_b], first, later)[0]
    chosen = [CHAR_TAGS[i] for i in chars.argmax(1)]
    assert chosen == ["O", "B-Test", "I-Test", "I-Test", "I-Test", "I-Test", "B-Drug", "I-Drug"]
    assert chars.sum(1) == pytest.approx(np.ones(8))


def test_the_average_is_decoded_once_into_well_formed_spans_with_their_scores() -> None:
    window = Window("w#0", "w", 0, "xab y", [])
    p = lambda **probs: np.array([probs.get(t.replace("-", "_"), 0.0) for t in CHAR_TAGS])  # noqa: E731
    confident = np.stack([p(O=1), p(B_Drug=0.9, O=0.1), p(I_Drug=0.9, O=0.1), p(O=1), p(O=1)])
    doubtful = np.stack([p(O=1), p(O=0.6, B_Drug=0.4), p(O=0.6, I_Test=0.4), p(O=1), p(O=1)])
    average = (confident + doubtful) / 2  # "ab": B-Drug 0.65, then I-Drug 0.45 against O 0.35 and I-Test 0.2
    spans, scores = decode_characters(CHAR_TAGS, [window], [average])
    assert spans == [[Span(1, 3, "Drug")]]
    assert scores[0] == pytest.approx([(0.65 + 0.45) / 2])
    # I-Test alone is the likeliest tag of a character, but cannot follow O: the decode keeps sequences well formed.
    lone = np.stack([p(O=1), p(O=0.4, I_Test=0.6), p(O=1), p(O=1), p(O=1)])
    assert decode_characters(CHAR_TAGS, [window], [lone])[0] == [[]]
    # Whitespace at an entity's edge is not part of it, as for a single run.
    edge = np.stack([p(O=1), p(O=1), p(O=1), p(B_Test=1), p(I_Test=1)])
    assert decode_characters(CHAR_TAGS, [window], [edge])[0] == [[Span(4, 5, "Test")]]


# ----------------------------------------------------------------------------- through the CLI

BILSTM = ["--model", "bilstm", "--epochs", "4", "--batch-size", "16", "--rnn-hidden", "32", "--char-dim", "32",
          "--seed", "1", "--num-threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on the same synthetic task (a softmax bilstm and a CRF one), and one that knows other types."""
    root = tmp_path_factory.mktemp("ensemble")
    data = write_synthetic(root / "data", n_train=300, n_dev=40)
    found = {}
    for name, extra in (("softmax", []), ("crf", ["--crf", "--seed", "2"])):
        result = invoke("train", data, "-o", root / name, *BILSTM, *extra)
        assert result.exit_code == 0, result.output
        found[name] = root / name
    rng = random.Random(5)
    other = root / "other-data"
    other.mkdir()
    windows = [make_window(rng, i, "o") for i in range(40)]
    windows = [Window(w.id, w.doc, w.offset, w.text, [s for s in w.spans if s.label != "Test"]) for w in windows]
    write_windows(other / "train.jsonl", windows[:30])
    write_windows(other / "dev.jsonl", windows[30:])
    write_json(other / "labels.json", {"labels": ["Disease", "Drug"]})
    result = invoke("train", other, "-o", root / "other", *BILSTM, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    found["other"], found["dev"] = root / "other", data / "dev.jsonl"
    return found


def scores(*args) -> dict:
    result = invoke("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_ensemble_of_a_softmax_run_with_itself_is_its_constrained_decoding(runs) -> None:
    """The same probabilities, the same constraints: the best path is the same, or one exactly as probable (a tie)."""
    windows = read_windows(runs["dev"])
    alone = Predictor.from_run(runs["softmax"], device="cpu", constrained=True)
    ensemble = EnsemblePredictor.from_runs([runs["softmax"], runs["softmax"]], device="cpu")
    expected, found = alone.tag_windows(windows).spans, ensemble.tag_windows(windows).spans
    probabilities = token_probabilities(alone, alone.encode(windows))  # one token per character here
    tags = alone.run.tags
    path = lambda i, spans: sum(np.log(probabilities[i][t, tags.index(tag)])  # noqa: E731
                                for t, tag in enumerate(spans_to_tags(len(windows[i].text), spans)))
    differ = [i for i in range(len(windows)) if found[i] != expected[i]]
    assert len(differ) <= 2, differ
    for i in differ:
        assert path(i, found[i]) == pytest.approx(path(i, expected[i]), abs=1e-5)
    assert scores(runs["softmax"], runs["dev"], "--constrained-decoding")["micro"]["f1"] > 0.5  # it learned the task


def test_an_ensemble_of_two_runs_scores_and_predicts_exact_offsets(runs, tmp_path) -> None:
    together = scores(runs["softmax"], runs["dev"], "--ensemble", runs["crf"])
    best_alone = max(scores(runs[name], runs["dev"])["micro"]["f1"] for name in ("softmax", "crf"))
    assert together["micro"]["f1"] >= best_alone - 0.05
    text = "患者二甲双胍治疗，血压和肌酐正常。\n 有高血压 "
    (tmp_path / "note.txt").write_text(text, encoding="utf-8")
    result = invoke("predict", runs["crf"], tmp_path / "note.txt", "--ensemble", runs["softmax"], "-f", "jsonl")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["entities"], record
    for entity in record["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"] and entity["text"] == entity["text"].strip()
        assert 0 < entity["score"] <= 1


@pytest.mark.parametrize("problem", ["other types", "not a run", "constrained"])
def test_what_cannot_be_an_ensemble_is_one_line(runs, tmp_path, problem) -> None:
    if problem == "other types":
        result = invoke("evaluate", runs["softmax"], runs["dev"], "--ensemble", runs["other"])
        assert_one_line_error(result, str(runs["other"]), "different entity types", "Test")
    elif problem == "not a run":
        result = invoke("predict", runs["softmax"], runs["dev"], "--ensemble", tmp_path)
        assert_one_line_error(result, str(tmp_path))
    else:
        result = invoke("evaluate", runs["softmax"], runs["dev"], "--ensemble", runs["crf"], "--free-decoding")
        assert_one_line_error(result, "--constrained-decoding/--free-decoding", "ensemble")
