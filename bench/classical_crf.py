"""The classical baseline: a character CRF (CRFsuite), the model users would pick instead of bertner.

    python bench/classical_crf.py                  # Ruijin dev and MSRA test, 100 L-BFGS iterations
    python bench/classical_crf.py --corpus ruijin --iterations 20   # quicker
    python bench/classical_crf.py --corpus msra --lexicon jieba     # with dictionary-match features

Features of each character (the usual recipe of CRF-based Chinese NER): the characters at -2..+2,
the character bigrams in that window, the character-type of -1, 0, +1 (CJK, digit, Latin,
punctuation, space, other) and its combination with the current character. L-BFGS with
L1 0.1 / L2 0.01, 100 iterations. Same split and same scoring as every bertner row
(`study_data.py`): Ruijin dev documents are tagged whole, scored by exact document spans and by
seqeval over characters; MSRA by seqeval on its official test set. Writes
`bench/results/classical_crf.json`.

With `--lexicon SOURCE` (repeatable; the sources `bertner train --lexicon` takes, read by the same
code) each character also gets what bertner's lexicon features hold, as CRFsuite attributes: for the
character and its neighbours at -1 and +1, "begins / is inside / ends / is a single-character
term of type T". So the classical baseline gets the same dictionaries as the neural rows.

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


def lexicon_marks(text: str, matcher) -> list[list[str]]:
    """Per character, its lexicon marks `B:disease`, `M:word`, ... (set and type of each term around it)."""
    from bertner.lexicon import SETS

    types = matcher.lexicon.types
    marks: list[set[str]] = [set() for _ in text]
    slots = matcher.text_features([text])[0]
    for position, entry, kind in zip(slots.positions.tolist(), slots.entries.tolist(), slots.sets.tolist()):
        marks[position].add(f"{SETS[kind]}:{types[entry - 1]}")
    return [sorted(m) for m in marks]


def features(text: str, matcher=None) -> list[list[str]]:
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
    if matcher is not None:
        marks = lexicon_marks(text, matcher)
        for i, row in enumerate(rows):
            for offset in (-1, 0, 1):
                if 0 <= i + offset < len(text):
                    row.extend(f"lx{offset}={mark}" for mark in marks[i + offset])
    return rows


def train(windows, iterations: int, model_path: Path, matcher=None) -> float:
    import pycrfsuite

    from bertner.predict import char_tags

    trainer = pycrfsuite.Trainer(verbose=False)
    for window, tags in zip(windows, char_tags([w.text for w in windows], [w.spans for w in windows])):
        if window.text:
            trainer.append(features(window.text, matcher), tags)
    trainer.set_params({"c1": 0.1, "c2": 0.01, "max_iterations": iterations,
                        "feature.possible_transitions": True})
    # Processor time of this single-threaded trainer: the figure holds even when other work shares the machine.
    start = time.process_time()
    trainer.train(str(model_path))
    return time.process_time() - start


def tag(model_path: Path, texts: list[str], matcher=None) -> list[list]:
    import pycrfsuite

    from bertner.tags import tags_to_spans

    tagger = pycrfsuite.Tagger()
    tagger.open(str(model_path))
    return [tags_to_spans(tagger.tag(features(t, matcher))) if t else [] for t in texts]


def run_corpus(name: str, iterations: int, lexicon: list[str], log=print) -> dict:
    from bertner.data.jsonl import read_windows
    from bertner.lexicon import LexiconMatcher, read_lexicon

    data = study_data.ruijin() if name == "ruijin" else study_data.msra()
    windows = read_windows(data / "train.jsonl")
    matcher = None
    if lexicon:
        words = read_lexicon(lexicon)
        matcher = LexiconMatcher(words)
        words.fit(matcher.entry_counts(matcher.match([w.text for w in windows])))  # ranked as bertner ranks them
    label = "+".join(Path(source).name for source in lexicon)
    model = common.scratch_dir("classical_crf") / f"{name}{'-' + label if label else ''}.crfsuite"
    started = time.perf_counter()
    train_seconds = train(windows, iterations, model, matcher)
    result = {"corpus": name, "lexicon": label, "iterations": iterations, "train_windows": len(windows),
              "train_seconds": round(train_seconds, 1)}
    if name == "ruijin":
        ids, texts, gold = study_data.gold_brat_documents(data / "dev-brat")
        predicted = tag(model, texts, matcher)
        result["dev_document"] = study_data.score_documents(ids, gold, predicted)
        result["dev_seqeval"] = study_data.score_windows(texts, gold, predicted)
        f1 = result["dev_document"]["micro"]["f1"]
    else:
        test = read_windows(data / "test.jsonl")
        predicted = tag(model, [w.text for w in test], matcher)
        result["test_seqeval"] = study_data.score_windows([w.text for w in test], [w.spans for w in test], predicted)
        f1 = result["test_seqeval"]["micro"]["f1"]
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    log(f"{name}{' with ' + label if label else ''}: classical CRF F1 {f1:.4f}, trained in "
        f"{train_seconds / 60:.1f} processor minutes ({iterations} iterations)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("ruijin", "msra", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--lexicon", action="append", default=[], metavar="SOURCE",
                        help="dictionary-match features from this source (as bertner train --lexicon); repeatable")
    args = parser.parse_args()
    corpora = ("ruijin", "msra") if args.corpus == "both" else (args.corpus,)
    rows = {}
    for name in corpora:
        row = run_corpus(name, args.iterations, args.lexicon)
        rows[(name, row["lexicon"])] = row
    previous = common.RESULTS / "classical_crf.json"
    if previous.exists():  # keep the rows of other corpora and lexicons from earlier runs
        for row in json.loads(previous.read_text(encoding="utf-8"))["rows"]:
            rows.setdefault((row["corpus"], row.get("lexicon", "")), row)
    result = {"name": "classical_crf", "machine": common.machine_info(), "rows": list(rows.values())}
    common.write_result("classical_crf", result)


if __name__ == "__main__":
    main()
