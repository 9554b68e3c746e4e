"""`--softword`: a small learned vector per segmentation tag (B, M, E, S of jieba's words), one per character."""

from __future__ import annotations

from torch import Tensor, nn

from bertner.softword import TAGS

SOFTWORD_DIM = 16  # four tags: a small vector each is enough


class SoftwordEmbedding(nn.Module):
    """`[B, T]` tag ids + 1 (0: no character: [CLS], [SEP], padding) -> `[B, T, SOFTWORD_DIM]`."""

    def __init__(self):
        super().__init__()
        self.tags = nn.Embedding(len(TAGS) + 1, SOFTWORD_DIM, padding_idx=0)
        nn.init.normal_(self.tags.weight, std=0.1)  # the scale of the bilstm's character vectors after init
        self.tags.weight.data[0].zero_()  # padding_idx: stays zero and untrained

    @property
    def out_dim(self) -> int:
        return self.tags.embedding_dim

    def forward(self, tags: Tensor) -> Tensor:
        return self.tags(tags)
