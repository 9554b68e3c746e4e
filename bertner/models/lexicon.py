"""SoftLexicon features (Ma et al., ACL 2020): the lexicon entries around each character, pooled to one vector.

Each character comes with the feature ids of the entries it Begins, is in the Middle of, Ends or is
as a Single-character term, and the set of each (`bertner/lexicon.py`). An entry is a word vector
(its own when training text matched it often, else the shared "rare or unseen" vector 0) joined to
its type's vector; each of the four sets is the weighted mean of its entries (weights normalised
over the character's four sets together, as the paper does), and the four are concatenated, then
projected to `out_dim` features.

Why the projection: the four pooled sets are 264 numbers wide, and a bilstm's cost grows with its
input width (measured on one CPU thread: 14.5 ms per step at 128 inputs, 32.8 ms with 264 more,
20.5 ms with 64 more). Why flat slots: characters hold from none to MAX_SLOTS entries, so a batch
is a flat list of (bag, entry) pairs, a bag being one set of one character: one gather of the
vectors, one weighted scatter-add into the bags (`index_add`), no padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bertner.embeddings import VectorTable, narrowed
from bertner.lexicon import SETS, Lexicon

WORD_DIM = 50  # SoftLexicon's word vectors
TYPE_DIM = 16  # a handful of types (jieba: 5, a clinical list: ~5): a small vector each is enough


class LexiconEmbedding(nn.Module):
    """A batch's lexicon slots (`Batch.lexicon`: bag and feature id of each) -> `[B, T, out_dim]`."""

    def __init__(self, lexicon: Lexicon, out_dim: int):
        super().__init__()
        words, types, weights = lexicon.tensors()
        self.words = nn.Embedding(lexicon.word_count, WORD_DIM)
        self.types = nn.Embedding(max(1, len(lexicon.type_names)), TYPE_DIM)
        self.project = nn.Linear(len(SETS) * (WORD_DIM + TYPE_DIM), out_dim)
        nn.init.normal_(self.words.weight, std=0.1)  # the scale of the bilstm's character vectors after init
        nn.init.normal_(self.types.weight, std=0.1)
        # From the run's lexicon file, not the weights file: the tables below are what is learned.
        self.register_buffer("entry_word", words, persistent=False)
        self.register_buffer("entry_type", types, persistent=False)
        self.register_buffer("entry_weight", weights, persistent=False)

    def init_words(self, lexicon: Lexicon, vectors: VectorTable) -> int:
        """Start each word vector whose term `vectors` has from it (narrowed to WORD_DIM); how many did.

        Vectors narrower than WORD_DIM start none (a table is never widened)."""
        if not len(vectors) or vectors.vectors.shape[1] < WORD_DIM:
            return 0
        table = narrowed(vectors.vectors, WORD_DIM, "the lexicon's word vector width")
        copied: set[int] = set()
        with torch.no_grad():
            for term, word in zip(lexicon.terms, lexicon.words or ()):
                if word and word not in copied and term in vectors:
                    self.words.weight[word] = table[vectors.index[term]]
                    copied.add(word)
        return len(copied)

    @property
    def out_dim(self) -> int:
        return self.project.out_features

    def forward(self, bags: Tensor, entries: Tensor, rows: int, steps: int) -> Tensor:
        """`bags`: each slot's position in the flattened `[rows, steps]` times len(SETS), plus its set."""
        token = bags // len(SETS)  # the character each slot belongs to
        weight = self.entry_weight[entries]
        total = torch.zeros(rows * steps, device=bags.device).index_add_(0, token, weight)
        weight = weight / total[token].clamp(min=1e-6)  # over the character's four sets together
        vectors = torch.cat([self.words(self.entry_word[entries]), self.types(self.entry_type[entries])], dim=-1)
        pooled = torch.zeros(rows * steps * len(SETS), vectors.shape[1], device=bags.device, dtype=vectors.dtype)
        pooled.index_add_(0, bags, vectors * weight.unsqueeze(1).to(vectors.dtype))
        return self.project(pooled.view(rows, steps, -1))
