"""The two corpora of the quality table, prepared once outside the repo, and their scoring.

- Ruijin: `bertner preprocess ../shared/data/ruijin/train --dev-ratio 0.2` (231 / 60 documents,
  split by article, seed 13), plus a brat folder holding only the 60 dev documents, so that
  document-level exact-span F1 is measured on whole held-out articles as `bertner evaluate`
  does it (discontinuous entities merged, the preprocess default).
- Ruijin, selecting elsewhere (`ruijin_selection`): the same 231 training articles split again, so that a
  run can pick its checkpoint on articles that do not score it.
- MSRA: its official train / test files; preprocess carves a dev split (10% of the training
  sentences) for model selection, and the test set is only ever used for the final score.

`score_documents` and `score_windows` are the one scoring of every row, neural or classical:
document-level exact spans (`span_scores`) and seqeval strict entity F1 over characters.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import common

MSRA = common.SHARED / "data" / "msra"


def _preprocess(source: Path, out: Path, *args: str) -> Path:
    if (out / "train.jsonl").exists():
        return out
    if not source.exists():
        raise SystemExit(f"{source} is not here; this benchmark needs ../shared")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "bertner", "preprocess", str(source), "-o", str(tmp), "--force", *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=str(common.ROOT))
    tmp.replace(out)
    return out


def _windows(max_chars: int | None) -> tuple[str, list[str]]:
    """Folder-name suffix and preprocess flags for a window size other than preprocess's default."""
    return ("", []) if max_chars is None else (f"-{max_chars}", ["--max-chars", str(max_chars)])


def ruijin(max_chars: int | None = None) -> Path:
    """Preprocessed Ruijin (train.jsonl, dev.jsonl) and, beside them, `dev-brat/` with the dev articles."""
    suffix, flags = _windows(max_chars)
    out = _preprocess(common.RUIJIN_TRAIN, common.CACHE / f"study-ruijin{suffix}", "--dev-ratio", "0.2", *flags)
    _copy_articles(out / "dev.jsonl", out / "dev-brat")
    return out


def _copy_articles(windows: Path, folder: Path) -> Path:
    """The Ruijin brat articles (.txt + .ann) that a preprocessed .jsonl's windows come from, copied into `folder`."""
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for doc in sorted({json.loads(line)["doc"] for line in windows.open(encoding="utf-8")}):
            for suffix in (".txt", ".ann"):
                shutil.copy(common.RUIJIN_TRAIN / f"{doc}{suffix}", tmp / f"{doc}{suffix}")
        tmp.replace(folder)
    return folder


def ruijin_selection() -> Path:
    """Ruijin's 231 training articles preprocessed again, 10% of them (by article) as the dev split.

    A run trained here picks its checkpoint on articles it neither trains on nor is scored on: the 60
    dev articles of `ruijin()` score it, as they score every row. It trains on 205 articles instead of 231.
    """
    out = common.CACHE / "study-ruijin-selection"
    if (out / "train.jsonl").exists():
        return out
    articles = _copy_articles(ruijin() / "train.jsonl", common.CACHE / "study-ruijin-train-articles")
    return _preprocess(articles, out, "--dev-ratio", "0.1")


def msra(max_chars: int | None = None) -> Path:
    """Preprocessed MSRA: train.jsonl, dev.jsonl (carved from train) and the official test.jsonl."""
    suffix, flags = _windows(max_chars)
    return _preprocess(MSRA, common.CACHE / f"study-msra{suffix}", "--dev-ratio", "0.1", "--repair-tags", *flags)


def score_windows(texts: list[str], gold: list[list], predicted: list[list]) -> dict:
    """seqeval strict entity scores over characters (what `bertner evaluate DATA.jsonl` reports)."""
    from bertner.metrics import entity_scores
    from bertner.predict import char_tags

    return entity_scores(char_tags(texts, gold), char_tags(texts, predicted)).to_dict()


def score_documents(ids: list[str], gold: list[list], predicted: list[list]) -> dict:
    """Exact (document, start, end, type) spans (what `bertner evaluate RUN BRAT_FOLDER` reports as `document`)."""
    from bertner.metrics import span_scores

    gold_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, gold) for s in spans]
    pred_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, predicted) for s in spans]
    return span_scores(gold_set, pred_set).to_dict()


def gold_brat_documents(folder: Path) -> tuple[list[str], list[str], list[list]]:
    """Ids, texts and gold spans of a brat folder's documents (discontinuous entities merged)."""
    from bertner.evaluate import gold_documents
    from bertner.spans import Span

    documents = gold_documents(folder, "brat", "merge")
    spans = [sorted(Span(e.start, e.end, e.label) for e in d.entities) for d in documents]
    return [d.id for d in documents], [d.text for d in documents], spans


if __name__ == "__main__":
    print(ruijin())
    print(msra())
