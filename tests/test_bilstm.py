"""`--model bilstm`: the encoder's pieces, learning the synthetic task, and a run that predicts exactly."""

import json

import pytest
import torch
from conftest import ALBERT_TINY, need
from synthetic import write_synthetic
from typer.testing import CliRunner

from bertner.cli import app
from bertner.config import TrainConfig
from bertner.engine.device import training_threads
from bertner.engine.trainer import Trainer, train
from bertner.errors import BertnerError, ModelError
from bertner.models.bilstm import (
    RecurrentConfig,
    RecurrentEncoder,
    count_bigrams,
    reverse_within_length,
)
from bertner.models.encoder import (
    RecurrentShape,
    build_bilstm_encoder,
    encoder_from_folder,
    save_encoder,
)
from bertner.runs import load_run

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


def bilstm_config(data_dir, output, **overrides):
    values = dict(
        data=str(data_dir), output=str(output), model="bilstm", epochs=6, batch_size=16, warmup_ratio=0.05,
        rnn_hidden=48, char_dim=32, bigram_dim=16, log_every=5, seed=1, num_threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_reverse_within_length_keeps_padding_in_place_and_undoes_itself():
    x = torch.arange(2 * 5).view(2, 5, 1).float()
    lengths = torch.tensor([5, 3])
    flipped = reverse_within_length(x, lengths)
    assert flipped[0, :, 0].tolist() == [4, 3, 2, 1, 0]
    assert flipped[1, :, 0].tolist() == [7, 6, 5, 8, 9]  # the two padding positions stay at the end
    assert torch.equal(reverse_within_length(flipped, lengths), x)


def test_backward_direction_ignores_padding():
    """A row's outputs are the same alone and padded inside a batch: neither direction reads padding."""
    torch.manual_seed(0)
    config = RecurrentConfig(vocab_size=20, bigram_count=3, char_dim=8, bigram_dim=4, hidden=6, dropout=0.0)
    encoder = RecurrentEncoder(config).eval()
    encoder.set_bigrams([2 * 20 + 3, 3 * 20 + 4, 5 * 20 + 6])
    short = torch.tensor([[2, 3, 4, 5]])
    batch = torch.tensor([[2, 3, 4, 5, 0, 0], [7, 8, 9, 10, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    alone = encoder(short, torch.ones_like(short)).last_hidden_state
    together = encoder(batch, mask).last_hidden_state
    assert torch.allclose(alone[0], together[0, :4], atol=1e-6)


def test_bigram_ids_find_known_pairs_and_zero_the_rest():
    config = RecurrentConfig(vocab_size=10, bigram_count=2, char_dim=4, bigram_dim=2, hidden=2)
    encoder = RecurrentEncoder(config)
    encoder.set_bigrams(count_bigrams([[4, 5], [4, 5, 6]], cls_id=2, sep_id=3, vocab_size=10, min_count=2))
    # [CLS] 4 and 4 5 occur twice; 5 [SEP], 5 6 and 6 [SEP] once
    ids = encoder.bigram_ids(torch.tensor([[2, 4, 5, 6, 3]]))
    assert ids[0, 0] > 0 and ids[0, 1] > 0 and ids[0, 1] != ids[0, 0]
    assert ids[0, 2:].tolist() == [0, 0, 0]


@pytest.mark.parametrize("crf", [False, True])
def test_bilstm_learns_the_synthetic_task(data_dir, tmp_path, crf):
    summary = train(bilstm_config(data_dir, tmp_path / "run", crf=crf))
    assert summary.best_f1 > 0.9, summary
    assert summary.variant == ("bilstm+crf" if crf else "bilstm+softmax")
    assert summary.encoder == "bilstm"


def test_bilstm_run_round_trips_through_predict_with_exact_offsets(data_dir, tmp_path):
    run = tmp_path / "run"
    train(bilstm_config(data_dir, run, crf=True, rnn_cell="gru", gru=True, gru_hidden=16))
    loaded = load_run(run)
    assert loaded.model.encoder.config.cell == "gru" and loaded.model.gru is not None
    text = "第一行：患者有糖尿病，\r\n第二行口服二甲双胍😀和阿司匹林。\u200b血压 正常。"
    source = tmp_path / "note.txt"
    source.write_bytes(text.encode("utf-8"))
    result = runner.invoke(app, ["predict", str(run), str(source), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    entities = json.loads(result.stdout)["entities"]
    assert {"二甲双胍", "阿司匹林"} <= {e["text"] for e in entities}
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"]


def test_saved_encoder_rebuilds_the_same_shape_and_bigram_table(tmp_path):
    bundle = build_bilstm_encoder(["糖尿病糖尿病", "血糖血糖"], RecurrentShape(char_dim=8, bigram_dim=4, hidden=5))
    save_encoder(bundle, tmp_path / "encoder")
    again = encoder_from_folder(tmp_path / "encoder")
    assert again.model.config == bundle.model.config and again.hidden_size == 10
    assert again.model.bigram_table.shape == bundle.model.bigram_table.shape
    assert again.aligner.encode("糖尿病").ids == bundle.aligner.encode("糖尿病").ids


def test_init_embeddings_copies_the_rows_of_shared_characters():
    folder = need(ALBERT_TINY)
    from bertner.models.encoder import pretrained_embeddings

    pretrained = pretrained_embeddings(str(folder))
    pretrained_vocab, table = pretrained.characters.index, pretrained.characters.vectors
    bundle = build_bilstm_encoder(["患者有2型糖尿病", "口服二甲双胍"], RecurrentShape(bigram_dim=4, hidden=4), pretrained)
    vocab = bundle.tokenizer.get_vocab()
    weights = bundle.model.chars.weight
    assert weights.shape[1] == table.shape[1]  # the char width follows the pretrained table
    for char in "糖尿病二甲双胍":
        assert torch.equal(weights[vocab[char]], table[pretrained_vocab[char]]), char
    # characters never seen in training still get their pretrained vector: the vocabulary grew
    assert "鲨" in vocab and torch.equal(weights[vocab["鲨"]], table[pretrained_vocab["鲨"]])
    # a narrower table takes the vectors' principal components; a wider one is refused
    narrow = build_bilstm_encoder(["糖"], RecurrentShape(char_dim=64), pretrained)
    assert narrow.model.chars.weight.shape[1] == 64
    with pytest.raises(BertnerError, match="--char-dim is 256 wide, wider than the 128-wide vectors"):
        build_bilstm_encoder(["糖"], RecurrentShape(char_dim=256), pretrained)


def test_bilstm_options_are_checked():
    with pytest.raises(BertnerError, match="--rnn-cell"):
        TrainConfig(model="bilstm", rnn_cell="rnn").validate()
    with pytest.raises(BertnerError, match="--init-embeddings is for --model bilstm"):
        TrainConfig(model="tiny", init_embeddings="x").validate()


def test_train_settings_default_to_the_encoders_own_sizes():
    """`bertner train` (TrainConfig) and the library (RecurrentConfig) must build the same default bilstm."""
    defaults = TrainConfig()
    model = RecurrentConfig(vocab_size=1, bigram_count=0)
    assert (defaults.rnn_hidden, defaults.rnn_layers, defaults.rnn_cell, defaults.rnn_dropout, defaults.bigram_dim) == (
        model.hidden, model.layers, model.cell, model.dropout, model.bigram_dim)
    assert defaults.char_dim is None and RecurrentShape().hidden == model.hidden


def test_small_models_train_on_one_cpu_thread_unless_told_otherwise(data_dir, tmp_path, monkeypatch):
    # Two threads trained the bilstm 5x slower than one on 2 cores (bench/cpu_threads.py).
    cpu = torch.device("cpu")
    assert [training_threads(0, model, cpu) for model in ("bilstm", "tiny", str(ALBERT_TINY))] == [1, 1, 0]
    assert training_threads(3, "bilstm", cpu) == 3  # --num-threads wins
    assert training_threads(0, "bilstm", torch.device("cuda")) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a share of the cores (sweep workers get one) is not a reason for more
    assert training_threads(0, "bilstm", cpu) == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        trainer = Trainer(bilstm_config(data_dir, tmp_path / "run", num_threads=0, max_steps=1, device="cpu"))
        trainer.setup()
        assert torch.get_num_threads() == 1
        trainer.close()
        assert torch.get_num_threads() == 2  # the caller's process goes on with its own
    finally:
        torch.set_num_threads(before)
