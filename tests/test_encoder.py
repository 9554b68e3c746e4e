import json
import shutil
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import ALBERT_TINY, BERT_TOKENIZER, need  # noqa: E402

from bertner.align import CharAligner  # noqa: E402
from bertner.errors import ModelError  # noqa: E402
from bertner.models import encoder as encoder_module  # noqa: E402
from bertner.models.charvocab import char_vocabulary  # noqa: E402
from bertner.models.encoder import (  # noqa: E402
    ENCODER_META,
    EncoderBundle,
    build_tiny_encoder,
    encoder_from_folder,
    load_encoder,
    save_encoder,
)

TEXTS = ["患者空腹血糖7.8mmol/L", "HbA1c 升高，血糖控制差", "2型糖尿病\n血糖"]


def ids_for(bundle: EncoderBundle, text: str) -> "torch.Tensor":
    tokenized = bundle.aligner.encode(text)
    return torch.tensor([[bundle.aligner.cls_id, *tokenized.ids, bundle.aligner.sep_id]])


# --- the tiny encoder -----------------------------------------------------------------------


def test_char_vocabulary_order_and_contents():
    vocab = char_vocabulary(["bbA", "a糖糖血"])
    assert list(vocab)[:6] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[SPACE]"]
    # b and 糖 twice (b first by code point), then the singletons by code point; a from A and text
    assert list(vocab)[6:] == ["b", "糖", "A", "a", "血"]
    assert list(vocab.values()) == list(range(len(vocab)))
    assert char_vocabulary(["ab", "a b\n"], min_char_count=2) == {
        **{t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[SPACE]"])},
        "a": 6,
        "b": 7,
    }
    assert "Ｂ" not in char_vocabulary(["b"]) and "b" in char_vocabulary(["Ｂ"])  # NFKC+lower form kept


def test_tiny_encoder_builds_and_runs():
    bundle = build_tiny_encoder(TEXTS, layers=1, hidden=32, heads=2, max_positions=64)
    vocab = bundle.tokenizer.get_vocab()
    assert bundle.tokenizer.is_fast
    assert {"血", "糖", "H", "h", "L", "l", "7", "[SPACE]"} <= set(vocab)
    assert " " not in vocab and "\n" not in vocab
    assert bundle.aligner.mode == "char" and bundle.name == "tiny"
    assert (bundle.hidden_size, bundle.max_positions) == (32, 64)
    assert bundle.model.config.vocab_size == len(vocab)
    assert bundle.model.config.attention_probs_dropout_prob == 0.0  # keeps CPU attention on the fused kernel
    text = "血糖 HBA1C\n未见😀"
    ids = ids_for(bundle, text)
    assert ids.shape[1] == len(text) + 2  # one token per character
    assert ids[0, 3].item() == vocab["[SPACE]"] and ids[0, 1].item() == vocab["血"]
    assert ids[0, -2].item() == vocab["[UNK]"]  # 😀 was never seen
    assert ids[0, 5].item() == vocab["b"]  # B unseen, b seen in HbA1c
    skipping = build_tiny_encoder(TEXTS, layers=1, hidden=32, heads=2, max_positions=64, whitespace_tokens=False)
    skipped_ids = ids_for(skipping, text)
    assert skipped_ids.shape[1] == len(text) - 2 + 2 and skipped_ids[0, 3].item() == vocab["H"]
    with torch.no_grad():
        out = bundle.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    assert out.shape == (1, len(text) + 2, 32)
    with pytest.raises(ModelError):
        build_tiny_encoder(["   "])


def test_save_and_rebuild_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = build_tiny_encoder(TEXTS, layers=2, hidden=32, heads=4, max_positions=128)
    save_encoder(bundle, tmp_path / "encoder")
    assert not any(p.suffix in (".safetensors", ".bin") for p in (tmp_path / "encoder").iterdir())
    meta = json.loads((tmp_path / "encoder" / ENCODER_META).read_text())
    assert meta["alignment"] == "char" and meta["name"] == "tiny" and meta["max_positions"] == 128
    assert meta["whitespace_tokens"] is True

    again = encoder_from_folder(tmp_path / "encoder")
    assert again.tokenizer.get_vocab() == bundle.tokenizer.get_vocab()
    config = lambda b: {k: v for k, v in b.model.config.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert config(again) == config(bundle)
    assert (again.aligner.mode, again.name, again.max_positions, again.hidden_size) == ("char", "tiny", 128, 32)
    text = "HbA1c 升高，血糖\n控制差"
    ids = ids_for(bundle, text)
    assert ids.tolist() == ids_for(again, text).tolist()
    # the choice travels with the run; runs saved before it was recorded had whitespace tokens
    bundle.aligner = CharAligner.from_tokenizer(bundle.tokenizer, whitespace_tokens=False)
    save_encoder(bundle, tmp_path / "skipping")
    assert encoder_from_folder(tmp_path / "skipping").aligner.whitespace_tokens is False
    meta = json.loads((tmp_path / "skipping" / ENCODER_META).read_text())
    del meta["whitespace_tokens"]
    (tmp_path / "skipping" / ENCODER_META).write_text(json.dumps(meta))
    assert encoder_from_folder(tmp_path / "skipping").aligner.whitespace_tokens is True

    again.model.load_state_dict(bundle.model.state_dict())
    bundle.model.eval(), again.model.eval()
    with torch.no_grad():
        expected = bundle.model(input_ids=ids).last_hidden_state
        got = again.model(input_ids=ids).last_hidden_state
    assert torch.equal(expected, got)


def test_encoder_from_folder_needs_the_files(tmp_path):
    with pytest.raises(ModelError, match="not a saved encoder"):
        encoder_from_folder(tmp_path)


# --- pretrained encoders --------------------------------------------------------------------


def test_load_albert_tiny():
    bundle = load_encoder(str(need(ALBERT_TINY)))
    assert type(bundle.model).__name__ == "AlbertModel"
    assert bundle.hidden_size == 312 and bundle.max_positions == 512
    assert bundle.tokenizer.is_fast
    assert bundle.aligner.mode == "char"  # a Chinese vocabulary
    assert bundle.model.config._attn_implementation == "sdpa"
    text = "患者空腹血糖7.8 mmol/L"
    ids = ids_for(bundle, text)
    assert ids[0, 0].item() == bundle.tokenizer.cls_token_id
    assert bundle.aligner.encode("L").ids == bundle.tokenizer.convert_tokens_to_ids(["l"])
    bundle.model.eval()
    with torch.no_grad():
        out = bundle.model(input_ids=ids).last_hidden_state
    assert out.shape == (1, len(text) + 2, 312)
    assert torch.isfinite(out).all()

    subword = load_encoder(str(ALBERT_TINY), alignment="subword", attn_implementation="eager")
    assert subword.aligner.mode == "subword"
    assert subword.model.config._attn_implementation == "eager"
    assert len(subword.aligner.encode("mmol/L")) < len("mmol/L")


def test_pretrained_save_and_rebuild(tmp_path):
    bundle = load_encoder(str(need(ALBERT_TINY)))
    save_encoder(bundle, tmp_path)
    again = encoder_from_folder(tmp_path)
    assert type(again.model) is type(bundle.model)
    assert again.aligner.mode == "char" and again.hidden_size == 312
    text = "HbA1c 升高"
    assert ids_for(again, text).tolist() == ids_for(bundle, text).tolist()


def test_folder_without_config(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(ModelError, match="is not a model folder: no config.json"):
        load_encoder(str(tmp_path))
    with pytest.raises(ModelError, match="no such model folder"):
        load_encoder(str(tmp_path / "missing" / "x" / "y"))


def test_folder_without_weights(tmp_path):
    source = need(BERT_TOKENIZER)
    with pytest.raises(ModelError, match="no weights"):
        load_encoder(str(source))
    # a small config with the same tokenizer builds untrained when asked to
    folder = tmp_path / "small"
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    (folder / "config.json").write_text(json.dumps(config))
    bundle = load_encoder(str(folder), from_config=True)
    assert bundle.hidden_size == 32 and bundle.aligner.mode == "char"


@pytest.mark.parametrize("offline_env", [True, False])
def test_hub_name_offline_gives_advice(monkeypatch, offline_env):
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(encoder_module, "_hub_offline", lambda: False)
        monkeypatch.setattr(encoder_module, "_hub_reachable", lambda timeout=3.0: False)
    began = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        load_encoder("bert-base-chinese-not-cached-here")
    message = str(caught.value)
    assert "\n" not in message
    assert "download bert-base-chinese-not-cached-here --local-dir models/" in message
    assert "--model models/bert-base-chinese-not-cached-here" in message and "--model tiny" in message
    assert time.perf_counter() - began < 10


def test_hub_download_failure_is_one_clear_error(monkeypatch):
    """A network that looks reachable but fails mid-download still ends in the same advice."""
    monkeypatch.setattr(encoder_module, "_hub_offline", lambda: False)
    monkeypatch.setattr(encoder_module, "_hub_reachable", lambda timeout=3.0: True)

    def failing_download(*args, **kwargs):
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not cached")
        raise ConnectionError("connection reset by peer")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing_download)
    with pytest.raises(ModelError, match="connection reset by peer.*--model tiny"):
        load_encoder("org/some-model")
