"""A small synthetic NER task: entity words from fixed lists inside random filler text.

Entities are recognisable from their characters and context (血压 is a Test, 高血压 a Disease), so a tiny model learns the task
in seconds; a model that does not learn scores near zero. Used by the training tests.
"""

from __future__ import annotations

import random
from pathlib import Path

from bertner.data.jsonl import write_windows
from bertner.fileio import write_json
from bertner.spans import Span, Window

LEXICON = {
    "Drug": ["二甲双胍", "胰岛素", "阿司匹林", "格列美脲"],
    "Disease": ["糖尿病", "高血压", "肾病", "冠心病"],
    "Test": ["肌酐", "HbA1c", "血压"],
}
FILLER = list("患者今日复诊自述良好无不适建议继续观察饮食控制运动每周次")


def make_window(rng: random.Random, index: int, prefix: str) -> Window:
    text, spans = "", []
    for _ in range(rng.randint(2, 4)):
        text += "".join(rng.choice(FILLER) for _ in range(rng.randint(1, 6)))
        label = rng.choice(sorted(LEXICON))
        word = rng.choice(LEXICON[label])
        spans.append(Span(len(text), len(text) + len(word), label))
        text += word
    text += "".join(rng.choice(FILLER) for _ in range(rng.randint(0, 4))) + "。"
    return Window(f"{prefix}{index}#0", f"{prefix}{index}", 0, text, spans)


def write_synthetic(folder: Path, n_train: int = 400, n_dev: int = 60, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_windows(folder / "train.jsonl", [make_window(rng, i, "t") for i in range(n_train)])
    write_windows(folder / "dev.jsonl", [make_window(rng, i, "d") for i in range(n_dev)])
    write_json(folder / "labels.json", {"labels": sorted(LEXICON)})
    return folder
