"""The cheap CPU dropout: right drop rate, right gradients, and the same attention as SDPA's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bertner.models.cpu_dropout import (
    ATTENTION_NAME,
    CpuDropout,
    cpu_attention,
    keep_mask,
    use_cpu_dropout,
)


def small_bert(attention_dropout: float = 0.1) -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        attention_probs_dropout_prob=attention_dropout, hidden_dropout_prob=0.1, max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return BertModel(config, add_pooling_layer=False)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.02])
def test_keep_mask_drops_p_of_the_elements(p):
    torch.manual_seed(1)
    mask = keep_mask((1000, 1000), p)
    assert mask.shape == (1000, 1000) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert abs((1 - mask.mean().item()) - p) < 0.002  # 1e6 draws: sd of the rate ~0.0003
    # Each of the four 16-bit lanes of a draw is used, not just one of them.
    for lane in range(4):
        assert abs((1 - mask.view(-1, 4)[:, lane].mean().item()) - p) < 0.004


def test_keep_mask_follows_torch_seed():
    torch.manual_seed(7)
    a = keep_mask((3, 1001), 0.1)
    torch.manual_seed(7)
    b = keep_mask((3, 1001), 0.1)
    c = keep_mask((3, 1001), 0.1)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_cpu_dropout_scales_kept_values_and_passes_gradients_through_the_same_mask():
    layer = CpuDropout(0.25)
    x = torch.randn(64, 300, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_cpu_attention_is_sdpa_without_dropout_and_masked_sdpa_with_it():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = nn.Module()
    module.is_causal = False  # an encoder's attention
    module.train()
    q, k, v = (torch.randn(2, 4, 7, 8) for _ in range(3))
    allowed = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    allowed[1, :, :, 5:] = False  # the second row's last two tokens are padding
    stock, _ = sdpa_attention_forward(module, q, k, v, allowed, dropout=0.0, scaling=0.3)
    ours, _ = cpu_attention(module, q, k, v, allowed, dropout=0.0, scaling=0.3)
    assert torch.equal(ours, stock)

    torch.manual_seed(3)
    ours, _ = cpu_attention(module, q, k, v, allowed, dropout=0.2, scaling=0.3)
    torch.manual_seed(3)
    keep = keep_mask((2, 4, 7, 7), 0.2)
    scores = (q @ k.transpose(-1, -2) * 0.3).masked_fill(~allowed, float("-inf"))
    expected = ((scores.softmax(-1) * keep / 0.8) @ v).transpose(1, 2)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_use_cpu_dropout_keeps_the_model_and_its_eval_outputs():
    model = small_bert()
    ids = torch.randint(1, 50, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[2, 8:] = 0
    model.eval()
    before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    swapped = use_cpu_dropout(model)

    assert model.config._attn_implementation == ATTENTION_NAME
    assert swapped == 1 + sum(isinstance(m, CpuDropout) for m in model.modules())
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, before, atol=1e-6)
    assert "bertner" not in model.config.to_json_string()  # saved encoders load without bertner

    model.train()
    torch.manual_seed(5)
    first = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(5)
    again = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(first, again) and not torch.allclose(first, before, atol=1e-3)


def test_cpu_attention_leaves_causal_attention_to_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = nn.Module()  # no is_causal attribute: SDPA takes it as causal, and so must we
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    torch.manual_seed(4)
    ours, _ = cpu_attention(module, q, k, v, None, dropout=0.3)
    torch.manual_seed(4)
    stock, _ = sdpa_attention_forward(module, q, k, v, None, dropout=0.3)
    assert torch.equal(ours, stock)
