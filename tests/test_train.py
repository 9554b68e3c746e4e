"""Training end to end on a synthetic task: every variant must really learn, and the run directory is complete."""

import json

import pytest
import torch
import yaml
from synthetic import write_synthetic

from bertner.cli._progress import TrainProgress
from bertner.config import TrainConfig
from bertner.engine.trainer import train
from bertner.errors import BertnerError, OutputExistsError
from bertner.runs import load_run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


def small_config(data_dir, output, **overrides):
    values = dict(
        data=str(data_dir), output=str(output), model="tiny", epochs=6, batch_size=16, warmup_ratio=0.05,
        tiny_layers=1, tiny_hidden=64, tiny_heads=2, lr=5e-3, log_every=5, seed=1, num_threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("crf,gru", [(False, False), (True, False), (False, True), (True, True)])
def test_every_variant_learns_the_synthetic_task(data_dir, tmp_path, crf, gru):
    summary = train(small_config(data_dir, tmp_path / "run", crf=crf, gru=gru, crf_lr_mult=10 if crf else 1))
    assert summary.best_f1 > 0.9, summary
    assert summary.variant == "tiny" + ("+gru" if gru else "") + ("+crf" if crf else "+softmax")


def test_run_directory_is_complete_and_reloads(data_dir, tmp_path):
    run = tmp_path / "run"
    summary = train(small_config(data_dir, run, crf=True, epochs=2))
    for name in ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors", "metrics.jsonl", "summary.json"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "checkpoint").exists()  # a completed run leaves no resumable state behind
    saved = json.loads((run / "summary.json").read_text())
    for key in ("variant", "crf_lr_mult", "seed", "best_f1", "best_step", "train_seconds", "tokens_per_second", "parameters"):
        assert key in saved
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and max(m["micro"]["f1"] for m in metrics) == pytest.approx(summary.best_f1)
    assert yaml.safe_load((run / "config.yaml").read_text())["crf"] is True
    loaded = load_run(run)
    assert loaded.config.crf and loaded.labels == ["Disease", "Drug", "Test"]


def test_seeded_cpu_runs_repeat_exactly(data_dir, tmp_path):
    a = train(small_config(data_dir, tmp_path / "a", epochs=1))
    b = train(small_config(data_dir, tmp_path / "b", epochs=1))
    assert a.best_f1 == b.best_f1
    wa, wb = load_run(tmp_path / "a").model.state_dict(), load_run(tmp_path / "b").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_refuses_to_overwrite_a_run(data_dir, tmp_path):
    train(small_config(data_dir, tmp_path / "run", epochs=1, max_steps=2))
    with pytest.raises(OutputExistsError, match="--resume"):
        train(small_config(data_dir, tmp_path / "run", epochs=1, max_steps=2))
    train(small_config(data_dir, tmp_path / "run", epochs=1, max_steps=2), force=True)


def test_unknown_dev_labels_warn_and_count_as_misses_and_empty_train_is_an_error(data_dir, tmp_path, caplog):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text(
        json.dumps({"id": "a#0", "doc": "a", "offset": 0, "text": "甲乙", "entities": [{"start": 0, "end": 1, "label": "X", "text": "甲"}]}) + "\n",
        encoding="utf-8",
    )
    (bad / "dev.jsonl").write_text(
        json.dumps({"id": "b#0", "doc": "b", "offset": 0, "text": "丙丁", "entities": [{"start": 0, "end": 1, "label": "Y", "text": "丙"}]}) + "\n",
        encoding="utf-8",
    )
    summary = train(small_config(bad, tmp_path / "r1", epochs=1))  # a warning, not a refusal
    assert "dev has labels that train never saw: Y (1)" in caplog.text  # logged; the CLI shows it
    assert summary.best_per_type["Y"]["recall"] == 0 and summary.best_per_type["Y"]["support"] == 1
    (bad / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(BertnerError, match="empty"):
        train(small_config(bad, tmp_path / "r2"))


def test_nan_loss_stops_with_the_step(data_dir, tmp_path):
    from bertner.errors import TrainingError

    # A learning rate this large blows the weights up within a few steps.
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) by step \d+; training stopped"):
        train(small_config(data_dir, tmp_path / "run", lr=1e12, warmup_ratio=0.0, max_grad_norm=1e30))


def test_compile_on_cpu_warns_before_the_long_wait(data_dir, tmp_path, caplog):
    from bertner.engine.trainer import Trainer

    trainer = Trainer(small_config(data_dir, tmp_path / "run", compile=True, device="cpu"))
    trainer.setup()
    assert "--compile on CPU" in caplog.text  # torch.compile is lazy: nothing compiled yet
    # Only the encoder is compiled, in place: the CRF stays eager and the weights keep their names.
    assert trainer.model.encoder._compiled_call_impl is not None
    assert trainer.forward_model is trainer.model and trainer.model._compiled_call_impl is None
    assert not any("_orig_mod" in name for name in trainer.model.state_dict())


def test_cpu_training_uses_the_cheap_dropout_masks(data_dir, tmp_path):
    from torch import nn

    from bertner.engine.trainer import Trainer
    from bertner.models.cpu_dropout import CpuDropout

    trainer = Trainer(small_config(data_dir, tmp_path / "run", device="cpu"))
    trainer.setup()
    dropouts = [m for m in trainer.model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(isinstance(m, CpuDropout) for m in dropouts)


def test_mfu_is_reported_against_a_known_peak_and_not_on_cpu(data_dir, tmp_path, monkeypatch, capsys):
    import bertner.engine.trainer as trainer_module

    plain = train(small_config(data_dir, tmp_path / "cpu", epochs=1), view=TrainProgress())
    assert plain.mfu is None  # no peak to compare with on a CPU
    assert "MFU" not in capsys.readouterr().err
    monkeypatch.setattr(trainer_module, "device_peak_flops", lambda device: 1e10)  # as if on a 10 GFLOP/s card
    estimates = []
    real = trainer_module.flops_per_token
    monkeypatch.setattr(trainer_module, "flops_per_token", lambda *args: estimates.append(real(*args)) or estimates[-1])
    summary = train(small_config(data_dir, tmp_path / "gpu-like", epochs=1), view=TrainProgress())
    assert summary.mfu == pytest.approx(summary.tokens_per_second * estimates[0] / 1e10, abs=2e-4)
    assert "MFU" in capsys.readouterr().err


def test_dev_evaluation_shows_progress_in_a_pipe(data_dir, tmp_path, monkeypatch, capsys):
    import bertner.cli._progress

    monkeypatch.setattr(bertner.cli._progress, "LINE_EVERY_S", 0.0)  # every batch gets its line
    train(small_config(data_dir, tmp_path / "run", epochs=1, batch_size=4), view=TrainProgress())
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating on dev")]
    counts = [line.split(": ")[1].split(" (")[0] for line in lines]
    dev_inputs = int(counts[-1].split(" / ")[1].split()[0])
    assert dev_inputs > 8 and counts[0] == f"8 / {dev_inputs} inputs"  # batches of 2 x batch_size
    assert counts[-1] == f"{dev_inputs} / {dev_inputs} inputs"
