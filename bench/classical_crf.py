"""The classical baseline: a character CRF (CRFsuite), the model users would pick instead of bertner.

    python bench/classical_crf.py                  # Ruijin dev and MSRA test, 100 L-BFGS iterations
    python bench/classical_crf.py --corpus ruijin --iterations 20   # quicker

Features of each character (the usual recipe of CRF-based Chinese NER): the characters at -2..+2,
the character bigrams in that window, the character-type of -1, 0, +1 (CJK, digit, Latin,
punctuation, space, other) and its combination with the current character. L-BFGS with
L1 0.1 / L2 0.01, 100 iterations. Same split and same scoring as every bertner row
(`study_data.py`): Ruijin dev documents are tagged whole, scored by exact document spans and by
seqeval over characters; MSRA by seqeval on its official test set. Writes
`bench/results/classical_crf.json`.

Needs python-crfsuite (`pip install python-crfsuite`), a benchmark dependency only.
"""

from __future__ import annotations

import argparse
import json
import time
import unicodedata
from pathlib import Path

import common
import study_data

PAD = "<s>", "</s>"


def char_type(char: str) -> str:
    if char.isspace():
        return "S"
    if char.isdigit():
        return "D"
    if "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf":
        return "C"
    if char.isascii() and char.isalpha():
        return "L"
    if unicodedata.category(char).startswith("P"):
        return "P"
    return "O"


def features(text: str) -> list[list[str]]:
    chars = [PAD[0], PAD[0], *("<sp>" if c.isspace() else c for c in text), PAD[1], PAD[1]]
    types = ["B", "B", *map(char_type, text), "E", "E"]
    rows = []
    for i in range(2, len(chars) - 2):
        c = chars
        rows.append([
            "b", f"c-2={c[i-2]}", f"c-1={c[i-1]}", f"c0={c[i]}", f"c1={c[i+1]}", f"c2={c[i+2]}",
            f"b-2={c[i-2]}{c[i-1]}", f"b-1={c[i-1]}{c[i]}", f"b0={c[i]}{c[i+1]}", f"b1={c[i+1]}{c[i+2]}",
            f"t={types[i-1]}{types[i]}{types[i+1]}", f"tc={types[i]}{c[i]}",
        ])
    return rows


def train(windows, iterations: int, model_path: Path) -> float:
    import pycrfsuite

    from bertner.predict import char_tags

    trainer = pycrfsuite.Trainer(verbose=False)
    for window, tags in zip(windows, char_tags([w.text for w in windows], [w.spans for w in windows])):
        if window.text:
            trainer.append(features(window.text), tags)
    trainer.set_params({"c1": 0.1, "c2": 0.01, "max_iterations": iterations,
                        "feature.possible_transitions": True})
    start = time.perf_counter()
    trainer.train(str(model_path))
    return time.perf_counter() - start


def tag(model_path: Path, texts: list[str]) -> list[list]:
    import pycrfsuite

    from bertner.tags import tags_to_spans

    tagger = pycrfsuite.Tagger()
    tagger.open(str(model_path))
    return [tags_to_spans(tagger.tag(features(t))) if t else [] for t in texts]


def run_corpus(name: str, iterations: int, log=print) -> dict:
    from bertner.data.jsonl import read_windows

    data = study_data.ruijin() if name == "ruijin" else study_data.msra()
    windows = read_windows(data / "train.jsonl")
    model = common.scratch_dir("classical_crf") / f"{name}.crfsuite"
    started = time.perf_counter()
    train_seconds = train(windows, iterations, model)
    result = {"corpus": name, "iterations": iterations, "train_windows": len(windows),
              "train_seconds": round(train_seconds, 1)}
    if name == "ruijin":
        ids, texts, gold = study_data.gold_brat_documents(data / "dev-brat")
        predicted = tag(model, texts)
        result["dev_document"] = study_data.score_documents(ids, gold, predicted)
        result["dev_seqeval"] = study_data.score_windows(texts, gold, predicted)
        f1 = result["dev_document"]["micro"]["f1"]
    else:
        test = read_windows(data / "test.jsonl")
        predicted = tag(model, [w.text for w in test])
        result["test_seqeval"] = study_data.score_windows([w.text for w in test], [w.spans for w in test], predicted)
        f1 = result["test_seqeval"]["micro"]["f1"]
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name}: classical CRF F1 {f1:.4f}, trained in {train_seconds / 60:.1f} min ({iterations} iterations)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("ruijin", "msra", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    corpora = ("ruijin", "msra") if args.corpus == "both" else (args.corpus,)
    rows = {name: run_corpus(name, args.iterations) for name in corpora}
    previous = common.RESULTS / "classical_crf.json"
    if previous.exists():  # keep the other corpus's row from an earlier run
        for row in json.loads(previous.read_text(encoding="utf-8"))["rows"]:
            rows.setdefault(row["corpus"], row)
    result = {"name": "classical_crf", "machine": common.machine_info(), "rows": list(rows.values())}
    common.write_result("classical_crf", result)


if __name__ == "__main__":
    main()
