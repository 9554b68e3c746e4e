"""The on-device Viterbi must return exactly pytorch-crf's paths, ties included."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchcrf

from bertner.models.crf import CRF, LogPartition, tree_log_partition


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine
    # contended OpenMP threads made one chunk take 60x longer.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_case(gen: torch.Generator, dtype: torch.dtype = torch.float32):
    """A CRF with random (sometimes huge, sometimes tie-prone integer) weights and a ragged batch."""
    k = int(torch.randint(1, 32, (1,), generator=gen))
    if torch.rand(1, generator=gen) < 0.15:
        k = int(torch.randint(1, 3, (1,), generator=gen))  # K=1,2 often
    batch = int(torch.randint(1, 17, (1,), generator=gen))
    steps = int(torch.randint(1, 25, (1,), generator=gen))
    crf = CRF(k)
    style = int(torch.randint(0, 3, (1,), generator=gen))
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            if style == 0:  # pytorch-crf-like small weights
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif style == 1:  # extremes
                p.copy_(torch.randn(p.shape, generator=gen) * 1e4)
            else:  # small integers: exact ties everywhere
                p.copy_(torch.randint(-2, 3, p.shape, generator=gen).float())
    if style == 2:
        emissions = torch.randint(-2, 3, (batch, steps, k), generator=gen).to(dtype)
    else:
        emissions = (torch.randn(batch, steps, k, generator=gen) * (1e4 if style == 1 else 1.0)).to(dtype)
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    if torch.rand(1, generator=gen) < 0.2:
        lengths[:] = steps  # all-full mask
    lengths[0] = 1 if torch.rand(1, generator=gen) < 0.3 else lengths[0]  # length 1 shows up
    mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    return crf, emissions, mask


def as_padded(paths: list[list[int]], steps: int) -> torch.Tensor:
    return torch.tensor([p + [0] * (steps - len(p)) for p in paths], dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", range(4))
def test_viterbi_matches_pytorch_crf(dtype: torch.dtype, chunk: int) -> None:
    gen = torch.Generator().manual_seed(1000 * chunk + (dtype == torch.float64))
    for _ in range(400):  # 8 x 400 = 3200 random cases
        crf, emissions, mask = random_case(gen, dtype)
        with torch.no_grad():
            ours = crf.viterbi(emissions, mask)
            theirs = as_padded(torchcrf.CRF.decode(crf, emissions, mask), emissions.size(1))
        assert torch.equal(ours, theirs), (crf.num_tags, emissions.shape, mask.sum(1))


def path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """The unnormalised score of one tag path, written out independently of either decoder."""
    s = crf.start_transitions[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return float(s + crf.end_transitions[path[-1]])


def test_decoded_path_is_the_brute_force_maximum_and_likelihood_matches() -> None:
    gen = torch.Generator().manual_seed(7)
    for _ in range(150):
        k = int(torch.randint(1, 4, (1,), generator=gen))
        steps = int(torch.randint(1, 5, (1,), generator=gen))
        crf = CRF(k)
        with torch.no_grad():
            for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).float())
        emissions = torch.randn(2, steps, k, generator=gen, dtype=torch.float64)
        lengths = [steps, int(torch.randint(1, steps + 1, (1,), generator=gen))]
        mask = torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        with torch.no_grad():
            decoded = crf.viterbi(emissions, mask)
            for b, n in enumerate(lengths):
                scores = {p: path_score(crf, emissions[b], p) for p in itertools.product(range(k), repeat=n)}
                best = tuple(decoded[b, :n].tolist())
                assert scores[best] == pytest.approx(max(scores.values()), abs=1e-9)
                assert decoded[b, n:].eq(0).all()
                # log p(best) = score(best) - logsumexp over all paths
                tags = decoded[b : b + 1]
                llh = crf.log_likelihood(emissions[b : b + 1], tags, mask[b : b + 1], reduction="sum")
                log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
                # (pytorch-crf accumulates the path score in the parameters' float32)
                assert float(llh) == pytest.approx(scores[best] - float(log_z), abs=1e-5)


def test_likelihood_is_pytorch_crf_forward_and_differentiable() -> None:
    torch.manual_seed(0)
    crf = CRF(7)
    emissions = torch.randn(4, 9, 7, requires_grad=True)
    tags = torch.randint(0, 7, (4, 9))
    mask = torch.arange(9).unsqueeze(0) < torch.tensor([9, 5, 1, 3]).unsqueeze(1)
    for reduction in ("none", "sum", "mean", "token_mean"):
        ref = torchcrf.CRF.forward(crf, emissions, tags, mask, reduction=reduction)
        assert torch.allclose(crf.log_likelihood(emissions, tags, mask, reduction), ref)
    crf.nll(emissions, tags, mask).backward()
    assert emissions.grad is not None and crf.transitions.grad is not None
    with pytest.raises(ValueError):
        crf.log_likelihood(emissions, tags, mask, reduction="avg")


def scaled_case(gen: torch.Generator, scale: float, steps: int | None = None):
    """A float64 CRF with weights of the given scale and a ragged batch of emissions that require grad.

    `steps` left out is drawn from 1..39.
    """
    k = int(torch.randint(1, 32, (1,), generator=gen))
    batch = int(torch.randint(1, 9, (1,), generator=gen))
    steps = int(torch.randint(1, 40, (1,), generator=gen)) if steps is None else steps
    crf = CRF(k).double()
    with torch.no_grad():
        for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)
    emissions = (torch.randn(batch, steps, k, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    return crf, emissions, mask


@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])  # 30: spreads of ~200 nats, past float32's exp range
def test_hand_written_gradient_equals_autograd_through_pytorch_crf(scale: float) -> None:
    gen = torch.Generator().manual_seed(int(scale * 10))
    for _ in range(12):
        crf, emissions, mask = scaled_case(gen, scale)
        (batch, steps), k = mask.shape, crf.num_tags
        tags = torch.randint(0, k, (batch, steps), generator=gen)
        upstream = torch.randn(batch, generator=gen, dtype=torch.float64)
        params = [emissions, crf.start_transitions, crf.transitions, crf.end_transitions]
        ours = torch.autograd.grad((crf.log_likelihood(emissions, tags, mask, "none") * upstream).sum(), params)
        ref = torchcrf.CRF.forward(crf, emissions, tags, mask, reduction="none")
        theirs = torch.autograd.grad((ref * upstream).sum(), params, allow_unused=True)  # T=1: no transitions
        theirs = [torch.zeros_like(p) if g is None else g for p, g in zip(params, theirs)]
        for name, a, b in zip(("emissions", "start", "transitions", "end"), ours, theirs):
            assert torch.allclose(a, b, atol=1e-8, rtol=1e-6), (name, float((a - b).abs().max()))


@pytest.mark.parametrize("normaliser", [LogPartition.apply, tree_log_partition], ids=["time-loop", "tree"])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_both_normalisers_equal_pytorch_crf_in_value_and_gradient(normaliser, scale: float) -> None:
    # The tree is what a GPU runs; here it is checked on the CPU against pytorch-crf's own recursion,
    # with odd and even lengths (the tree pads odd levels), T = 1 and ragged masks.
    gen = torch.Generator().manual_seed(int(scale * 10) + 7)
    for case in range(12):
        crf, emissions, mask = scaled_case(gen, scale, steps=1 if case == 0 else None)
        upstream = torch.randn(mask.size(0), generator=gen, dtype=torch.float64)
        params = [emissions, crf.start_transitions, crf.transitions, crf.end_transitions]
        ours = normaliser(emissions, mask, crf.start_transitions, crf.transitions, crf.end_transitions)
        ref = torchcrf.CRF._compute_normalizer(crf, emissions.transpose(0, 1), mask.transpose(0, 1))
        assert torch.allclose(ours, ref, atol=1e-9, rtol=1e-12), float((ours - ref).abs().max())
        grads = [[torch.zeros_like(p) if g is None else g for p, g in zip(params, torch.autograd.grad(
            (value * upstream).sum(), params, allow_unused=True))] for value in (ours, ref)]  # T=1: no transitions
        for name, a, b in zip(("emissions", "start", "transitions", "end"), *grads):
            assert torch.allclose(a, b, atol=1e-8, rtol=1e-6), (name, float((a - b).abs().max()))


def test_autocast_and_half_inputs_compute_in_float32() -> None:
    torch.manual_seed(1)
    crf = CRF(5)
    emissions = torch.randn(3, 6, 5)
    tags = torch.randint(0, 5, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crf.nll(emissions.bfloat16(), tags, mask)
        paths = crf.viterbi(emissions.bfloat16(), mask)
    assert loss.dtype == torch.float32
    ref = as_padded(torchcrf.CRF.decode(crf, emissions.bfloat16().float(), mask), 6)
    assert torch.equal(paths, ref)


def test_shapes_are_checked_and_empty_time_is_fine() -> None:
    crf = CRF(3)
    with pytest.raises(ValueError):
        crf.viterbi(torch.zeros(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        crf.viterbi(torch.zeros(2, 4, 3), torch.ones(2, 3, dtype=torch.bool))
    assert crf.viterbi(torch.zeros(2, 0, 3), torch.ones(2, 0, dtype=torch.bool)).shape == (2, 0)


def test_padding_labels_are_ignored() -> None:
    torch.manual_seed(2)
    crf = CRF(4)
    emissions = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    tags = torch.randint(0, 4, (2, 5))
    padded = tags.masked_fill(~mask, -100)
    assert torch.allclose(crf.log_likelihood(emissions, padded, mask, "none"),
                          crf.log_likelihood(emissions, tags, mask, "none"))
