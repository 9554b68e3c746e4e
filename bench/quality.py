"""The quality table: every model under the same wall-clock budget on this CPU, on Ruijin and MSRA.

    python bench/quality.py                          # every row, both corpora (many hours on 2 cores)
    python bench/quality.py --corpus ruijin --rows bilstm-crf,albert-crf --seeds 1
    python bench/quality.py --table                  # print the table from the runs done so far

Each neural row is `bertner train DATA --time-budget MINUTES --seed S` with the row's flags and
nothing else (the defaults are the measured recipes), one run per seed, trained one after
another on the otherwise idle machine. Scores use `study_data.py` (the same as the classical
CRF's, `classical_crf.py`): Ruijin on the 60 dev articles, tagged whole by `Predictor.predict`
(document-level exact spans, and seqeval over characters); MSRA by seqeval on the official test
set. Finished runs are kept under $TMPDIR/bertner-bench/quality and skipped when run again.
Writes `bench/results/quality.json`.

    python bench/quality.py --ensembles              # score the ensembles of the runs finished so far

Ensembles (`ENSEMBLES`, `--ensemble`) train nothing: each seed joins finished runs, once all of them
are there, and is listed beside its members' own scores in `bench/results/quality_ensembles.json`
(written by every call; `--ensembles` writes only that file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
import study_data

ALBERT = str(common.ALBERT_TINY)
HUATUO = str(common.SHARED / "lexicons" / "huatuo")  # 55k Chinese medical terms in five typed files
ROWS: dict[str, tuple[str, list[str]]] = {
    # name: (what the table calls it, `bertner train` flags)
    "bilstm-crf": ("bilstm + CRF", ["--model", "bilstm", "--crf"]),
    "bilstm-crf-init": ("bilstm + CRF, ALBERT-tiny character vectors",
                        ["--model", "bilstm", "--crf", "--init-embeddings", ALBERT]),
    "albert-softmax": ("ALBERT-tiny softmax", ["--model", ALBERT]),
    "albert-crf": ("ALBERT-tiny + CRF", ["--model", ALBERT, "--crf"]),
    "albert-gru-crf": ("ALBERT-tiny + GRU + CRF", ["--model", ALBERT, "--gru", "--crf"]),
    "tiny-crf": ("tiny (2-layer BERT from scratch) + CRF", ["--model", "tiny", "--crf"]),
    # the 12-minute screens' best ALBERT-tiny recipe (README, "Recipe screens"), confirmed at the table's budget
    "albert-crf-short": ("ALBERT-tiny + CRF, 128-character windows, batch 8",
                         ["--model", ALBERT, "--crf", "--batch-size", "8"]),
    # issue 21: dictionaries as SoftLexicon features
    "bilstm-crf-jieba": ("bilstm + CRF, --lexicon jieba", ["--model", "bilstm", "--crf", "--lexicon", "jieba"]),
    "bilstm-crf-huatuo": ("bilstm + CRF, --lexicon huatuo (medical)", ["--model", "bilstm", "--crf", "--lexicon", HUATUO]),
    "bilstm-crf-jieba-huatuo": ("bilstm + CRF, --lexicon jieba --lexicon huatuo",
                                ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--lexicon", HUATUO]),
    "bilstm-crf-lac": ("bilstm + CRF, --init-embeddings jieba-lac", ["--model", "bilstm", "--crf", "--init-embeddings", "jieba-lac"]),
    "bilstm-crf-jieba-lac": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac",
                             ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac"]),
    "bilstm-crf-jieba-lac-wide": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac --lexicon-dim 264",
                                  ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac",
                                   "--lexicon-dim", "264"]),
    "bilstm-crf-jieba-lac-swa": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac --swa 0.25",
                                 ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac",
                                  "--swa", "0.25"]),
    "bilstm-crf-jieba-lac-wide-swa": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac --lexicon-dim 264 --swa 0.25",
                                      ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac",
                                       "--lexicon-dim", "264", "--swa", "0.25"]),
    "bilstm-crf-swa": ("bilstm + CRF, --swa 0.25", ["--model", "bilstm", "--crf", "--swa", "0.25"]),
    # issue 21 item 2: `bertner embeddings` vectors of the corpus's own training text (+ Ruijin's unlabeled text)
    "bilstm-crf-w2v": ("bilstm + CRF, bertner embeddings vectors, bigrams 128",
                       ["--model", "bilstm", "--crf", "--init-embeddings", "{vectors}", "--bigram-dim", "128"]),
    "bilstm-crf-jieba-w2v": ("bilstm + CRF, --lexicon jieba, bertner embeddings vectors (words, bigrams 128)",
                                 ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "{vectors}",
                                  "--bigram-dim", "128"]),
    "bilstm-crf-jieba-huatuo-lac": ("bilstm + CRF, --lexicon jieba --lexicon huatuo --init-embeddings jieba-lac",
                                    ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--lexicon", HUATUO,
                                     "--init-embeddings", "jieba-lac"]),
    # Dev F1 on Ruijin is flat after ~11 of the 25 minutes' 22-24 epochs: four half-budget runs, two after each
    # other on each core, fit the same wall clock as an ensemble of two full ones (ENSEMBLES below).
    "bilstm-crf-half": ("bilstm + CRF, half the budget", ["--model", "bilstm", "--crf"]),
    "bilstm-crf-2layers": ("bilstm + CRF, two stacked layers", ["--model", "bilstm", "--crf", "--rnn-layers", "2"]),
    # The plain bilstm's dev loss rises after ~11 of its 22-29 epochs (train loss 0.02 against dev 0.08): more
    # dropout on the embeddings (--rnn-dropout, 0.2) and before the classifier (--dropout, 0.1) for the rest.
    "bilstm-crf-drop35": ("bilstm + CRF, dropout 0.35 (embeddings and classifier)",
                          ["--model", "bilstm", "--crf", "--rnn-dropout", "0.35", "--dropout", "0.35"]),
    "bilstm-crf-drop5": ("bilstm + CRF, dropout 0.5 (embeddings and classifier)",
                         ["--model", "bilstm", "--crf", "--rnn-dropout", "0.5", "--dropout", "0.5"]),
    "bilstm-crf-jieba-lac-drop35": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac, dropout 0.35",
                                    ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac",
                                     "--rnn-dropout", "0.35", "--dropout", "0.35"]),
    # Ruijin only: the checkpoint picked on 10% of the training articles (study_data.ruijin_selection) instead of
    # windows of the 60 dev articles that score the run (SELECT_ELSEWHERE below).
    "bilstm-crf-select-elsewhere": ("bilstm + CRF, checkpoint picked on held-out training articles",
                                    ["--model", "bilstm", "--crf"]),
    "bilstm-crf-drop35-select-elsewhere": ("bilstm + CRF, dropout 0.35, checkpoint picked on held-out training articles",
                                           ["--model", "bilstm", "--crf", "--rnn-dropout", "0.35", "--dropout", "0.35"]),
    # issue 21, item 3: jieba's segmentation as each character's B/M/E/S tag (--softword)
    "bilstm-crf-softword": ("bilstm + CRF, --softword", ["--model", "bilstm", "--crf", "--softword"]),
    "bilstm-crf-jieba-lac-softword": ("bilstm + CRF, --lexicon jieba --init-embeddings jieba-lac --softword",
                                      ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--init-embeddings", "jieba-lac",
                                       "--softword"]),
    "bilstm-crf-jieba-huatuo-softword": ("bilstm + CRF, --lexicon jieba --lexicon huatuo --softword",
                                         ["--model", "bilstm", "--crf", "--lexicon", "jieba", "--lexicon", HUATUO,
                                          "--softword"]),
}
# issue 21, item 5: ensembles of finished runs (`--ensemble`), scored without training anything. A member is
# (row, a, b): ensemble seed s joins that row's run of seed a*s + b, so two seeds of one row pair as 1+2, 3+4 and
# no run serves two samples. The members train side by side, one per core: an ensemble of two takes the table's
# 25 minutes of wall clock and both of the machine's cores.
ENSEMBLES: dict[str, tuple[str, list[tuple[str, int, int]]]] = {
    "ens-bilstm-albert": ("bilstm + CRF and ALBERT-tiny + CRF (128-character windows, batch 8), --ensemble",
                          [("bilstm-crf", 1, 0), ("albert-crf-short", 1, 0)]),
    "ens-bilstm-bilstm": ("two bilstm + CRF seeds, --ensemble", [("bilstm-crf", 2, -1), ("bilstm-crf", 2, 0)]),
    "ens-jieba-lac-twice": ("two bilstm + CRF --lexicon jieba --init-embeddings jieba-lac seeds, --ensemble",
                            [("bilstm-crf-jieba-lac", 2, -1), ("bilstm-crf-jieba-lac", 2, 0)]),
    "ens-jieba-lac-w2v": ("bilstm + CRF --lexicon jieba with LAC's vectors and with bertner embeddings vectors, --ensemble",
                          [("bilstm-crf-jieba-lac", 1, 0), ("bilstm-crf-jieba-w2v", 1, 0)]),
    "ens-2layers-twice": ("two bilstm + CRF --rnn-layers 2 seeds, --ensemble",
                          [("bilstm-crf-2layers", 2, -1), ("bilstm-crf-2layers", 2, 0)]),
    "ens-dropout": ("bilstm + CRF with dropout 0.35 and with 0.5, --ensemble",
                    [("bilstm-crf-drop35", 1, 0), ("bilstm-crf-drop5", 1, 0)]),
    "ens-drop35-twice": ("two bilstm + CRF seeds with dropout 0.35, --ensemble",
                         [("bilstm-crf-drop35", 2, -1), ("bilstm-crf-drop35", 2, 0)]),
    "ens-drop5-twice": ("two bilstm + CRF seeds with dropout 0.5, --ensemble",
                        [("bilstm-crf-drop5", 2, -1), ("bilstm-crf-drop5", 2, 0)]),
    "ens-jieba-lac-drop35-w2v": ("bilstm + CRF --lexicon jieba with LAC's vectors and dropout 0.35, and with bertner "
                                 "embeddings vectors, --ensemble",
                                 [("bilstm-crf-jieba-lac-drop35", 1, 0), ("bilstm-crf-jieba-w2v", 1, 0)]),
    "ens-select-elsewhere-twice": ("two bilstm + CRF seeds, checkpoints picked on held-out training articles, --ensemble",
                                   [("bilstm-crf-select-elsewhere", 2, -1), ("bilstm-crf-select-elsewhere", 2, 0)]),
    "ens-drop35-select-elsewhere-twice": ("two bilstm + CRF seeds with dropout 0.35, checkpoints picked on held-out "
                                          "training articles, --ensemble",
                                          [("bilstm-crf-drop35-select-elsewhere", 2, -1),
                                           ("bilstm-crf-drop35-select-elsewhere", 2, 0)]),
    "ens-bilstm-four-half": ("four bilstm + CRF seeds of half the budget, two after each other on each core, --ensemble",
                             [("bilstm-crf-half", 4, b) for b in (-3, -2, -1, 0)]),
}
WINDOW_CHARS = {"albert-crf-short": 128}  # rows trained on windows other than preprocess's default (256)
BUDGET_SHARE = {"bilstm-crf-half": 0.5}  # rows trained for a share of --minutes
SELECT_ELSEWHERE = {"bilstm-crf-select-elsewhere", "bilstm-crf-drop35-select-elsewhere"}  # Ruijin rows trained on
# study_data.ruijin_selection(); they are scored like every other row
OUT = common.CACHE / "quality"


def data_dir(corpus: str, max_chars: int | None = None) -> Path:
    return study_data.ruijin(max_chars) if corpus == "ruijin" else study_data.msra(max_chars)


def vectors(corpus: str, log=print) -> Path:
    """`bertner embeddings` of the corpus's training text (Ruijin: + its unlabeled text), with its rows' dictionaries."""
    out = common.CACHE / f"vectors-{corpus}.txt"
    if not out.exists():
        raw = [str(data_dir(corpus) / "train.jsonl")]
        lexicons = ["--lexicon", "jieba"]
        if corpus == "ruijin":
            raw.append(str(common.SHARED / "data" / "ruijin" / "unlabeled"))
            lexicons += ["--lexicon", HUATUO]
        cmd = [sys.executable, "-m", "bertner", "embeddings", *raw, *lexicons, "--workers", "1", "--seed", "1", "-o", str(out)]
        log(f"{corpus} vectors: {' '.join(cmd[3:])}")
        subprocess.run(cmd, check=True, cwd=str(common.ROOT))
    return out


def train_run(corpus: str, row: str, seed: int, minutes: float, threads: int, log=print) -> Path:
    run = OUT / corpus / f"{row}-seed{seed}"
    if (run / "summary.json").exists():
        return run
    flags = [str(vectors(corpus, log)) if flag == "{vectors}" else flag for flag in ROWS[row][1]]
    data = study_data.ruijin_selection() if row in SELECT_ELSEWHERE else data_dir(corpus, WINDOW_CHARS.get(row))
    cmd = [sys.executable, "-m", "bertner", "train", str(data), *flags,
           "--time-budget", str(minutes * BUDGET_SHARE.get(row, 1)), "--seed", str(seed), "-o", str(run), "--force"]
    if threads:
        cmd += ["--num-threads", str(threads)]
    log(f"{corpus} {row} seed {seed}: {' '.join(cmd[3:])}")
    with open(OUT / corpus / f"{row}-seed{seed}.log", "w", encoding="utf-8") as handle:
        subprocess.run(cmd, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=str(common.ROOT))
    return run


def score_predictor(corpus: str, predictor) -> dict:
    """A predictor's scores on the held-out data, and how long it took to tag them (characters/s)."""
    from bertner.data.jsonl import read_windows
    from bertner.spans import Document

    data = data_dir(corpus)
    started = time.perf_counter()
    if corpus == "ruijin":
        ids, texts, gold = study_data.gold_brat_documents(data / "dev-brat")
        predicted = [p.spans for p in predictor.predict([Document(i, t, []) for i, t in zip(ids, texts)])]
        scores = {"dev_document": study_data.score_documents(ids, gold, predicted),
                  "dev_seqeval": study_data.score_windows(texts, gold, predicted)}
    else:
        test = read_windows(data / "test.jsonl")
        texts = [w.text for w in test]
        predicted = predictor.tag_windows(test).spans
        scores = {"test_seqeval": study_data.score_windows(texts, [w.spans for w in test], predicted)}
    scores["predict_chars_per_second"] = round(sum(map(len, texts)) / (time.perf_counter() - started))
    return scores


def score_run(corpus: str, run: Path) -> dict:
    """The run's scores on the held-out data (cached in the run folder as quality.json)."""
    cached = run / "quality.json"
    if cached.exists():
        return json.loads(cached.read_text(encoding="utf-8"))
    from bertner.predict import Predictor

    scores = score_predictor(corpus, Predictor.from_run(run, device="cpu"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    scores["summary"] = {k: summary.get(k) for k in (
        "best_f1", "steps", "epochs_done", "budget_seconds_used", "train_seconds", "tokens_per_second", "lr",
        "crf_lr_mult", "batch_size", "stopped_by")}
    cached.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return scores


def ensemble_members(corpus: str, name: str, seed: int) -> list[Path] | None:
    """The finished runs ensemble `name`'s seed `seed` joins; None while one is missing."""
    runs = [OUT / corpus / f"{row}-seed{a * seed + b}" for row, a, b in ENSEMBLES[name][1]]
    return runs if all((run / "summary.json").exists() for run in runs) else None


def score_ensemble(corpus: str, name: str, seed: int) -> dict | None:
    """Ensemble `name`'s scores for `seed` (cached as OUT/corpus/NAME-seedS.json); None while a member is missing."""
    cached = OUT / corpus / f"{name}-seed{seed}.json"
    if cached.exists():
        return json.loads(cached.read_text(encoding="utf-8"))
    members = ensemble_members(corpus, name, seed)
    if members is None:
        return None
    from bertner.ensemble import EnsemblePredictor

    ensemble = EnsemblePredictor.from_runs(members, device="cpu")
    # The cached members' speeds were timed under other loads; the first member, timed again here, is the baseline.
    alone = score_predictor(corpus, ensemble.members[0])["predict_chars_per_second"]
    scores = score_predictor(corpus, ensemble)
    scores["first_member_chars_per_second"] = alone
    scores["speed_vs_first_member"] = round(scores["predict_chars_per_second"] / alone, 3)
    scores["members"] = [run.name for run in members]
    members_scores = [score_run(corpus, run) for run in members]
    scores["members_f1"] = [headline(corpus, member) for member in members_scores]
    budgets = [member["summary"]["budget_seconds_used"] or 0 for member in members_scores]
    # The members share the machine's two cores: side by side, the wall clock is the longest member's or,
    # with more members than cores, theirs in turn.
    scores["summary"] = {"budget_seconds_used": max(max(budgets), sum(budgets) / 2)}
    cached.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return scores


def headline(corpus: str, scores: dict) -> float:
    return (scores["dev_document"] if corpus == "ruijin" else scores["test_seqeval"])["micro"]["f1"]


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def collect(corpora: list[str]) -> dict:
    rows = []
    classical = common.RESULTS / "classical_crf.json"
    if classical.exists():
        for row in json.loads(classical.read_text(encoding="utf-8"))["rows"]:
            if row["corpus"] in corpora:
                lexicon = row.get("lexicon", "")
                rows.append({"corpus": row["corpus"], "row": "classical-crf" + (f"-{lexicon}" if lexicon else ""),
                             "name": "classical CRF (CRFsuite)" + (f", lexicon {lexicon}" if lexicon else ""),
                             "runs": [{k: v for k, v in row.items() if k not in ("corpus",)}],
                             "minutes": round(row["train_seconds"] / 60, 1)})
    for corpus in corpora:
        for row, (name, _) in ROWS.items():
            runs = []
            for run in sorted((OUT / corpus).glob(f"{row}-seed*")):
                if run.is_dir() and (run / "summary.json").exists():
                    runs.append({"seed": run.name.rsplit("seed", 1)[1], **score_run(corpus, run)})
            if runs:
                minutes = statistics.mean(r["summary"]["budget_seconds_used"] or 0 for r in runs) / 60
                rows.append({"corpus": corpus, "row": row, "name": name, "runs": runs, "minutes": round(minutes, 1)})
    previous = common.RESULTS / "quality.json"
    if previous.exists():  # runs (rows, or seeds of a row) not in this machine's cache stay as they were measured
        found = {(r["corpus"], r["row"]): r for r in rows}
        for old in json.loads(previous.read_text(encoding="utf-8"))["rows"]:
            if old["corpus"] not in corpora:
                continue
            row = found.get((old["corpus"], old["row"]))
            if row is None:
                rows.append(old)
                continue
            seeds = {run.get("seed") for run in row["runs"]}
            kept = [run for run in old["runs"] if run.get("seed") not in seeds]
            if kept and not old["row"].startswith("classical-crf"):
                row["runs"] = sorted(row["runs"] + kept, key=lambda run: str(run.get("seed")))
                minutes = [r["summary"]["budget_seconds_used"] or 0 for r in row["runs"] if "summary" in r]
                row["minutes"] = round(statistics.mean(minutes) / 60, 1) if minutes else old["minutes"]
    return {"name": "quality", "machine": common.machine_info(), "rows": rows}


def collect_ensembles(corpora: list[str]) -> dict:
    """Every ensemble seed whose members have finished, each with its members' own scores beside it."""
    rows = []
    for corpus in corpora:
        seeds = [int(run.name.rsplit("seed", 1)[1]) for run in (OUT / corpus).glob("*-seed*") if run.is_dir()]
        for name, (description, _) in ENSEMBLES.items():
            runs = [{"seed": str(seed), **scores} for seed in range(1, max(seeds, default=0) + 1)
                    if (scores := score_ensemble(corpus, name, seed)) is not None]
            if runs:
                minutes = statistics.mean(r["summary"]["budget_seconds_used"] for r in runs) / 60
                rows.append({"corpus": corpus, "row": name, "name": description, "runs": runs, "minutes": round(minutes, 1)})
    return {"name": "quality_ensembles", "machine": common.machine_info(), "rows": rows}


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="quality on this CPU (F1; mean +- std over seeds)")
    for column in ("corpus", "model", "doc-level exact F1", "seqeval F1", "train minutes", "epochs", "seeds"):
        table.add_column(column)
    for row in result["rows"]:
        runs, corpus = row["runs"], row["corpus"]
        if corpus == "ruijin":
            doc = mean_std([r["dev_document"]["micro"]["f1"] for r in runs])
            seq = mean_std([r["dev_seqeval"]["micro"]["f1"] for r in runs])
        else:
            doc, seq = "-", mean_std([r["test_seqeval"]["micro"]["f1"] for r in runs])
        epochs = mean_std([r["summary"]["epochs_done"] for r in runs if "epochs_done" in r.get("summary", {})])
        table.add_row(corpus, row["name"], doc, seq, f"{row['minutes']:.1f}", epochs, str(len(runs)))
    Console().print(table)


def print_ensembles(result: dict) -> None:
    for row in result["rows"]:
        for run in row["runs"]:
            f1 = headline(row["corpus"], run)
            members = ", ".join(f"{name} {score:.4f}" for name, score in zip(run["members"], run["members_f1"]))
            print(f"{row['corpus']} {row['row']} seed {run['seed']}: F1 {f1:.4f} "
                  f"(members: {members}; {run['predict_chars_per_second']:,} characters/s, "
                  f"{run['speed_vs_first_member']:.2f}x its first member's speed)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("ruijin", "msra", "both"), default="both")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: bertner's default: one for bilstm and tiny)")
    parser.add_argument("--table", action="store_true", help="only print the table of the runs done so far")
    parser.add_argument("--ensembles", action="store_true", help="only score the ensembles of the runs done so far")
    args = parser.parse_args()
    corpora = ["ruijin", "msra"] if args.corpus == "both" else [args.corpus]
    if not (args.table or args.ensembles):
        for corpus in corpora:
            (OUT / corpus).mkdir(parents=True, exist_ok=True)
            for row in args.rows.split(","):
                if row in SELECT_ELSEWHERE and corpus != "ruijin":
                    continue  # MSRA's runs already pick their checkpoint on data that does not score them
                for seed in (int(s) for s in args.seeds.split(",")):
                    started = time.perf_counter()
                    run = train_run(corpus, row, seed, args.minutes, args.threads)
                    scores = score_run(corpus, run)
                    print(f"  {corpus} {row} seed {seed}: F1 {headline(corpus, scores):.4f} "
                          f"({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
    if not args.ensembles:
        result = collect(["ruijin", "msra"])  # every finished run, so a one-corpus call keeps the other's rows
        common.write_result("quality", result)
        print_table(result)
    ensembles = collect_ensembles(["ruijin", "msra"])
    common.write_result("quality_ensembles", ensembles)
    print_ensembles(ensembles)


if __name__ == "__main__":
    main()
