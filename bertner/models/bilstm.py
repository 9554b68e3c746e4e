"""`--model bilstm`: the pre-BERT encoder, character + bigram embeddings and a bidirectional LSTM.

This is the model every BERT NER paper's table starts with (Lample et al. 2016; for Chinese,
character + bigram inputs as in Zhang & Yang 2018). It trains from scratch in minutes on a CPU,
so it is both the study's "what does BERT add" row and the best model a laptop can train.

Inputs are the same `[CLS] c1 .. cn [SEP] [PAD]..` rows the transformers see (the char aligner
over a vocabulary of the training text), so heads, alignment, prediction and run directories
need nothing new. Each position's features are its character's vector and the vectors of the
bigrams it forms with its left and right neighbours. Bigram ids are looked up inside the model
from the character ids (a sorted table of known pairs, saved with the weights), so no
tokeniser has to know about them.

Speed on CPU: each direction is a separate one-way LSTM, the backward one run over each row
reversed within its length. Padding then only ever follows the real tokens, so neither direction
needs packed sequences, and PyTorch's oneDNN LSTM kernel (much faster on CPU than the packed
path) does all the work.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from bertner.errors import ModelError
from bertner.fileio import parse_json

MODEL_TYPE = "bertner-bilstm"
BIGRAM_MIN_COUNT = 2  # a bigram seen once in training is noise (Ruijin: 61k kept cover 95.5% of dev bigrams)


@dataclass
class RecurrentConfig:
    """The encoder's shape, saved as the run's `encoder/config.json`."""

    vocab_size: int
    bigram_count: int  # known bigrams; id 0 is "unknown bigram"
    char_dim: int = 128
    bigram_dim: int = 0  # 0: characters only
    hidden: int = 128  # per direction; the encoder's output is 2 x hidden
    layers: int = 1
    cell: str = "lstm"  # lstm | gru
    dropout: float = 0.2  # on the embeddings and between recurrent layers
    pad_id: int = 0
    max_positions: int = 512
    extra_dim: int = 0  # features joined to each character's input from outside (the lexicon's and softword's)
    model_type: str = MODEL_TYPE

    @property
    def hidden_size(self) -> int:
        return 2 * self.hidden

    def save(self, folder: Path) -> None:
        (folder / "config.json").write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "RecurrentConfig":
        file = folder / "config.json"
        try:
            values = parse_json(file.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            config = cls(**{k: v for k, v in values.items() if k in known})
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ModelError(f"{file}: not a bilstm encoder config ({exc})") from None
        problem = config.problem()
        if problem:
            raise ModelError(f"{file}: not a bilstm encoder config ({problem})")
        return config

    def problem(self) -> str | None:
        """What makes this config unbuildable (a size that is not a positive whole number, ...), or None."""
        def whole(value: Any, low: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= low

        sizes = {"vocab_size": 1, "bigram_count": 0, "char_dim": 1, "bigram_dim": 0, "hidden": 1, "layers": 1,
                 "pad_id": 0, "max_positions": 3, "extra_dim": 0}
        for name, low in sizes.items():
            if not whole(getattr(self, name), low):
                return f"{name} is {getattr(self, name)!r}, not a whole number of at least {low}"
        if self.pad_id >= self.vocab_size:
            return f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}"
        if self.cell not in ("lstm", "gru"):
            return f"cell is {self.cell!r}, not lstm or gru"
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            return f"dropout is {self.dropout!r}, not a number in [0, 1)"
        return None


@dataclass
class EncoderOutput:
    """What the recurrent encoder returns, shaped like a transformers encoder's output."""

    last_hidden_state: Tensor  # [B, T, 2 x hidden], the shape transformers encoders return


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first `length` positions; padding stays where it is. Its own inverse."""
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    lengths = lengths.unsqueeze(1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def bigram_keys(ids: Tensor, vocab_size: int) -> Tensor:
    """Key of each position's right bigram (its id and the next one's), as one int64."""
    following = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=0)
    return ids * vocab_size + following


class RecurrentEncoder(nn.Module):
    """`--model bilstm`: character (+ bigram) embeddings and a bidirectional LSTM or GRU, no transformer."""

    def __init__(self, config: RecurrentConfig):
        super().__init__()
        if config.cell not in ("lstm", "gru"):
            raise ModelError(f"unknown recurrent cell {config.cell!r}; use lstm or gru")
        self.config = config
        self.chars = nn.Embedding(config.vocab_size, config.char_dim, padding_idx=config.pad_id)
        # Sorted keys of the bigrams seen in training; a persistent buffer, so it travels with the weights.
        self.register_buffer("bigram_table", torch.zeros(config.bigram_count, dtype=torch.long))
        self.bigrams = nn.Embedding(config.bigram_count + 1, config.bigram_dim) if config.bigram_dim else None
        self.dropout = nn.Dropout(config.dropout)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        features = config.char_dim + 2 * config.bigram_dim + config.extra_dim
        self.forward_rnns = nn.ModuleList()
        self.backward_rnns = nn.ModuleList()
        for _ in range(config.layers):
            self.forward_rnns.append(cell(features, config.hidden, batch_first=True))
            self.backward_rnns.append(cell(features, config.hidden, batch_first=True))
            features = 2 * config.hidden

    def set_bigrams(self, keys: Iterable[int]) -> None:
        table = torch.tensor(sorted(keys), dtype=torch.long)
        if len(table) != self.config.bigram_count:
            raise ValueError("bigram table size differs from the config's bigram_count")
        self.bigram_table.copy_(table)

    def bigram_ids(self, ids: Tensor) -> Tensor:
        """Id of each position's right bigram in the table (1-based), 0 where the pair is unknown."""
        keys = bigram_keys(ids, self.config.vocab_size)
        table = self.bigram_table
        if len(table) == 0:
            return torch.zeros_like(ids)
        where = torch.searchsorted(table, keys).clamp(max=len(table) - 1)
        return torch.where(table[where] == keys, where + 1, torch.zeros_like(where))

    def embed(self, input_ids: Tensor) -> Tensor:
        chars = self.chars(input_ids)
        if self.bigrams is None:
            return chars
        right = self.bigrams(self.bigram_ids(input_ids))
        left = torch.nn.functional.pad(right[:, :-1], (0, 0, 1, 0))  # position i's left bigram is i-1's right one
        return torch.cat([chars, left, right], dim=-1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, extra: Tensor | None = None,
                **_: Any) -> EncoderOutput:
        """`extra`: `[B, T, extra_dim]` features joined to each position's embeddings (the lexicon's and softword's)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(1)
        x = self.embed(input_ids)
        if self.config.extra_dim:
            if extra is None or extra.shape[-1] != self.config.extra_dim:
                raise ValueError(f"this encoder takes {self.config.extra_dim} extra features per position")
            x = torch.cat([x, extra.to(x.dtype)], dim=-1)
        x = self.dropout(x)
        for index, (forward_rnn, backward_rnn) in enumerate(zip(self.forward_rnns, self.backward_rnns)):
            if index:
                x = self.dropout(x)
            ahead = forward_rnn(x)[0]
            behind = reverse_within_length(backward_rnn(reverse_within_length(x, lengths))[0], lengths)
            x = torch.cat([ahead, behind], dim=-1)
        return EncoderOutput(x)


# ---------------------------------------------------------------------------------------------
# building one for a training set


def count_bigrams(sequences: Iterable[list[int]], cls_id: int, sep_id: int, vocab_size: int,
                  min_count: int = BIGRAM_MIN_COUNT) -> list[int]:
    """Keys of the bigrams that occur at least `min_count` times in `[CLS] ids [SEP]` rows."""
    from collections import Counter

    counts: Counter[int] = Counter()
    for ids in sequences:
        row = [cls_id, *ids, sep_id]
        counts.update(a * vocab_size + b for a, b in zip(row, row[1:]))
    return [key for key, n in counts.items() if n >= min_count]


def copy_pretrained_rows(embedding: nn.Embedding, vocab: dict[str, int], pretrained_vocab: dict[str, int],
                         table: Tensor) -> int:
    """Copy the pretrained vector of every character both vocabularies share; return how many."""
    copied = 0
    with torch.no_grad():
        for char, index in vocab.items():
            source = pretrained_vocab.get(char)
            if source is None:
                source = pretrained_vocab.get(char.lower())
            if source is not None and index != embedding.padding_idx:
                embedding.weight[index] = table[source]
                copied += 1
    return copied
