"""`bertner embeddings`: vectors trained on raw text, written as word2vec text, read back by `--init-embeddings`."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertner.config import TrainConfig
from bertner.embeddings import BIGRAM_PREFIX, WORD_PREFIX, VectorSettings, read_vectors, train_vectors
from bertner.engine.trainer import Trainer, train
from bertner.predict import Predictor
from cli_helpers import assert_one_line_error, invoke
from conftest import ROOT
from synthetic import LEXICON, write_synthetic

pytest.importorskip("gensim")

FAST = ["--epochs", "2", "--workers", "1", "--min-count", "1", "--seed", "1"]


def run_cli(*args: str, env: dict | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """`python -m bertner ...` in a real process (or `code` that runs the CLI), from the project's root."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "bertner", *args]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300)


def file_vectors(path: Path) -> dict[str, list[float]]:
    """The file parsed here on its own (not by the reader under test): token -> numbers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    count, dim = map(int, lines[0].split())
    vectors = {}
    for line in lines[1:]:
        token, *numbers = line.split(" ")
        assert len(numbers) == dim, line[:40]
        vectors[token] = [float(v) for v in numbers]
    assert len(vectors) == count == len(lines) - 1
    return vectors


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic training data, a term list, and the vectors `bertner embeddings` trains on them (50 wide, the
    lexicon's word width, so every table takes the file's vectors as they are)."""
    folder = tmp_path_factory.mktemp("embeddings")
    data = write_synthetic(folder / "data", n_train=200, n_dev=20)
    terms = folder / "terms.txt"
    # 血压 is also a bigram and 病 a character: each kind must keep its own vector.
    terms.write_text("\n".join([w for words in LEXICON.values() for w in words] + ["病"]) + "\n", encoding="utf-8")
    vectors = folder / "vectors" / "v.txt"
    result = run_cli("embeddings", str(data / "train.jsonl"), "-o", str(vectors), "--lexicon", str(terms), "--dim", "50", *FAST)
    assert result.returncode == 0, result.stderr
    return data, terms, vectors, result


def test_the_file_holds_characters_bigrams_and_words_apart(trained):
    _, _, vectors, result = trained
    assert f"wrote {vectors}" in result.stderr and "characters" in result.stderr
    found = file_vectors(vectors)
    assert "血" in found and "病" in found
    assert BIGRAM_PREFIX + "血压" in found and WORD_PREFIX + "血压" in found and WORD_PREFIX + "病" in found
    assert found[BIGRAM_PREFIX + "血压"] != found[WORD_PREFIX + "血压"] and found["病"] != found[WORD_PREFIX + "病"]
    assert not any(token.startswith(BIGRAM_PREFIX) and len(token) != len(BIGRAM_PREFIX) + 2 for token in found)
    gensim = pytest.importorskip("gensim")
    other_tools = gensim.models.KeyedVectors.load_word2vec_format(str(vectors))  # plain word2vec text to others
    assert other_tools.vector_size == 50 and len(other_tools) == len(found)


def test_init_embeddings_starts_characters_bigrams_and_lexicon_words_from_the_file(trained, tmp_path):
    data, terms, vectors, _ = trained
    found = file_vectors(vectors)
    checked = []

    def check_start(trainer: Trainer) -> None:  # after set-up, before the first step
        encoder, lexicon = trainer.model.encoder, trainer.model.lexicon
        vocab = trainer.bundle.tokenizer.get_vocab()
        assert encoder.config.char_dim == 50  # the file's width
        for char in "糖尿病血压":
            assert torch.equal(encoder.chars.weight[vocab[char]], torch.tensor(found[char])), char
        keys = encoder.bigram_table.tolist()
        for pair in ("血压", "尿病"):
            row = keys.index(vocab[pair[0]] * encoder.config.vocab_size + vocab[pair[1]]) + 1
            assert torch.equal(encoder.bigrams.weight[row], torch.tensor(found[BIGRAM_PREFIX + pair])), pair
        word_ids = dict(zip(trainer.lexicon.terms, trainer.lexicon.words))
        for term in ("血压", "糖尿病", "病"):
            assert word_ids[term] > 0, term
            assert torch.equal(lexicon.words.weight[word_ids[term]], torch.tensor(found[WORD_PREFIX + term])), term
        checked.append(True)

    run = tmp_path / "run"
    config = TrainConfig(data=str(data), output=str(run), model="bilstm", bigram_dim=50, lexicon=[str(terms)],
                         init_embeddings=str(vectors), max_steps=2, num_threads=1, device="cpu")
    train(config, on_start=check_start)
    assert checked
    # the run, its table of joined bigrams and its lexicon's word ids, loads and tags like any other
    entities = Predictor.from_run(run, device="cpu").predict_text("患者有高血压，服用二甲双胍。")
    assert all("患者有高血压，服用二甲双胍。"[e.start:e.end] == e.text for e in entities)


def test_narrower_tables_take_the_principal_components(trained, tmp_path):
    data, terms, vectors, _ = trained
    chars = read_vectors(vectors).characters
    centred = chars.vectors - chars.vectors.mean(0)
    first = torch.linalg.svd(centred.double(), full_matrices=False)[2][0].float()
    checked = []

    def check_start(trainer: Trainer) -> None:
        encoder = trainer.model.encoder
        assert encoder.chars.weight.shape[1] == 8 and encoder.bigrams.weight.shape[1] == 4
        vocab = trainer.bundle.tokenizer.get_vocab()
        # column 0 is each character's coordinate on the first principal axis (up to its sign)
        expected = torch.stack([centred[chars.index[c]] @ first for c in "糖尿病血压"])
        got = torch.stack([encoder.chars.weight[vocab[c], 0] for c in "糖尿病血压"]).detach()
        assert torch.allclose(got.abs(), expected.abs(), atol=1e-4)
        checked.append(True)

    config = TrainConfig(data=str(data), output=str(tmp_path / "run"), model="bilstm", char_dim=8, bigram_dim=4,
                         lexicon=[str(terms)], init_embeddings=str(vectors), max_steps=1, num_threads=1, device="cpu")
    train(config, on_start=check_start)
    assert checked


def test_characters_seen_in_the_same_contexts_end_up_nearer(tmp_path):
    """A learning check: 甲 and 乙 only ever stand between the same neighbours, 丙 and 丁 between others."""
    rng = random.Random(0)
    raw = tmp_path / "raw"
    raw.mkdir()
    # Two documents: context never crosses from one text to another (it does cross line breaks).
    for name, subjects, verbs, middles, objects in (("a", "我你他", "吃喝", "甲乙", "饭汤"), ("b", "山水云", "看读", "丙丁", "书报")):
        lines = [rng.choice(subjects) + rng.choice(verbs) + rng.choice(middles) + rng.choice(objects) + "。" for _ in range(1500)]
        (raw / f"{name}.txt").write_text("\n".join(lines), encoding="utf-8")
    train_vectors([raw], tmp_path / "v.txt", settings=VectorSettings(dim=16, epochs=5, workers=1, seed=3))
    table = read_vectors(tmp_path / "v.txt").characters

    def cos(a: str, b: str) -> float:
        return torch.nn.functional.cosine_similarity(table[a], table[b], dim=0).item()

    assert cos("甲", "乙") > cos("甲", "丙") + 0.3 and cos("丙", "丁") > cos("乙", "丁") + 0.3
    # one worker and one seed: the same file again
    train_vectors([raw], tmp_path / "again.txt", settings=VectorSettings(dim=16, epochs=5, workers=1, seed=3))
    assert (tmp_path / "again.txt").read_bytes() == (tmp_path / "v.txt").read_bytes()


def test_a_plain_word2vec_file_still_gives_characters_and_words(tmp_path):
    plain = tmp_path / "plain.vec"
    plain.write_text("4 3\n糖 1 2 3\n尿 4 5 6\n糖尿病 7 8 9\nHbA1c 1 0 1\n", encoding="utf-8")
    vectors = read_vectors(plain)
    assert sorted(vectors.characters.index) == ["尿", "糖"] and vectors.characters["尿"].tolist() == [4, 5, 6]
    assert vectors.words["糖尿病"].tolist() == [7, 8, 9] and vectors.words["hba1c"].tolist() == [1, 0, 1]  # folded
    assert len(vectors.bigrams) == 0
    assert len(read_vectors(plain, words={"糖尿病"}).words) == 1  # only the terms asked for are kept


@pytest.mark.parametrize("case", ["blank", "latin1", "output-is-input", "data-folder", "exists", "bad-dim"])
def test_bad_input_is_one_line(tmp_path, case):
    raw = tmp_path / "raw.txt"
    raw.write_text("患者有糖尿病。\n", encoding="utf-8")
    out = tmp_path / "v.txt"
    args = [raw, "-o", out]
    expected = []
    if case == "blank":
        raw.write_text(" \n\n", encoding="utf-8")
        expected = ["no text found"]
    elif case == "latin1":
        raw.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
        expected = [str(raw), "not UTF-8"]
    elif case == "output-is-input":
        args = [raw, "-o", raw]
        expected = ["it is the input"]
    elif case == "data-folder":
        data = write_synthetic(tmp_path / "data", n_train=5, n_dev=2)
        args = [data, "-o", out]
        expected = ["preprocessed data folder", "train.jsonl"]
    elif case == "exists":
        out.write_text("mine\n", encoding="utf-8")
        expected = ["already exists", "--force"]
    elif case == "bad-dim":
        args += ["--dim", "0"]
        expected = ["--dim is 0"]
    before = raw.read_bytes()
    assert_one_line_error(invoke("embeddings", *args, *FAST), *expected)
    assert raw.read_bytes() == before
    assert not out.exists() or out.read_text(encoding="utf-8") == "mine\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_without_gensim_the_command_says_how_to_install_it(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("患者有糖尿病。\n", encoding="utf-8")
    block = "import sys; sys.modules['gensim'] = None; sys.argv[0] = 'bertner'; from bertner.cli import app; app()"
    result = run_cli("embeddings", str(raw), "-o", str(tmp_path / "v.txt"), code=block)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ['error: bertner embeddings needs gensim: pip install -e ".[embeddings]" '
                                                  '(or pip install "bertner[embeddings]")']
    assert not (tmp_path / "v.txt").exists()


@pytest.mark.parametrize("body,line,expected", [
    ("糖 1 2\n尿 1 x\n", 3, "not a word2vec text line"),
    ("糖 1 2\n尿 1 2 3\n", 3, "a vector of 3 numbers where the file's others have 2"),
    ("糖 1 2\n尿 nan 2\n", 3, "not finite"),
])
def test_a_damaged_vector_file_is_named_with_its_line(tmp_path, body, line, expected):
    from bertner.errors import DataError

    damaged = tmp_path / "damaged.vec"
    damaged.write_text("2 2\n" + body, encoding="utf-8")
    with pytest.raises(DataError, match=f"{damaged}:{line}: .*{expected}"):
        read_vectors(damaged)
