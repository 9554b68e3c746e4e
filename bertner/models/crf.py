"""A linear-chain CRF whose Viterbi decode stays on the device.

pytorch-crf's `CRF.decode` back-traces each sentence in Python with one `.item()` (a host sync)
per token; `CRF.viterbi` below does the same recursion but back-traces the whole batch with
`torch.gather`, so the only loop is over time steps and nothing leaves the device.
Parameters are pytorch-crf's (checkpoints stay interchangeable) and `log_likelihood` equals its
`forward`, with the gold-path score vectorised over time.
"""

from __future__ import annotations

import torch
import torchcrf
from torch import Tensor

REDUCTIONS = ("none", "sum", "mean", "token_mean")


class CRF(torchcrf.CRF):
    """`torchcrf.CRF` fixed to `batch_first=True`, plus a batched on-device `viterbi`.

    Masks must be left-aligned (a prefix of True per row, first position always True), as
    pytorch-crf requires; this is not checked here because checking would sync the host.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__(num_tags, batch_first=True)

    def _compute_dtype(self, emissions: Tensor) -> torch.dtype:
        # Same promotion as pytorch-crf (float64 stays float64, so paths match it exactly),
        # but never below float32: half-precision sums over many steps drift and tie.
        dtype = torch.promote_types(emissions.dtype, self.transitions.dtype)
        return torch.promote_types(dtype, torch.float32)

    def _check(self, emissions: Tensor, mask: Tensor, tags: Tensor | None = None) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions must be (batch, time, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape)}")
        if tags is not None and tags.shape != emissions.shape[:2]:
            raise ValueError(f"tags {tuple(tags.shape)} do not match emissions {tuple(emissions.shape)}")

    def viterbi(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Best tag ids `(B, T)` for emissions `(B, T, K)`; positions past each length are 0."""
        self._check(emissions, mask)
        dtype = self._compute_dtype(emissions)
        return viterbi_decode(emissions.to(dtype), mask, self.start_transitions, self.transitions, self.end_transitions)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor, reduction: str = "sum") -> Tensor:
        """log p(tags | emissions), as pytorch-crf's `forward`, in float32 (or float64) even under autocast.

        The gold-path score is computed without a time loop (pytorch-crf loops and indexes per
        step, which dominates its backward pass); the normaliser is pytorch-crf's recursion.
        """
        self._check(emissions, mask, tags)
        if reduction not in REDUCTIONS:
            raise ValueError(f"invalid reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
        if emissions.size(1) == 0:
            raise ValueError("cannot score empty sequences")
        with torch.autocast(emissions.device.type, enabled=False):
            emissions = emissions.to(self._compute_dtype(emissions))
            mask = mask.bool()
            tags = tags.long().masked_fill(~mask, 0)  # padding labels (e.g. -100) are never scored
            llh = self._path_score(emissions, tags, mask) - self._log_partition(emissions, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum()

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score of the given tag paths, (B,)."""
        dtype = emissions.dtype
        keep = mask.to(dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * keep
        moves = self.transitions.to(dtype)[tags[:, :-1], tags[:, 1:]] * keep[:, 1:]
        last = (mask.long().sum(dim=1) - 1).clamp_min(0)
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)
        return (self.start_transitions.to(dtype)[tags[:, 0]] + emitted.sum(dim=1) + moves.sum(dim=1)
                + self.end_transitions.to(dtype)[last_tags])

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z by the forward algorithm, (B,); same recursion as pytorch-crf, batch-first."""
        dtype = emissions.dtype
        trans = self.transitions.to(dtype)
        score = self.start_transitions.to(dtype) + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            nxt = torch.logsumexp(score.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            score = torch.where(mask[:, t].unsqueeze(1), nxt, score)
        return torch.logsumexp(score + self.end_transitions.to(dtype), dim=1)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood: the training loss."""
        return -self.log_likelihood(emissions, tags, mask, reduction)


def viterbi_decode(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
    """Batched Viterbi on the device: best tag ids `(B, T)`, 0 past each row's length.

    The only loop is over time steps; the back-trace is a `gather` per step, so nothing waits
    for the host. Masks must be left-aligned with the first position on, as in pytorch-crf.
    """
    batch, steps, _ = emissions.shape
    out = torch.zeros(batch, steps, dtype=torch.long, device=emissions.device)
    if steps == 0:
        return out
    mask = mask.bool()
    with torch.autocast(emissions.device.type, enabled=False):
        dtype = emissions.dtype
        em = emissions
        trans = transitions.to(dtype)
        # Same additions in the same order as pytorch-crf, so ties break identically.
        score = start.to(dtype) + em[:, 0]
        history = []  # history[t]: best previous tag at t for each tag at t + 1, (B, K)
        for t in range(1, steps):
            best, idx = (score.unsqueeze(2) + trans + em[:, t].unsqueeze(1)).max(dim=1)
            score = torch.where(mask[:, t].unsqueeze(1), best, score)
            history.append(idx)
        score = score + end.to(dtype)

        last = mask.long().sum(dim=1) - 1  # (B,) index of each row's last real position
        best_last = score.argmax(dim=1)  # first maximum on ties, like pytorch-crf's max()
        cur = best_last
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                # Rows still inside their sequence follow the back-pointer; a row whose
                # last position is t starts its trace here.
                back = history[t].gather(1, cur.unsqueeze(1)).squeeze(1)
                cur = torch.where(last > t, back, best_last)
            out[:, t] = torch.where(last >= t, cur, 0)
    return out
