import pytest
import torch
from torch import nn

from bertner.engine.optim import build_optimizer, clip_gradients, linear_schedule
from bertner.models.tagger import HeadSpec, Tagger


class FakeEncoder(nn.Module):
    """Enough of a Hugging Face encoder for the head tests: embeddings plus a LayerNorm."""

    def __init__(self, vocab: int = 30, hidden: int = 8):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"last_hidden_state": self.LayerNorm(self.embeddings(input_ids))})()


def tagger(crf=True, gru=True):
    return Tagger(FakeEncoder(), 8, HeadSpec(num_tags=5, crf=crf, gru=gru))


def rates(optimizer):
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


def test_crf_multiplier_applies_to_crf_group_only():
    model = tagger()
    optimizer, infos = build_optimizer(model, lr=5e-5, weight_decay=0.01, crf_lr_mult=100)
    r = rates(optimizer)
    assert r["crf"] == pytest.approx(5e-3)
    assert r["encoder"] == pytest.approx(5e-5)
    assert r["head"] == pytest.approx(5e-5)
    crf_group = next(g for g in optimizer.param_groups if g["name"] == "crf")
    assert crf_group["weight_decay"] == 0.0
    assert {id(p) for p in crf_group["params"]} == {id(p) for p in model.crf.parameters()}
    assert sum(i.parameters for i in infos) == sum(p.numel() for p in model.parameters())


def test_bias_and_layernorm_have_no_decay():
    model = tagger()
    optimizer, _ = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if "bias" in names[id(p)] or "LayerNorm" in names[id(p)]:
                assert group["weight_decay"] == 0.0, names[id(p)]


def test_schedule_keeps_group_multipliers_and_warms_up():
    optimizer, _ = build_optimizer(tagger(), lr=1e-3, weight_decay=0.0, crf_lr_mult=10)
    scheduler = linear_schedule(optimizer, total_steps=10, warmup_ratio=0.2)
    seen = []
    for _ in range(10):
        seen.append(rates(optimizer))
        optimizer.step()
        scheduler.step()
    assert seen[0]["encoder"] == pytest.approx(5e-4)
    assert seen[1]["encoder"] == pytest.approx(1e-3)
    for r in seen:
        assert r["crf"] == pytest.approx(10 * r["encoder"])
    assert rates(optimizer)["encoder"] == pytest.approx(0.0)


def test_crf_transitions_move_with_multiplier():
    """The transitions must actually learn (a multiplier that drops them from the optimiser freezes them)."""
    torch.manual_seed(0)
    model = tagger(gru=False)
    before = model.crf.transitions.detach().clone()
    optimizer, _ = build_optimizer(model, lr=1e-4, weight_decay=0.0, crf_lr_mult=100)
    ids = torch.randint(1, 30, (4, 10))
    labels = torch.randint(0, 5, (4, 10))
    labels[:, 0] = -100
    emissions = model.emissions(ids, torch.ones_like(ids))
    model.loss(emissions, labels).backward()
    optimizer.step()
    moved = (model.crf.transitions - before).abs().max().item()
    assert moved == pytest.approx(1e-2, rel=0.05)  # Adam's first step moves each weight by ~lr


def test_config_file_values_are_coerced_and_flags_win(tmp_path):
    from bertner.config import build_config, load_yaml

    path = tmp_path / "c.yaml"
    path.write_text("lr: 5e-5\nepochs: 2\ncrf: true\nbatch-size: 8\n", encoding="utf-8")  # YAML 1.1 reads 5e-5 as a string
    config = build_config(load_yaml(path), {"epochs": 5, "gru": None})
    assert config.lr == 5e-5 and config.epochs == 5 and config.crf is True and config.batch_size == 8
    path.write_text("lr: fast\n", encoding="utf-8")
    with pytest.raises(Exception, match="lr must be a number"):
        build_config(load_yaml(path), {})


def test_constrained_softmax_decoding_is_well_formed():
    from bertner.tags import label_set_to_tags, stray_inside_tags

    tags = tuple(label_set_to_tags(["A", "B"]))
    model = Tagger(FakeEncoder(), 8, HeadSpec(num_tags=len(tags), constrained=True, tags=tags))
    free = Tagger(FakeEncoder(), 8, HeadSpec(num_tags=len(tags)))
    torch.manual_seed(0)
    emissions = torch.randn(64, 12, len(tags)) * 3
    mask = torch.ones(64, 13, dtype=torch.bool)
    mask[:, 0] = False  # [CLS]
    constrained_paths = model.decode(emissions, mask)
    free_paths = free.decode(emissions, mask)
    assert any(stray_inside_tags([tags[i] for i in row]) for row in free_paths.tolist())  # argmax breaks BIO
    for row in constrained_paths.tolist():
        assert stray_inside_tags([tags[i] for i in row]) == []
    # Where the argmax is already well-formed, constrained decoding keeps it.
    for free_row, constrained_row in zip(free_paths.tolist(), constrained_paths.tolist()):
        if not stray_inside_tags([tags[i] for i in free_row]):
            assert free_row == constrained_row


@pytest.mark.parametrize("scale", [0.01, 100.0])  # nothing clipped; clipped
@pytest.mark.parametrize("read_norm_free", [True, False])
def test_clip_gradients_gives_torchs_gradients(scale, read_norm_free):
    torch.manual_seed(0)
    mine = [nn.Parameter(torch.randn(50, 7)), nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2))]
    theirs = [nn.Parameter(p.detach().clone()) for p in mine]
    for a, b in zip(mine[:2], theirs[:2]):  # the last parameter has no gradient
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    before = mine[0].grad.clone()
    clip_gradients(mine, 1.0, read_norm_free)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(mine[:2], theirs[:2]))
    assert mine[2].grad is None
    assert torch.equal(mine[0].grad, before) == (scale < 1)  # scaled exactly when the norm was over 1
