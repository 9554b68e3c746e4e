"""`--softword`: jieba's segmentation as B/M/E/S tags, exactly jieba's; runs that train, reload and predict the same."""

from __future__ import annotations

import json
import logging
import random
import shutil

import pytest
from cli_helpers import assert_one_line_error, invoke, without_module

from bertner.config import TrainConfig
from bertner.data.jsonl import write_windows
from bertner.engine.trainer import train
from bertner.fileio import write_json
from bertner.predict import Predictor
from bertner.spans import Span, Window

jieba = pytest.importorskip("jieba")
from bertner.softword import TAGS, Segmenter  # noqa: E402

SENTENCES = [
    "我来到北京清华大学",
    "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "患者3天前无明显诱因出现发热，体温最高39.5℃，伴咳嗽、咳痰。",
    "2型糖尿病患者口服二甲双胍500mg bid，HbA1c 7.8%。",
    "iPhone 15和MacBook Pro在上海发布\r\n会上C++与C#开发者A-B测试",
    "  全角　空格，ＡＢＣ１２３和半角abc123混排；末尾\n",
    "",
    "\u9fd5\u9fd6丂龥𠀀\ud800",  # the edge of jieba's han range, a character outside it, a lone surrogate
]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def jieba_tags(text: str) -> str:
    tokenizer = jieba_tags.tokenizer
    tags = ""
    for word in tokenizer.cut(text, HMM=False):
        tags += "S" if len(word) == 1 else "B" + "M" * (len(word) - 2) + "E"
    return tags


def test_tags_are_jiebas_segmentation(segmenter):
    jieba.setLogLevel(logging.WARNING)
    jieba_tags.tokenizer = jieba.Tokenizer()  # its own default dictionary, whatever the global one holds
    rng = random.Random(0)
    pool = "中国人民银行北京上海的了是在有我和研究生命起源abcXYZ0123+#&._%-，。 \r\n\t　Ａ１·é丂"
    texts = SENTENCES + ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(1500)]
    tagged = segmenter.tags(texts)  # all in one call: no text's segmentation leaks into the next
    assert len(tagged) == len(texts)
    for text, tags in zip(texts, tagged):
        assert len(tags) == len(text)
        assert "".join(TAGS[t] for t in tags) == jieba_tags(text), text
    assert "".join(TAGS[t] for t in tagged[0]) == "SBEBEBMME"  # 我 / 来到 / 北京 / 清华大学


# ----------------------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def softword_data(tmp_path_factory):
    """Place names (entities) after 到 and 在: a few dozen windows, enough for the bilstm to learn them."""
    folder = tmp_path_factory.mktemp("softdata")
    rng = random.Random(0)
    places = ["北京", "上海", "杭州", "南京", "广州", "深圳", "成都", "西安"]
    verbs = ["我们明天到", "他昨天在", "小王已经到了", "会议将在"]
    tails = ["开会。", "参加比赛了。", "看望朋友", "出差"]

    def window(i: int, prefix: str) -> Window:
        verb, place, tail = rng.choice(verbs), rng.choice(places), rng.choice(tails)
        text = verb + place + tail
        return Window(f"{prefix}{i}#0", f"{prefix}{i}", 0, text, [Span(len(verb), len(verb) + len(place), "LOC")])

    write_windows(folder / "train.jsonl", [window(i, "t") for i in range(120)])
    write_windows(folder / "dev.jsonl", [window(i, "d") for i in range(30)])
    write_json(folder / "labels.json", {"labels": ["LOC"]})
    return folder


def softword_config(data, output, **overrides) -> TrainConfig:
    values = dict(data=str(data), output=str(output), model="bilstm", crf=True, epochs=6, batch_size=8, rnn_hidden=32,
                  char_dim=16, softword=True, seed=1, num_threads=1, log_every=50)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def softword_run(softword_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "softword"
    return run, train(softword_config(softword_data, run))


def test_a_softword_run_predicts_and_evaluates_the_same_after_reload(softword_run, softword_data, tmp_path):
    run, summary = softword_run
    assert summary.best_f1 > 0.9
    assert json.loads((run / "softword.json").read_text(encoding="utf-8"))["jieba_version"] == jieba.__version__
    loaded = Predictor.from_run(run, device="cpu")
    assert loaded.run.model.softword is not None and loaded.run.model.extras_into_encoder
    text = "我们明天到上海开会。小王已经到了成都"
    before = loaded.predict_text(text)
    assert [e.text for e in before] == ["上海", "成都"]
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    assert Predictor.from_run(moved, device="cpu").predict_text(text) == before
    result = invoke("evaluate", moved, softword_data / "dev.jsonl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["micro"]["f1"] == pytest.approx(summary.best_f1, abs=1e-9)
    result = invoke("export", moved, tmp_path / "hf")
    assert_one_line_error(result, "--softword", "bertner predict")


def test_softword_joins_a_transformer_output_and_the_lexicon(softword_data, tmp_path):
    run = tmp_path / "tiny"
    train(softword_config(softword_data, run, model="tiny", tiny_hidden=32, tiny_heads=2, epochs=1))
    model = Predictor.from_run(run, device="cpu").run.model
    assert not model.extras_into_encoder and model.classifier.in_features == 32 + model.softword.out_dim
    terms = tmp_path / "places.txt"
    terms.write_text("北京\n上海\n", encoding="utf-8")
    both = tmp_path / "both"
    train(softword_config(softword_data, both, lexicon=[str(terms)], lexicon_dim=8, epochs=1))
    encoder = Predictor.from_run(both, device="cpu").run.model.encoder
    assert encoder.config.extra_dim == 8 + 16


def test_a_different_jieba_version_is_a_warning(softword_run, tmp_path, caplog):
    run, _ = softword_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    write_json(copy / "softword.json", {"segmenter": "jieba.cut, HMM=False", "jieba_version": "0.39"})
    with caplog.at_level(logging.WARNING, logger="bertner"):
        Predictor.from_run(copy, device="cpu")
    assert any("jieba 0.39" in r.getMessage() and jieba.__version__ in r.getMessage() for r in caplog.records)


def test_without_jieba_training_and_predicting_are_one_line(softword_run, softword_data, tmp_path, monkeypatch):
    run, _ = softword_run
    without_module(monkeypatch, "jieba")
    out = tmp_path / "run"
    result = invoke("train", softword_data, "--model", "bilstm", "--softword", "--epochs", 1, "-o", out)
    assert_one_line_error(result, "--softword", 'pip install "bertner[zh]"')
    assert not out.exists()
    note = tmp_path / "note.txt"
    note.write_text("我们明天到上海开会。", encoding="utf-8")
    result = invoke("predict", run, note, "--format", "jsonl")
    assert_one_line_error(result, "trained with --softword", 'pip install "bertner[zh]"')


def test_subword_alignment_is_refused(softword_data, tmp_path):
    result = invoke("train", softword_data, "--alignment", "subword", "--softword", "-o", tmp_path / "r")
    assert_one_line_error(result, "--softword", "char alignment")
