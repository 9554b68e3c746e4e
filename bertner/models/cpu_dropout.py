"""Dropout with cheap random masks for training on CPU.

PyTorch's CPU dropout draws one random number per element (`bernoulli_`, ~7 ns each on one
core) and with attention dropout on, `scaled_dot_product_attention` leaves its fused CPU kernel
for the plain path with the same draws. For ALBERT-tiny that was about 12% of a training step,
mostly on the (batch, heads, length, length) attention probabilities. Here one 64-bit draw gives
four 16-bit uniforms, each compared with p: the same dropout at a quarter of the random draws,
with p rounded to a multiple of 1/65536 (0.1 becomes 0.100006).

`use_cpu_dropout(model)` swaps every `nn.Dropout` for `CpuDropout` and, for Hugging Face models
that take their attention from `AttentionInterface`, the attention for `cpu_attention`. Both fall
back to PyTorch's own code on other devices, in eval mode, and for p below 1%, so GPU training
and every prediction run exactly the stock kernels. Seeding `torch` makes the masks repeatable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bertner.models.encoder import quiet_transformers

ATTENTION_NAME = "bertner_cpu_dropout"
_LEVELS = 1 << 16  # 16-bit uniforms
_SMALLEST_P = 0.01  # below this the 1/65536 rounding would be a noticeable share of p


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """A CPU tensor of 1s (kept, probability 1 - p) and 0s (dropped), from torch's default generator."""
    n = math.prod(shape)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)  # all 64 bits random
    threshold = round(p * _LEVELS) - _LEVELS // 2  # int16 values below it: probability p
    return (draws.view(torch.int16)[:n] >= threshold).view(shape).to(dtype)


def _cheap(p: float, x: Tensor, training: bool) -> bool:
    return training and x.device.type == "cpu" and _SMALLEST_P <= p < 1.0


class CpuDropout(nn.Dropout):
    """`nn.Dropout` whose CPU training masks come from `keep_mask`; stock everywhere else."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace or not _cheap(self.p, x, self.training):
            return super().forward(x)
        return x * keep_mask(x.shape, self.p, x.dtype).mul_(1.0 / (1.0 - self.p))


def cpu_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """An `AttentionInterface` function: SDPA, except for CPU training with attention dropout.

    There it computes softmax(q k^T * scaling + mask) with `keep_mask` dropout, then @ v, as
    SDPA's own non-fused path does; the 1 / (1 - p) rescaling is applied to the (much smaller)
    output instead of the probabilities.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = kwargs.get("is_causal")
    if causal is None:
        causal = getattr(module, "is_causal", True)  # as SDPA decides it
    unusual = (
        causal or kwargs.get("position_bias") is not None
        or getattr(module, "num_key_value_groups", 1) > 1 or kwargs.get("softcap") is not None
    )
    if unusual or not _cheap(dropout, query, module.training):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # SDPA's form: True where a key may be attended
            additive = torch.zeros(attention_mask.shape, dtype=scores.dtype)
            attention_mask = additive.masked_fill_(attention_mask.logical_not(), torch.finfo(scores.dtype).min)
        scores = scores.add_(attention_mask)  # in place: matmul's backward does not need its output
    probs = torch.softmax(scores, dim=-1)
    probs = probs * keep_mask(probs.shape, dropout, probs.dtype)
    output = torch.matmul(probs, value) * (1.0 / (1.0 - dropout))
    return output.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, cpu_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # SDPA's masks: eval falls through to SDPA


def use_cpu_dropout(model: nn.Module) -> int:
    """Swap the model's dropout (and HF SDPA attention) for the cheap-mask versions; returns the count.

    The swap keeps weights and state dicts as they are; the encoder's saved config does not record
    the attention choice, so saved runs load anywhere with plain transformers.
    """
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, CpuDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    for sub in model.modules():
        config = getattr(sub, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(sub, "set_attn_implementation"):
            _register_attention()
            with quiet_transformers():  # a model that cannot switch logs a warning and stays on SDPA
                sub.set_attn_implementation(ATTENTION_NAME)
            swapped += int(config._attn_implementation == ATTENTION_NAME)
    return swapped


__all__ = ["CpuDropout", "cpu_attention", "keep_mask", "use_cpu_dropout"]
