"""Pretrained weights must matter: ALBERT-tiny fine-tuned beats the same architecture from random weights."""

import pytest
from conftest import ALBERT_TINY, RUIJIN_TRAIN, need

from bertner.config import TrainConfig
from bertner.data.jsonl import read_windows, write_windows
from bertner.data.preprocess import PreprocessOptions, preprocess
from bertner.engine.trainer import train
from bertner.fileio import write_json


@pytest.fixture(scope="module")
def ruijin_slice(tmp_path_factory):
    need(RUIJIN_TRAIN)
    root = tmp_path_factory.mktemp("ruijin")
    preprocess(PreprocessOptions(input=RUIJIN_TRAIN, output=root / "all", max_chars=64, dev_ratio=0.2, seed=13))
    train_windows = read_windows(root / "all" / "train.jsonl")[:320]
    train_labels = {s.label for w in train_windows for s in w.spans}
    dev_windows = [w for w in read_windows(root / "all" / "dev.jsonl")[:400] if all(s.label in train_labels for s in w.spans)][:160]
    folder = root / "slice"
    folder.mkdir()
    write_windows(folder / "train.jsonl", train_windows)
    write_windows(folder / "dev.jsonl", dev_windows)
    write_json(folder / "labels.json", {"labels": sorted(train_labels), "max_chars": 64})
    return folder


@pytest.mark.slow
def test_pretrained_albert_beats_random_weights(ruijin_slice, tmp_path):
    need(ALBERT_TINY)
    common = dict(
        data=str(ruijin_slice), model=str(ALBERT_TINY), epochs=2, batch_size=16, lr=3e-4, seed=1,
        warmup_ratio=0.1, num_threads=2, log_every=10,
    )
    pretrained = train(TrainConfig(output=str(tmp_path / "pretrained"), **common))
    scratch = train(TrainConfig(output=str(tmp_path / "scratch"), random_init=True, **common))
    assert pretrained.parameters == scratch.parameters  # the same architecture
    assert pretrained.best_f1 > scratch.best_f1 + 0.05, (pretrained.best_f1, scratch.best_f1)
