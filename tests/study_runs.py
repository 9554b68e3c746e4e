"""Hand-made runs with dev predictions whose per-document outcomes are known, for significance and report tests."""

from __future__ import annotations

import random
from pathlib import Path

from test_compare import fake_run

from bertner.runs import RunDir
from bertner.spans import Span, Window

LABELS = ("Disease", "Drug")
ENTITIES_PER_DOC = 4


def dev_windows(documents: int = 30, seed: int = 0) -> list[Window]:
    """Documents of four entities each, written out as text so the report has something to show."""
    rng = random.Random(seed)
    windows = []
    for d in range(documents):
        text, spans = "", []
        for k in range(ENTITIES_PER_DOC):
            text += rng.choice(["患者有", "服用", "确诊 <b>", "无 & "])
            name = rng.choice(["糖尿病", "二甲双胍", "高血压", "胰岛素"])
            spans.append(Span(len(text), len(text) + len(name), LABELS[k % 2]))
            text += name + "，\n"
        windows.append(Window(f"doc{d}#0", f"doc{d}", 0, text, spans))
    return windows


def hits_per_document(documents: int = 30, seed: int = 0) -> list[int]:
    """How many of a document's entities the baseline finds: 0 to 3, so a better variant can find one more."""
    rng = random.Random(seed)
    return [rng.randint(0, ENTITIES_PER_DOC - 1) for _ in range(documents)]


def predictions(windows: list[Window], hits: list[int]) -> list[list[Span]]:
    """The first `hits[i]` gold spans of each document found; the rest missed; one spurious span each."""
    out = []
    for window, k in zip(windows, hits):
        spurious = Span(0, 1, "Drug")
        out.append(list(window.spans[:k]) + ([spurious] if spurious not in window.spans else []))
    return out


def study_run(folder: Path, windows: list[Window], hits: list[int] | None, f1: float, crf: bool = False,
              crf_lr_mult: float = 1.0, seed: int = 1, **settings) -> Path:
    """A finished run (bertner.compare reads it) with dev_predictions.jsonl unless `hits` is None; `settings` go to
    `fake_run` (data, train_sha, ...)."""
    fake_run(folder, crf=crf, crf_lr_mult=crf_lr_mult, seed=seed, f1=f1, **settings)
    if hits is not None:
        RunDir(folder).write_dev_predictions(windows, predictions(windows, hits))
    return folder
