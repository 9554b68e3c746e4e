"""Model FLOPs utilisation (MFU), as nanoGPT reports it: the model's FLOPs per second / the GPU's peak.

FLOPs per trained token = 6 N + 12 L d T (the PaLM paper's appendix B): each of the N weights
that a token passes through does a multiply-add forward and two backward, and attention's
score and value products add 12 L d T for a sequence of T tokens. N counts weights as used, so
ALBERT's shared layer counts L times; embeddings (table lookups) do not count. T is the mean
sequence length as seen by a token (sum of squared lengths / sum of lengths, [CLS] and [SEP]
included), over the whole training set: a logged figure over a few length-grouped batches can
read a little high or low. Padding is work the model does not need, so it is not credited: MFU
is honest about it. The peak is the card's dense bf16 tensor-core figure, whatever precision
the run used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity), matched as
# whole words in the CUDA device name ("L4" must not match "L40", nor "A100" "RTX A1000"); the
# more specific patterns come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH100\b", 989.0),
    (r"\bH200\b", 989.0),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL40\b", 181.0),
    (r"\bL4\b", 121.0),
)


def peak_flops(device_name: str | None) -> float | None:
    """The card's dense bf16 peak in FLOP/s, or None for a device we do not know (CPUs included)."""
    if not device_name:
        return None
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops * 1e12
    return None


def device_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))


def attention_length(lengths: Sequence[int]) -> float:
    """The sequence length a token sees on average: sum of squares / sum (lengths in tokens)."""
    total = sum(lengths)
    return sum(n * n for n in lengths) / total if total else 0.0


def encoder_weights(config: Any) -> int:
    """Weights a token passes through in a BERT-shaped encoder: L x (4 d^2 attention + 2 d i FFN),
    plus the embedding projection of ALBERT and ELECTRA (embedding size != hidden size).

    An estimate from the config's shape: gated FFNs (ModernBERT: 3 d i) or DeBERTa's relative
    position projections are not modelled, so their MFU reads somewhat low.
    """
    d, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    embedding = getattr(config, "embedding_size", None) or d
    return layers * (4 * d * d + 2 * d * inner) + (embedding * d if embedding != d else 0)


def flops_per_token(config: Any, head: nn.Module | None, lengths: Sequence[int]) -> float:
    """6 N + 12 L d T for the encoder (from its config) plus the head's weights (GRU, classifier)."""
    n = encoder_weights(config)
    if head is not None:
        n += sum(p.numel() for p in head.parameters() if p.dim() > 1)
    return 6.0 * n + 12.0 * config.num_hidden_layers * config.hidden_size * attention_length(lengths)


def mfu(tokens_per_second: float, token_flops: float, peak: float | None) -> float | None:
    """Achieved model FLOP/s over the peak; None without a peak."""
    return tokens_per_second * token_flops / peak if peak else None


__all__ = ["attention_length", "device_peak_flops", "flops_per_token", "mfu", "peak_flops"]
