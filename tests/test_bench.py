"""Smoke test of the benchmarks: they import, the smallest training comparison runs, its JSON is complete."""

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import RUIJIN_TRAIN, need

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


def test_bench_modules_import():
    import common  # noqa: F401
    import gpu_bench  # noqa: F401
    import predict_memory
    import predict_throughput  # noqa: F401
    import run  # noqa: F401
    import scaling

    assert scaling.line_fit([1.0, 2.0, 4.0], [2.0, 4.0, 8.0])[1] == pytest.approx(2.0)
    assert scaling.loglog_slope([1.0, 2.0, 4.0], [3.0, 6.0, 12.0]) == pytest.approx(1.0)
    assert common.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 2.0]) == pytest.approx(2.0)
    assert predict_memory.TARGET_RATIO == 1.3


def test_predict_memory_inputs_repeat_the_texts_to_the_size(tmp_path):
    import predict_memory

    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("患者" * 50, encoding="utf-8")  # 300 bytes
    (source / "b.txt").write_text("x" * 100, encoding="utf-8")
    made = predict_memory.build_inputs(source, tmp_path / "inputs", 1000)
    assert made == {"bytes": 1100, "characters": 500, "documents": 5}  # a, b, a, b, a: stops at 1,000 bytes or more
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir())[:3] == ["r0_a.txt", "r0_b.txt", "r1_a.txt"]


def test_smallest_training_comparison_writes_ratios(tmp_path):
    need(RUIJIN_TRAIN)
    import train_throughput

    result = train_throughput.run(smoke=True, threads=1, out_dir=tmp_path, log=lambda *_: None)
    saved = json.loads((tmp_path / "train_throughput.json").read_text())
    assert saved["rows"] and saved["machine"]["loaded_machine"]
    for key in ("cpu", "cores", "torch", "date"):
        assert key in saved["machine"]
    for row in result["rows"]:
        for key in ("speedup", "bertner_tokens_per_s", "baseline_tokens_per_s", "bertner_f1", "baseline_f1", "f1_diff"):
            assert key in row
        assert row["speedup"] > 0 and row["bertner_tokens_per_s"] > 0 and row["baseline_tokens_per_s"] > 0
        assert 0 <= row["bertner_f1"] <= 1 and 0 <= row["baseline_f1"] <= 1
    assert set(saved["target"]) == {f"{r['encoder']}/{r['variant']}" for r in saved["rows"]}


def test_baseline_crf_sees_only_the_text_tokens():
    """The baseline's CRF runs over t1..tn of `[CLS] t1..tn [SEP] pad`, like bertner's."""
    import train_throughput
    from torch import nn

    head = train_throughput.EncoderHead(nn.Identity(), 4, num_tags=3, crf=True, gru=False)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, 1, 2, 0, -100], [-100, 2, 0, -100, -100]])
    logits = torch.zeros(2, 5, 3)
    for row, tags in enumerate(([1, 2, 0], [2, 0])):
        for i, tag in enumerate(tags):
            logits[row, i + 1, tag] = 5.0
    head.logits = lambda *args, **kwargs: logits
    loss = head(None, attention_mask, labels)
    assert head.predict(None, attention_mask) == [[0, 1, 2, 0], [0, 2, 0]]  # a placeholder at [CLS]

    logits[:, 0] = torch.tensor([0.0, 9.0, -9.0])  # [CLS], [SEP] and padding must not count
    logits[0, 4] = logits[1, 3] = logits[1, 4] = torch.tensor([-9.0, 0.0, 9.0])
    assert head(None, attention_mask, labels).item() == pytest.approx(loss.item())
    assert head.predict(None, attention_mask) == [[0, 1, 2, 0], [0, 2, 0]]
    total = -head.crf(logits[:, 1:-1], labels[:, 1:-1].clamp(min=0), attention_mask[:, 2:].bool(), reduction="sum")
    assert loss.item() == pytest.approx(total.item() / 5)  # the mean per text token


def test_classical_crf_gets_the_lexicon_as_attributes():
    """The fair baseline: the same dictionaries as `--lexicon`, as begins/inside/ends/single marks at -1..+1."""
    import classical_crf
    import lexicon_speed  # noqa: F401

    from bertner.lexicon import Lexicon, LexiconMatcher

    lexicon = Lexicon([], [], [])
    for term, kind in (("糖尿病", "disease"), ("尿", "word")):
        lexicon.add(term, kind, 1.0)
    matcher = LexiconMatcher(lexicon)
    plain, marked = classical_crf.features("患糖尿病", None), classical_crf.features("患糖尿病", matcher)
    extra = [sorted(set(m) - set(p)) for p, m in zip(plain, marked)]
    assert extra == [
        ["lx1=B:disease"],
        ["lx0=B:disease", "lx1=M:disease", "lx1=S:word"],
        ["lx-1=B:disease", "lx0=M:disease", "lx0=S:word", "lx1=E:disease"],
        ["lx-1=M:disease", "lx-1=S:word", "lx0=E:disease"],
    ]
