"""SoftLexicon features (Ma et al., ACL 2020): the lexicon entries around each character, pooled to one vector.

Each character comes with the feature ids of the entries it Begins, is in the Middle of, Ends or is
as a Single-character term, and the set of each (`bertner/lexicon.py`). An entry is a word vector
(its own when training text matched it, else the shared "unseen word" vector 0) joined to its
type's vector; each of the four sets is the weighted mean of its entries (weights normalised over
the character's four sets together, as the paper does), and the four are concatenated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bertner.lexicon import SETS, Lexicon

TYPE_DIM = 16  # a handful of types (jieba: 5, a clinical list: ~5): a small vector each is enough


def lexicon_features_dim(word_dim: int) -> int:
    """Width of the pooled features per character: four sets of (word vector, type vector)."""
    return len(SETS) * (word_dim + TYPE_DIM)


class LexiconEmbedding(nn.Module):
    """`[B, T, K]` feature ids and sets -> `[B, T, 4 x (word_dim + TYPE_DIM)]`."""

    def __init__(self, lexicon: Lexicon, word_dim: int):
        super().__init__()
        words, types, weights = lexicon.tensors()
        self.words = nn.Embedding(lexicon.word_count, word_dim)
        self.types = nn.Embedding(max(1, len(lexicon.type_names)), TYPE_DIM)
        nn.init.normal_(self.words.weight, std=0.1)  # the scale of the bilstm's character vectors after init
        nn.init.normal_(self.types.weight, std=0.1)
        # From the run's lexicon file, not the weights file: the tables below are what is learned.
        self.register_buffer("entry_word", words, persistent=False)
        self.register_buffer("entry_type", types, persistent=False)
        self.register_buffer("entry_weight", weights, persistent=False)

    @property
    def out_dim(self) -> int:
        return lexicon_features_dim(self.words.embedding_dim)

    def forward(self, ids: Tensor, sets: Tensor) -> Tensor:
        ids = ids.long()
        weight = self.entry_weight[ids]  # padding (id 0) weighs 0
        weight = weight / weight.sum(-1, keepdim=True).clamp(min=1e-6)
        vectors = torch.cat([self.words(self.entry_word[ids]), self.types(self.entry_type[ids])], dim=-1)
        pick = nn.functional.one_hot(sets.long(), len(SETS)).to(vectors.dtype) * weight.unsqueeze(-1).to(vectors.dtype)
        pooled = torch.einsum("btkd,btks->btsd", vectors, pick)
        return pooled.flatten(2)
