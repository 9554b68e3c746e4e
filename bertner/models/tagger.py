"""The tagger: encoder, optional GRU, then a softmax or CRF head over the text's tokens.

Input layout per row: `[CLS] t1 .. tn [SEP] [PAD]...`. `label_mask` is true on t1..tn, so the
heads see exactly the text's tokens and nothing of the special or padding positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertner.config import TrainConfig
from bertner.models.bilstm import RecurrentEncoder
from bertner.models.crf import CRF, viterbi_decode
from bertner.models.lexicon import LexiconEmbedding
from bertner.models.softword import SoftwordEmbedding
from bertner.tags import allowed_transitions

IGNORE = -100


@dataclass
class HeadSpec:
    """The tagger's head: CRF or softmax, optional GRU, dropout, decoding, tag inventory."""

    num_tags: int
    crf: bool = False
    gru: bool = False
    gru_hidden: int | None = None
    gru_layers: int = 1
    gru_bidirectional: bool = False
    dropout: float = 0.1
    constrained: bool = False  # softmax only: decode the best well-formed tag sequence
    tags: tuple[str, ...] = ()  # the tag inventory, needed for `constrained`
    scheme: str = "BIO"


def head_spec(config: TrainConfig, tags: Sequence[str], scheme: str, constrained: bool | None = None) -> HeadSpec:
    """The head a config asks for, over this tag inventory: one rule for training and for loading a run.

    `constrained` overrides the config's `constrained_decoding` (a decoding choice, not a weight).
    """
    return HeadSpec(
        num_tags=len(tags), crf=config.crf, gru=config.gru, gru_hidden=config.gru_hidden,
        gru_layers=config.gru_layers, gru_bidirectional=config.gru_bidirectional, dropout=config.dropout,
        constrained=config.constrained_decoding if constrained is None else constrained,
        tags=tuple(tags), scheme=scheme,
    )


FORBIDDEN = -1e4  # a score no sequence of real log-probabilities can make up for


def constraint_scores(tags: tuple[str, ...], scheme: str) -> tuple[Tensor, Tensor, Tensor]:
    """Start, transition and end scores that forbid ill-formed tag sequences (0 or FORBIDDEN).

    Viterbi over a softmax head's log-probabilities with these finds the most probable
    well-formed sequence: no `I-X` after `O`, no entity that changes type midway.
    """
    start, follow, end = allowed_transitions(tags, scheme)
    score = lambda allowed: torch.tensor(allowed).logical_not().float() * FORBIDDEN  # noqa: E731
    return score(start), score(follow), score(end)


class Tagger(nn.Module):
    """Encoder, optional GRU, then a softmax or CRF head over the text's tokens (`emissions`, `loss`, `decode`)."""

    def __init__(self, encoder: nn.Module, hidden_size: int, spec: HeadSpec, lexicon: LexiconEmbedding | None = None,
                 softword: SoftwordEmbedding | None = None):
        """`lexicon`: SoftLexicon features; `softword`: segmentation tag vectors. Both are joined to the bilstm's
        input, or to a transformer's output."""
        super().__init__()
        self.spec = spec
        self.lexicon = lexicon
        self.softword = softword
        extra_dim = sum(m.out_dim for m in (lexicon, softword) if m is not None)
        # The bilstm reads them with its characters (its config says how many); a transformer's
        # pretrained input layer cannot take them, so they join its output before the head.
        self.extras_into_encoder = bool(extra_dim) and isinstance(encoder, RecurrentEncoder)
        if self.extras_into_encoder and encoder.config.extra_dim != extra_dim:
            raise ValueError(f"the bilstm takes {encoder.config.extra_dim} extra features, the lexicon and softword "
                             f"give {extra_dim}")
        if getattr(encoder, "pooler", None) is not None:
            # Tagging reads every token's hidden state; the [CLS] pooler would be dead weight
            # (computed, never trained, and an unused parameter that DDP refuses).
            encoder.pooler = None
        self.encoder = encoder
        features = hidden_size + (0 if self.extras_into_encoder else extra_dim)
        self.gru: nn.GRU | None = None
        if spec.gru:
            gru_hidden = spec.gru_hidden or hidden_size
            self.gru = nn.GRU(
                features,
                gru_hidden,
                num_layers=spec.gru_layers,
                batch_first=True,
                bidirectional=spec.gru_bidirectional,
            )
            features = gru_hidden * (2 if spec.gru_bidirectional else 1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(features, spec.num_tags)
        self.crf = None
        if spec.crf:
            self.crf = CRF(spec.num_tags)
        self.constraints: tuple[Tensor, Tensor, Tensor] | None = None
        if spec.constrained and not spec.crf:
            self.constraints = constraint_scores(spec.tags, spec.scheme)

    def emissions(self, input_ids: Tensor, attention_mask: Tensor, lexicon: tuple[Tensor, Tensor] | None = None,
                  softword: Tensor | None = None) -> Tensor:
        """Per-token tag scores for the text tokens, shifted left past [CLS]: `[B, T-1, K]`.

        `lexicon`, `softword`: the batch's lexicon slots and segmentation tags (`Batch.lexicon`, `Batch.softword`),
        each given exactly when the tagger has that part.
        """
        if (self.lexicon is None) != (lexicon is None) or (self.softword is None) != (softword is None):
            raise ValueError("lexicon and softword features must be given exactly when the tagger has them")
        extras = []
        if self.lexicon is not None:
            extras.append(self.lexicon(*lexicon, *input_ids.shape))
        if self.softword is not None:
            extras.append(self.softword(softword))
        extra = (extras[0] if len(extras) == 1 else torch.cat([e.float() for e in extras], dim=-1)) if extras else None
        if self.extras_into_encoder:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, extra=extra).last_hidden_state
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if extra is not None:
                hidden = torch.cat([hidden, extra.to(hidden.dtype)], dim=-1)
        hidden = hidden[:, 1:]
        if self.gru is not None:
            hidden = self._run_gru(hidden, attention_mask[:, 1:])
        return self.classifier(self.dropout(hidden)).float()

    def _run_gru(self, hidden: Tensor, mask: Tensor) -> Tensor:
        if not self.gru.bidirectional:
            # A forward GRU never looks right, so trailing padding cannot change real outputs;
            # skipping packing saves a host sync and a copy.
            return self.gru(hidden)[0]
        lengths = mask.sum(1).cpu()
        packed = pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=hidden.shape[1])[0]

    def forward(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor,
                lexicon: tuple[Tensor, Tensor] | None = None, softword: Tensor | None = None) -> Tensor:
        """The training loss; a `forward` so that DistributedDataParallel can wrap the tagger."""
        return self.loss(self.emissions(input_ids, attention_mask, lexicon, softword), labels)

    def loss(self, emissions: Tensor, labels: Tensor) -> Tensor:
        """Mean loss per text token. `labels` is `[B, T]` with IGNORE on special and pad positions."""
        labels = labels[:, 1:]
        mask = labels != IGNORE
        if self.crf is None:
            return nn.functional.cross_entropy(
                emissions.reshape(-1, emissions.shape[-1]), labels.reshape(-1), ignore_index=IGNORE
            )
        tags = labels.masked_fill(~mask, 0)
        # Sum of sentence NLLs divided by tokens, so the scale matches softmax and does not
        # depend on how long the batch's sentences are.
        nll = -self.crf.log_likelihood(emissions, tags, mask, reduction="sum")
        return nll / mask.sum().clamp(min=1)

    def marginals(self, emissions: Tensor, label_mask: Tensor) -> Tensor:
        """Each text token's tag probabilities, `[B, T-1, K]` aligned with `decode`'s output; 0 past each row's end.

        A CRF's are its marginals p(tag at t | text), the gradient of log Z in the emissions (forward-backward);
        a softmax head's, its softmax. Ensembles average them (`bertner.ensemble`).
        """
        mask = label_mask[:, 1:]
        if self.crf is None:
            return emissions.float().softmax(-1) * mask[..., None]
        with torch.enable_grad(), torch.autocast(emissions.device.type, enabled=False):
            scores = emissions.detach().to(self.crf._compute_dtype(emissions)).requires_grad_()
            log_z = self.crf._log_partition(scores, mask.bool())
            (marginals,) = torch.autograd.grad(log_z.sum(), scores)
        return marginals.float()

    def decode(self, emissions: Tensor, label_mask: Tensor) -> Tensor:
        """Best tag id per text token, `[B, T-1]` aligned with `label_mask[:, 1:]`; 0 elsewhere."""
        mask = label_mask[:, 1:]
        if self.crf is not None:
            return self.crf.viterbi(emissions, mask)
        if self.constraints is not None:
            start, transitions, end = (t.to(emissions.device) for t in self.constraints)
            return viterbi_decode(emissions.log_softmax(-1), mask, start, transitions, end)
        return emissions.argmax(-1).masked_fill(~mask, 0)
