"""Encoders: load any BERT-family model (local folder or hub name), or build our tiny one.

An `EncoderBundle` holds the transformers model, its fast tokenizer and the aligner that maps
characters to tokens. `save_encoder` / `encoder_from_folder` store and rebuild the architecture
and tokenizer of a run without weights (the trainer saves the whole tagger's weights itself).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlparse

import torch

from bertner.align import make_aligner
from bertner.embeddings import PretrainedVectors, VectorTable, narrowed, read_vectors
from bertner.errors import ModelError, one_line, shown
from bertner.fileio import parse_json
from bertner.models.bilstm import MODEL_TYPE as BILSTM_TYPE
from bertner.models.bilstm import (
    RecurrentConfig,
    RecurrentEncoder,
    copy_pretrained_rows,
    count_bigrams,
)
from bertner.models.charvocab import CHAR_SPECIALS, char_tokenizer, char_vocabulary

log = logging.getLogger(__name__)

ENCODER_META = "bertner_encoder.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Models whose position ids start after the padding index (usable positions = table - pad - 1).
OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl", "data2vec-text"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class EncoderBundle:
    """An encoder with everything needed to feed it: model, tokenizer, aligner, sizes."""

    model: Any  # transformers.PreTrainedModel (AutoModel: BERT, ALBERT, RoBERTa, ELECTRA, ...)
    tokenizer: Any  # a fast tokenizer
    aligner: Any  # bertner.align.CharAligner | SubwordAligner
    name: str  # what the user asked for: a folder, a hub name, or "tiny"
    hidden_size: int
    max_positions: int  # usable positions, [CLS] and [SEP] included


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Keep harmless transformers / hub warnings and progress bars off the user's screen."""
    import transformers

    tlog = transformers.utils.logging
    verbosity = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars:
            tlog.enable_progress_bar()
        hub_logger.setLevel(hub_level)


# ---------------------------------------------------------------------------------------------
# helpers


def _hidden_size(config: Any) -> int:
    for key in ("hidden_size", "dim", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ModelError(f"cannot tell the hidden size of a {type(config).__name__}")


def _max_positions(config: Any, tokenizer: Any) -> int:
    positions = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in OFFSET_POSITION_MODELS:
        positions -= (getattr(config, "pad_token_id", None) or 1) + 1
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        positions = min(positions, limit)
    return positions


def _read_vocab_txt(path: Path) -> dict[str, int]:
    with open(path, encoding="utf-8") as handle:
        return {line.rstrip("\n"): i for i, line in enumerate(handle)}


def load_tokenizer(folder: Path, trust_remote_code: bool = False) -> Any:
    """The folder's tokenizer as a fast one; a BERT tokenizer from vocab.txt when that is all there is."""
    from transformers import AutoTokenizer, BertTokenizerFast

    error: Exception | None = None
    tokenizer = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:  # any failure: fall back to vocab.txt below, else report it
        error = exc
    if tokenizer is not None and getattr(tokenizer, "is_fast", False):
        return tokenizer
    vocab_file = folder / "vocab.txt"
    if vocab_file.is_file():
        lower = True
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            with contextlib.suppress(ValueError, OSError):
                lower = bool(parse_json(config_file.read_text(encoding="utf-8")).get("do_lower_case", True))
        return BertTokenizerFast(vocab=_read_vocab_txt(vocab_file), do_lower_case=lower)
    why = f": {one_line(error)}" if error is not None else f" ({type(tokenizer).__name__} is not a fast tokenizer)"
    raise ModelError(f"{folder}: cannot load a fast tokenizer{why}")


def _pick_aligner(alignment: str, tokenizer: Any, whitespace_tokens: bool = True) -> Any:
    if alignment not in ("auto", "char", "subword"):
        raise ModelError(f"unknown alignment {alignment!r}; use auto, char or subword")
    return make_aligner(alignment, tokenizer, whitespace_tokens)


def _model_from_pretrained(folder: str, attn_implementation: str, trust_remote_code: bool, **kwargs: Any) -> Any:
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(
            folder, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code, **kwargs
        )
    except ValueError as exc:
        if attn_implementation == "eager" or "attention" not in str(exc).lower():
            raise
    return AutoModel.from_pretrained(folder, attn_implementation="eager", trust_remote_code=trust_remote_code, **kwargs)


def _model_from_config(config: Any, attn_implementation: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoModel

    try:
        return AutoModel.from_config(
            config, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
        )
    except ValueError as exc:
        if attn_implementation == "eager" or "attention" not in str(exc).lower():
            raise
    return AutoModel.from_config(config, attn_implementation="eager", trust_remote_code=trust_remote_code)


def _config_of(folder: str, trust_remote_code: bool, **kwargs: Any) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, **kwargs)


def _unknown_model_type(folder: Path, exc: Exception) -> ModelError:
    return ModelError(f"{folder}: transformers cannot build this model ({one_line(exc)})")


# ---------------------------------------------------------------------------------------------
# loading


def load_encoder(
    name_or_path: str,
    alignment: str = "auto",
    attn_implementation: str = "sdpa",
    from_config: bool = False,
    trust_remote_code: bool = False,
    whitespace_tokens: bool = True,
) -> EncoderBundle:
    """Load a pretrained encoder from a local Hugging Face folder or a hub name.

    `from_config=True` builds the folder's architecture with random weights (for a folder that
    holds a config and tokenizer but no weights). SDPA attention is used where the model class
    supports it, eager attention otherwise.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if not path.exists():
        if not _REPO_ID.match(name) or name.startswith((".", "~")):
            raise ModelError(f"{name}: no such model folder")
        path = _hub_folder(name, from_config)
    return _load_folder(path, name, alignment, attn_implementation, from_config, trust_remote_code, whitespace_tokens)


def _load_folder(
    path: Path, name: str, alignment: str, attn_implementation: str, from_config: bool, trust_remote_code: bool,
    whitespace_tokens: bool = True,
) -> EncoderBundle:
    if not path.is_dir():
        raise ModelError(f"{path} is not a model folder: it is a file; pass the folder that holds config.json")
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path} is not a model folder: no config.json in it "
            "(pass a folder saved by transformers, e.g. from huggingface-cli download, or --model tiny)"
        )
    has_weights = any((path / f).is_file() for f in WEIGHT_FILES)
    if not has_weights and not from_config:
        raise ModelError(
            f"{path} has a config.json but no weights (model.safetensors or pytorch_model.bin); "
            "download the full model, or build it untrained from its config on purpose"
        )
    with quiet_transformers():
        try:
            config = _config_of(str(path), trust_remote_code)
        except (ValueError, KeyError, RecursionError) as exc:  # RecursionError: a config.json nested too deep
            raise _unknown_model_type(path, exc) from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read config.json ({exc})".splitlines()[0]) from exc
        tokenizer = load_tokenizer(path, trust_remote_code)
        try:
            if has_weights and not from_config:
                model = _model_from_pretrained(str(path), attn_implementation, trust_remote_code)
            else:
                model = _model_from_config(config, attn_implementation, trust_remote_code)
        except (ValueError, KeyError) as exc:
            raise _unknown_model_type(path, exc) from exc
        except Exception as exc:  # a truncated file, pickled objects: each library raises its own type
            raise _weights_error(path, exc) from None
    return _bundle(model, tokenizer, alignment, name, whitespace_tokens)


def _weights_error(folder: Path, exc: Exception) -> ModelError:
    """A model folder's weights that cannot be loaded, in one line; pickled code is named, never run."""
    refused = re.search(r"GLOBAL (\S+)", str(exc))
    if isinstance(exc, pickle.UnpicklingError) or refused:
        what = f" ({refused.group(1)})" if refused else ""
        return ModelError(f"{folder}: its weights hold Python objects{what} that a model file never needs, and "
                          "loading them could run code; refused (use a folder with model.safetensors)")
    return ModelError(f"{folder}: cannot load the weights ({one_line(exc)})")


def _bundle(model: Any, tokenizer: Any, alignment: str, name: str, whitespace_tokens: bool = True) -> EncoderBundle:
    config = model.config
    return EncoderBundle(
        model=model,
        tokenizer=tokenizer,
        aligner=_pick_aligner(alignment, tokenizer, whitespace_tokens),
        name=name,
        hidden_size=_hidden_size(config),
        max_positions=_max_positions(config, tokenizer),
    )


def _offline_advice(name: str, reason: str) -> ModelError:
    local = "models/" + name.split("/")[-1]
    return ModelError(
        f"cannot download {name!r} from the Hugging Face hub ({reason}) and there is no such local folder; "
        f"download it where you are online (hf download {name} --local-dir {local}; "
        f"with an older huggingface_hub: huggingface-cli download {name} --local-dir {local}), "
        f"copy that folder here and pass --model {local}; or train without it: --model tiny"
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = lambda key: os.environ.get(key, "").strip().upper() in ("1", "ON", "YES", "TRUE")  # noqa: E731
    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or env("HF_HUB_OFFLINE") or env("TRANSFORMERS_OFFLINE")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick check before transformers retries for half a minute against an unreachable hub."""
    if any(os.environ.get(key) for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct connection says nothing; let the download try
    from huggingface_hub import constants

    url = urlparse(getattr(constants, "ENDPOINT", None) or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_folder(name: str, from_config: bool) -> Path:
    """The local folder of hub model `name`: from the cache, else downloaded; one clear line offline."""
    from huggingface_hub import snapshot_download

    patterns = ["config.json", "tokenizer*", "vocab*", "special_tokens_map.json", "*.model", "merges.txt"]
    weight_patterns = [] if from_config else ["model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]
    with quiet_transformers():
        folder: str | None = None
        with contextlib.suppress(Exception):  # already in the local cache?
            folder = snapshot_download(name, allow_patterns=patterns + weight_patterns, local_files_only=True)
            if not from_config and not any(Path(folder, f).is_file() for f in WEIGHT_FILES):
                folder = None
        if folder is None:
            if _hub_offline():
                raise _offline_advice(name, "offline mode is on: HF_HUB_OFFLINE")
            if not _hub_reachable():
                raise _offline_advice(name, "the hub cannot be reached")
            try:
                folder = snapshot_download(name, allow_patterns=patterns + weight_patterns)
                if not from_config and not any(Path(folder, f).is_file() for f in WEIGHT_FILES):
                    # an older repository with only pytorch_model.bin weights
                    folder = snapshot_download(name, allow_patterns=patterns + ["pytorch_model.bin*"])
            except Exception as exc:  # network, HTTP, missing repository: all mean the same to the user
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise _offline_advice(name, reason[:200]) from exc
    return Path(folder)


# ---------------------------------------------------------------------------------------------
# the tiny encoder


def build_tiny_encoder(
    texts: Iterable[str],
    layers: int = 2,
    hidden: int = 128,
    heads: int = 2,
    max_positions: int = 512,
    min_char_count: int = 1,
    attn_implementation: str = "sdpa",
    whitespace_tokens: bool = True,
) -> EncoderBundle:
    """A small randomly initialised BERT whose vocabulary is the characters of `texts`.

    No dropout on attention probabilities: with it, PyTorch's CPU attention falls back from the
    fused kernel to the unfused one (an 18% slower training step at 128 hidden, 248 tokens).
    """
    from transformers import BertConfig

    if hidden % heads:
        raise ModelError(f"the tiny encoder's hidden size {hidden} must be a multiple of its {heads} heads")
    vocab = char_vocabulary(texts, min_char_count)
    if len(vocab) == len(CHAR_SPECIALS):
        raise ModelError("cannot build a tiny encoder: the training texts have no characters")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_positions,
        pad_token_id=vocab["[PAD]"],
        attention_probs_dropout_prob=0.0,
    )
    with quiet_transformers():
        model = _model_from_config(config, attn_implementation)
    tokenizer = char_tokenizer(vocab, max_positions)
    return EncoderBundle(
        model=model,
        tokenizer=tokenizer,
        aligner=make_aligner("char", tokenizer, whitespace_tokens),
        name="tiny",
        hidden_size=hidden,
        max_positions=max_positions,
    )


# ---------------------------------------------------------------------------------------------
# the bilstm encoder (no transformer)


@dataclass
class RecurrentShape:
    """`--model bilstm` sizes, as the user gave them (None: the default, or the pretrained table's)."""

    char_dim: int | None = None  # None: RecurrentConfig's, or the pretrained table's width
    bigram_dim: int = RecurrentConfig.bigram_dim
    hidden: int = RecurrentConfig.hidden
    layers: int = RecurrentConfig.layers
    cell: str = RecurrentConfig.cell
    dropout: float = RecurrentConfig.dropout


JIEBA_LAC = "jieba-lac"  # the character table of Baidu LAC's small tagger, shipped inside jieba


def pretrained_embeddings(path: str, words: set[str] | None = None) -> PretrainedVectors:
    """Character vectors (and, from a word2vec file, bigram and word vectors): a model folder's input
    embeddings (ALBERT-tiny: 21k x 128), a word2vec text file (`bertner embeddings` writes one), or `jieba-lac`.

    `words`: the lexicon terms whose vectors to keep from a word2vec file (None: all).
    """
    if path == JIEBA_LAC:
        vocab, table = lac_embeddings()
    elif Path(path).expanduser().is_file():
        return read_vectors(Path(path).expanduser(), words)
    else:
        bundle = load_encoder(path, alignment="char")
        vocab, table = bundle.tokenizer.get_vocab(), bundle.model.get_input_embeddings().weight.detach().clone()
    return PretrainedVectors(path, VectorTable(vocab, table))


def lac_embeddings() -> tuple[dict[str, int], Any]:
    """Baidu LAC's character vectors inside jieba (`lac_small`: 20,941 x 128, trained to segment, tag and find names)."""
    import torch

    try:
        import jieba
    except ImportError:
        raise ModelError(f'--init-embeddings {JIEBA_LAC} needs the jieba package: pip install "bertner[zh]"') from None
    folder = Path(jieba.__file__).parent / "lac_small"
    vocab: dict[str, int] = {}
    for line in (folder / "word.dic").read_text(encoding="utf-8").splitlines():
        index, _, token = line.partition("\t")
        if len(token) == 1:
            vocab[token] = int(index)
    data = (folder / "model_baseline" / "word_emb").read_bytes()
    width = 128
    rows = len(data) // (4 * width)  # a short PaddlePaddle header, then float32 rows
    table = torch.frombuffer(bytearray(data[len(data) - rows * width * 4:]), dtype=torch.float32).view(rows, width)
    return vocab, table.clone()


def build_bilstm_encoder(
    texts: Iterable[str],
    shape: RecurrentShape = RecurrentShape(),
    pretrained: PretrainedVectors | None = None,
    whitespace_tokens: bool = True,
    max_positions: int = 512,
    extra_dim: int = 0,
) -> EncoderBundle:
    """A character + bigram BiLSTM over the characters of `texts`, optionally with pretrained vectors.

    `extra_dim`: features per character that the tagger joins to the embeddings (the lexicon's and softword's).

    With `pretrained` (`pretrained_embeddings`), the vocabulary also takes every character it has
    a vector for, and each character starts from its vector; with bigrams (`shape.bigram_dim`) the
    same holds for its bigrams. The character width is the vectors' unless `shape.char_dim` says
    otherwise (narrower: their principal components, `narrowed`).
    """
    texts = list(texts)
    chars = pretrained.characters if pretrained else None
    char_dim = shape.char_dim or (chars.vectors.shape[1] if chars else RecurrentConfig.char_dim)
    char_vectors = narrowed(chars.vectors, char_dim, "--char-dim") if chars else None
    vocab = char_vocabulary(texts, extra=sorted(chars.index, key=chars.index.__getitem__) if chars else ())
    if len(vocab) == len(CHAR_SPECIALS):
        raise ModelError("cannot build a bilstm encoder: the training texts have no characters")
    tokenizer = char_tokenizer(vocab, max_positions)
    aligner = make_aligner("char", tokenizer, whitespace_tokens)
    trained_keys = count_bigrams((aligner.encode(t).ids for t in texts), aligner.cls_id, aligner.sep_id, len(vocab))
    bigram_rows: dict[int, int] = {}  # bigram key -> row of the pretrained bigram table
    if pretrained is not None and len(pretrained.bigrams) and shape.bigram_dim:
        bigram_rows = pretrained_bigram_keys(pretrained.bigrams, aligner, len(vocab))
    elif pretrained is not None and len(pretrained.bigrams):
        log.info(f"{pretrained.source} holds {len(pretrained.bigrams):,} bigram vectors; the model has no bigrams "
                 "(--bigram-dim N gives it N-wide ones, started from them)")
    keys = sorted(set(trained_keys) | set(bigram_rows)) if shape.bigram_dim else []
    config = RecurrentConfig(
        vocab_size=len(vocab), bigram_count=len(keys),
        char_dim=char_dim, bigram_dim=shape.bigram_dim, hidden=shape.hidden, layers=shape.layers,
        cell=shape.cell, dropout=shape.dropout, pad_id=aligner.pad_id, max_positions=max_positions, extra_dim=extra_dim,
    )
    model = RecurrentEncoder(config)
    if shape.bigram_dim:
        model.set_bigrams(keys)
    if chars is not None:
        copied = copy_pretrained_rows(model.chars, vocab, chars.index, char_vectors)
        trained_chars = {c for text in texts for c in set(text) if not c.isspace()}
        found = sum(1 for c in trained_chars if c in chars.index or c.lower() in chars.index)
        note = (f"--init-embeddings {pretrained.source}: {found:,} of the {len(trained_chars):,} training characters "
                f"have a vector there ({copied:,} of the model's {len(vocab) - len(CHAR_SPECIALS):,} characters start from one)")
        if bigram_rows:
            bigram_vectors = narrowed(pretrained.bigrams.vectors, shape.bigram_dim, "--bigram-dim")
            with torch.no_grad():
                for position, key in enumerate(keys):
                    if key in bigram_rows:
                        model.bigrams.weight[position + 1] = bigram_vectors[bigram_rows[key]]
            trained = set(trained_keys)
            note += (f"; {len(trained & set(bigram_rows)):,} of the {len(trained):,} training bigrams have one, "
                     f"{len(set(bigram_rows) - trained):,} more bigrams join from it")
        log.info(note)
    return EncoderBundle(model, tokenizer, aligner, "bilstm", config.hidden_size, max_positions)


def pretrained_bigram_keys(bigrams: VectorTable, aligner: Any, vocab_size: int) -> dict[int, int]:
    """The model's key (`bigram_keys`) of each pretrained bigram whose two characters it knows -> its row."""
    rows: dict[int, int] = {}
    for pair, row in bigrams.index.items():
        first, second = aligner.token_id(pair[0]), aligner.token_id(pair[1])
        if aligner.unk_id not in (first, second) and aligner.space_id not in (first, second):
            rows.setdefault(first * vocab_size + second, row)
    return rows


# ---------------------------------------------------------------------------------------------
# run folders: architecture + tokenizer, no weights


def save_encoder(bundle: EncoderBundle, folder: str | os.PathLike[str]) -> Path:
    """Write the encoder's config, tokenizer files and `bertner_encoder.json` (no weights)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        if isinstance(bundle.model, RecurrentEncoder):
            bundle.model.config.save(folder)
        else:
            bundle.model.config.save_pretrained(str(folder))
        bundle.tokenizer.save_pretrained(str(folder))
    meta = {
        "format": 1,
        "family": BILSTM_TYPE if isinstance(bundle.model, RecurrentEncoder) else "transformers",
        "alignment": bundle.aligner.mode,
        "whitespace_tokens": bool(getattr(bundle.aligner, "whitespace_tokens", True)),
        "name": bundle.name,
        "max_positions": bundle.max_positions,
        "hidden_size": bundle.hidden_size,
        "vocab_size": len(bundle.tokenizer),  # checked when the run is loaded: a missing tokenizer file shows
    }
    (folder / ENCODER_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def encoder_from_folder(folder: str | os.PathLike[str], attn_implementation: str = "sdpa") -> EncoderBundle:
    """Rebuild a saved encoder's architecture (random weights) and tokenizer, offline.

    Never with code the folder brings (trust_remote_code stays off, whatever its config.json's
    auto_map says): a run can come from anyone.
    """
    folder = Path(folder)
    meta_file = folder / ENCODER_META
    if not (folder / "config.json").is_file() or not meta_file.is_file():
        raise ModelError(f"{folder} is not a saved encoder: config.json or {ENCODER_META} is missing")
    meta = _read_meta(meta_file)
    with quiet_transformers():
        if meta.get("family") == BILSTM_TYPE:
            model = RecurrentEncoder(RecurrentConfig.load(folder))
        else:
            try:
                config = _config_of(str(folder), False, local_files_only=True)
                model = _model_from_config(config, attn_implementation, False)
            except Exception as exc:  # an edited config.json (a size that is not a number) fails deep inside transformers
                if "trust_remote_code" in str(exc):  # never pass on transformers' advice to turn it on
                    raise ModelError(f"{folder}: its config.json needs Python code of its own (auto_map), "
                                     "and bertner never runs code from a run directory") from None
                raise _unknown_model_type(folder, exc) from None
        tokenizer = load_tokenizer(folder, False)
    check_vocabulary(folder, tokenizer, model, meta)
    alignment = meta.get("alignment", "auto")
    # Runs saved before the key existed gave whitespace a token in char alignment, as the default does.
    whitespace_tokens = meta.get("whitespace_tokens", True)
    bundle = _bundle(model, tokenizer, alignment, str(meta.get("name", folder)), whitespace_tokens)
    if "max_positions" in meta:
        bundle.max_positions = meta["max_positions"]
    return bundle


def _read_meta(meta_file: Path) -> dict[str, Any]:
    """bertner_encoder.json, with each field we use of its type."""
    try:
        meta = parse_json(meta_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ModelError(f"{meta_file}: unreadable ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_file}: corrupt (expected a JSON object, found {type(meta).__name__})")
    checks = {
        "alignment": lambda v: v in ("auto", "char", "subword"),
        "whitespace_tokens": lambda v: isinstance(v, bool),
        "max_positions": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 3,  # [CLS] x [SEP]
        "vocab_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "family": lambda v: isinstance(v, str),
    }
    for key, ok in checks.items():
        if key in meta and not ok(meta[key]):
            raise ModelError(f"{meta_file}: corrupt ({key} is {shown(meta[key])})")
    return meta


def embedding_rows(model: Any) -> int:
    """How many token ids the model's input embeddings hold."""
    if isinstance(model, RecurrentEncoder):
        return model.chars.num_embeddings
    return model.get_input_embeddings().num_embeddings


def check_vocabulary(folder: Path, tokenizer: Any, model: Any, meta: dict[str, Any]) -> None:
    """Refuse a saved encoder whose tokenizer is not the one it was trained with.

    Without its tokenizer files transformers falls back to a tokenizer of a few special tokens: every
    character becomes [UNK] and the run scores 0 without an error. The saved tokenizer size (runs
    since it was recorded) must match exactly; the embeddings must hold every id the tokenizer makes.
    Older runs: our own encoders (tiny, bilstm) have exactly one row per token; a pretrained model's
    table may be padded past its tokenizer (a few hundred rows), never to several times its size.
    """
    tokens, rows = len(tokenizer), embedding_rows(model)
    recorded = meta.get("vocab_size")
    own = meta.get("family") == BILSTM_TYPE or meta.get("name") == "tiny"
    if own:
        fits = tokens == rows and recorded in (None, tokens)
    elif recorded is not None:
        fits = tokens == recorded and tokens <= rows
    else:
        fits = 0.5 * rows <= tokens <= rows
    if not fits:
        if recorded is not None and tokens != recorded:
            why = f"the run was saved with {recorded}: a tokenizer file (tokenizer.json, vocab.txt) is missing or from another model"
        else:
            why = (f"the model's embeddings (vocab_size in config.json) hold {rows}: config.json or a tokenizer "
                   "file is not the run's own")
        raise ModelError(f"{folder}: its tokenizer has {tokens} tokens, but {why}; copy the run's encoder/ folder again")


__all__ = [
    "EncoderBundle",
    "RecurrentShape",
    "build_bilstm_encoder",
    "build_tiny_encoder",
    "encoder_from_folder",
    "load_encoder",
    "quiet_transformers",
    "save_encoder",
]
