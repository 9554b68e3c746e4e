"""A linear-chain CRF whose Viterbi decode stays on the device.

pytorch-crf's `CRF.decode` back-traces each sentence in Python with one `.item()` (a host sync)
per token; `CRF.viterbi` below does the same recursion but back-traces the whole batch with
`torch.gather`, so the only loop is over time steps and nothing leaves the device.
Parameters are pytorch-crf's (checkpoints stay interchangeable) and `log_likelihood` equals its
`forward`, with the gold-path score vectorised over time and the normaliser's gradient written
by hand (`LogPartition`): the forward-backward algorithm, stepping with a `(B,K) @ (K,K)` matmul
in probability space instead of a `(B,K,K)` logsumexp, and no autograd graph over the time loop.
On a GPU that loop is bound by kernel launches (~20 per step, forward and backward), so there the
normaliser is `tree_log_partition`: the same sum as log2(T) levels of batched `(K,K)` products.
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
        """log Z per row, (B,), differentiable in the emissions and all three transition tensors."""
        dtype = emissions.dtype
        args = (emissions, mask, self.start_transitions.to(dtype), self.transitions.to(dtype),
                self.end_transitions.to(dtype))
        batch, steps, k = emissions.shape
        if emissions.is_cuda and batch * steps * k * k <= TREE_MAX_ELEMENTS:
            return tree_log_partition(*args)
        return LogPartition.apply(*args)

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood: the training loss."""
        return -self.log_likelihood(emissions, tags, mask, reduction)


# The tree's peak memory is ~32 bytes per element of its (B, T, K, K) chain (measured on an H200:
# 977 MiB at batch 128 x 256 x 31 tags); past this many elements (~4 GiB) the time loop, whose
# memory is (B, T, K), is used even on a GPU.
TREE_MAX_ELEMENTS = 2**27


def tree_log_partition(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
    """log Z per row, (B,), as a balanced tree of log-space `(K,K)` matrix products; autograd gives the gradient.

    Step t >= 1 is the matrix M_t[i, j] = transitions[i, j] + emissions[t, j]; a padding step is the
    identity (0 on the diagonal, -inf elsewhere), so rows of every length share one tree. Pairs of
    neighbours are multiplied level by level: log2(T) rounds of batched matmuls instead of T steps.
    That is K times the arithmetic of the time loop and (B, T, K, K) memory: it pays where kernel
    launches, not arithmetic, are the cost (GPUs). In float64, as `LogPartition`; masks left-aligned.
    """
    dtype = emissions.dtype
    em, start, transitions, end = (x.double() for x in (emissions, start, transitions, end))
    batch, steps, k = em.shape
    identity = torch.full((k, k), float("-inf"), dtype=em.dtype, device=em.device).fill_diagonal_(0.0)
    chain = torch.where(mask[:, 1:, None, None], transitions + em[:, 1:, None, :], identity)  # (B, T-1, K, K)
    if steps == 1:
        chain = identity.expand(batch, 1, k, k)
    while chain.size(1) > 1:
        if chain.size(1) % 2:
            chain = torch.cat([chain, identity.expand(batch, 1, k, k)], dim=1)
        chain = _log_bmm(chain[:, 0::2], chain[:, 1::2])
    scores = (start + em[:, 0])[:, :, None] + chain[:, 0] + end  # (B, K first, K last)
    return torch.logsumexp(scores.flatten(1), dim=1).to(dtype)


def _log_bmm(a: Tensor, b: Tensor) -> Tensor:
    """log(exp(a) @ exp(b)) over the last two dimensions, shifted by row and column maxima as `_log_matmul`.

    The shifts are constants to autograd (the result does not depend on them), so the gradient is
    exactly the matmul's. No row of a or column of b is all -inf: every chain matrix has a finite
    entry in each row and column, and products are floored at the smallest normal number.
    """
    a_top = a.amax(dim=-1, keepdim=True).detach()
    b_top = b.amax(dim=-2, keepdim=True).detach()
    product = (a - a_top).exp() @ (b - b_top).exp()
    return product.clamp_min(torch.finfo(a.dtype).tiny).log() + a_top + b_top


def _log_matmul(log_x: Tensor, exp_shifted: Tensor, shift: Tensor) -> Tensor:
    """log(exp(log_x) @ exp(M)) for rows `log_x` (B,K), given exp(M - shift) and the per-column shift.

    Each row is shifted by its maximum before exp, so the largest term is exactly 1 and nothing
    overflows; a column whose every term underflows is floored at the smallest normal number
    instead of log(0) = -inf (in float64 that takes transition spreads of ~700 nats).
    """
    top = log_x.amax(dim=1, keepdim=True)
    product = torch.mm((log_x - top).exp(), exp_shifted)
    return product.clamp_min(torch.finfo(log_x.dtype).tiny).log() + top + shift


class LogPartition(torch.autograd.Function):
    """log Z of a linear-chain CRF with the forward-backward gradient.

    forward: alphas by the forward algorithm. backward: betas by the backward algorithm, then
    d logZ / d emissions = the tag marginals and d / d transitions = the expected transition
    counts. Autograd through the time loop would record ~10 nodes per step and replay them; this
    keeps one `(B,T,K)` tensor of alphas. Each step is a `(B,K) @ (K,K)` matmul in probability
    space rather than a `(B,K,K)` logsumexp. It all runs in float64, whose exponent range keeps
    those products exact for any transition weights training produces; the tensors are small.
    Masks are left-aligned with the first position on.
    """

    @staticmethod
    def forward(ctx, emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
        ctx.dtypes = (emissions.dtype, start.dtype, transitions.dtype, end.dtype)
        em, start, transitions, end = (x.double() for x in (emissions, start, transitions, end))
        col_shift = transitions.amax(dim=0)
        exp_trans = (transitions - col_shift).exp()
        score = start + em[:, 0]
        alphas = [score]
        for t in range(1, em.size(1)):
            step = _log_matmul(score, exp_trans, col_shift) + em[:, t]
            score = torch.where(mask[:, t, None], step, score)  # past a row's end, carry its last alpha
            alphas.append(score)
        log_z = torch.logsumexp(score + end, dim=1)
        ctx.save_for_backward(em, mask, transitions, end, torch.stack(alphas, dim=1), log_z)
        return log_z.to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        em, mask, transitions, end, alphas, log_z = ctx.saved_tensors
        batch, steps, k = em.shape
        row_shift = transitions.amax(dim=1)
        exp_trans_t = (transitions - row_shift[:, None]).exp().T.contiguous()
        beta = end.expand(batch, k)  # beta[t]: log-score of all continuations after position t
        betas = [beta] * steps
        for t in range(steps - 2, -1, -1):
            step = _log_matmul(em[:, t + 1] + beta, exp_trans_t, row_shift)
            beta = torch.where(mask[:, t + 1, None], step, end)
            betas[t] = beta
        betas_all = torch.stack(betas, dim=1)
        weight = grad.double()[:, None] * mask.double()  # upstream gradient per (row, step), 0 on padding
        log_norm = log_z[:, None, None]
        marginals = (alphas + betas_all - log_norm).exp() * weight[:, :, None]
        last = (mask.long().sum(dim=1) - 1).clamp_min(0)
        d_end = marginals.gather(1, last[:, None, None].expand(batch, 1, k)).squeeze(1).sum(dim=0)
        d_trans = _expected_transitions(alphas[:, :-1], em[:, 1:] + betas_all[:, 1:], transitions, log_norm,
                                        weight[:, 1:])
        grads = (marginals, marginals[:, 0].sum(dim=0), d_trans, d_end)
        d_em, d_start, d_trans, d_end = (g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))
        return d_em, None, d_start, d_trans, d_end


def _expected_transitions(before: Tensor, ahead: Tensor, transitions: Tensor, log_norm: Tensor,
                          weight: Tensor) -> Tensor:
    """sum over rows b and steps t of weight * exp(before[i] + trans[i, j] + ahead[j] - logZ), (K,K).

    One (K, B*T) @ (B*T, K) matmul of row-shifted exps, each (b, t) rescaled by
    exp(max before + max ahead - logZ) <= exp(-min transition), finite in float64.
    """
    k = before.size(2)
    top_before = before.amax(dim=2, keepdim=True)
    top_ahead = ahead.amax(dim=2, keepdim=True)
    scale = (top_before + top_ahead - log_norm).exp() * weight[:, :, None]
    left = ((before - top_before).exp() * scale).reshape(-1, k)
    right = (ahead - top_ahead).exp().reshape(-1, k)
    return (left.T @ right) * transitions.exp()


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
