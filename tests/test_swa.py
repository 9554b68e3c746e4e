"""`train --swa SHARE`: the running mean of the late weights, scored on dev and kept only where it is better."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from bertner.config import TrainConfig
from bertner.engine.averaging import WeightAverage
from bertner.engine.budget import TimeBudget
from bertner.engine.trainer import train
from bertner.evaluate import evaluate
from bertner.predict import Predictor

from synthetic import write_synthetic

# 96 windows / batch 16 = 6 steps an epoch; 3 epochs = 18 steps.
SETTINGS = dict(model="tiny", epochs=3, batch_size=16, tiny_layers=1, tiny_hidden=32, tiny_heads=2, lr=5e-3,
                log_every=2, seed=3, num_threads=1, device="cpu")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("swa-data"), n_train=96, n_dev=16, seed=5)


def test_the_mean_is_exact_and_the_model_gets_its_own_weights_back():
    model = nn.Linear(3, 2)
    average = WeightAverage(model)
    seen = []
    for k in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.full_like(p, float(k * k)) + torch.arange(p.numel()).reshape(p.shape))
        seen.append([p.detach().clone() for p in model.parameters()])
        average.update()
    assert average.count == 4
    last = [p.detach().clone() for p in model.parameters()]
    with average.swapped_in():
        for p, *values in zip(model.parameters(), *seen):
            assert torch.allclose(p, torch.stack(values).mean(0))  # (0 + 1 + 4 + 9) / 4 = 3.5 added to each
    for p, q in zip(model.parameters(), last):
        assert torch.equal(p, q)
    resumed = WeightAverage(model)
    resumed.load_state(average.state())
    assert resumed.count == 4 and all(torch.equal(a, b) for a, b in zip(resumed.mean, average.mean))


def test_a_budget_keeps_time_for_both_final_evaluations():
    budget = TimeBudget(minutes=1.0, final_evaluations=2)
    budget.evaluation_estimate = 6.0
    assert budget.usable() == 48.0
    budget.note_evaluation(10.0)
    assert budget.usable() == 40.0


def test_swa_averages_the_last_share_and_keeps_the_average_only_where_it_is_better(data_dir, tmp_path):
    plain = train(TrainConfig(data=str(data_dir), output=str(tmp_path / "plain"), **SETTINGS))
    averaged = train(TrainConfig(data=str(data_dir), output=str(tmp_path / "swa"), swa=0.5, **SETTINGS))
    # Steps 10..18 of 18 are past half-way (step / 18 > 0.5): 9 steps averaged.
    assert averaged.averaged_steps == 9
    assert averaged.steps == plain.steps == 18
    # Averaging reads the weights and changes nothing else: the trajectory is the plain run's.
    rows = lambda run: [(r["step"], r["micro"]["f1"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert rows(tmp_path / "swa") == rows(tmp_path / "plain")
    assert averaged.averaged_kept == (averaged.averaged_f1 > plain.best_f1)
    assert averaged.best_f1 == pytest.approx(max(plain.best_f1, averaged.averaged_f1))
    # What the run holds scores what the summary says: the average where it was kept, the best checkpoint otherwise.
    scored = evaluate(Predictor.from_run(tmp_path / "swa"), data_dir / "dev.jsonl").scores["micro"]["f1"]
    assert scored == pytest.approx(averaged.best_f1, abs=1e-6)
    same = all(torch.equal(a, b) for a, b in zip(load_file(str(tmp_path / "swa" / "model.safetensors")).values(),
                                                 load_file(str(tmp_path / "plain" / "model.safetensors")).values()))
    assert same != averaged.averaged_kept


def test_a_run_that_averages_too_little_says_so_and_keeps_its_best(data_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="bertner")
    summary = train(TrainConfig(data=str(data_dir), output=str(tmp_path / "run"), swa=0.05, **SETTINGS))
    assert summary.averaged_steps is None and summary.averaged_f1 is None
    assert "--swa: 1 step(s) averaged; the average is not used" in caplog.text
