"""MFU arithmetic: FLOPs per token of a known shape, the peaks we know, and none on CPU."""

import pytest
import torch
from torch import nn
from transformers import AlbertConfig, BertConfig

from bertner.engine.flops import (
    attention_length,
    device_peak_flops,
    flops_per_token,
    mfu,
    peak_flops,
)


def test_bert_base_flops_per_token_by_hand():
    config = BertConfig()  # d 768, 12 layers, FFN 3072
    weights = 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # 84.9 M: BERT-base minus embeddings, biases, norms
    assert flops_per_token(config, None, [128]) == pytest.approx(6 * weights + 12 * 12 * 768 * 128)
    head = nn.Linear(768, 31)  # the bias does no multiply-add per input
    assert flops_per_token(config, head, [128]) - flops_per_token(config, None, [128]) == 6 * 768 * 31


def test_albert_counts_its_shared_layer_once_per_use():
    config = AlbertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1248, embedding_size=128)
    layers = 4 * (4 * 312 * 312 + 2 * 312 * 1248)
    assert flops_per_token(config, None, [0]) == 6 * (layers + 128 * 312)  # + the embedding projection


def test_attention_length_weights_by_tokens():
    assert attention_length([100, 100]) == 100
    assert attention_length([10, 30]) == pytest.approx((100 + 900) / 40)  # a token is likelier in the long one
    assert attention_length([]) == 0.0


def test_peaks_and_mfu():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA H100 NVL") == 835e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA L40") == 181e12 and peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("NVIDIA RTX A1000 Laptop GPU") is None  # not an A100
    assert peak_flops("Tesla T4") is None and peak_flops(None) is None
    assert device_peak_flops(torch.device("cpu")) is None
    assert mfu(1000.0, 1e9, 1e13) == pytest.approx(0.1)
    assert mfu(1000.0, 1e9, None) is None
