"""`bertner preprocess`: read a corpus, split by document, cut windows, write JSONL + labels + stats.

Output folder: `train.jsonl`, `dev.jsonl` (always, possibly empty, so `train` can find it),
`test.jsonl` (when a test split is asked for or given), `labels.json`, `stats.json`; written
through `atomic_dir`, so a failure leaves nothing half-written. An output that cannot be written
(no permission, a file in its path) is refused before the corpus is read. With `--force`, a
`test.jsonl` an earlier split left is removed when this one makes none.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertner.data import policies
from bertner.data.formats import FORMATS as INPUT_FORMATS
from bertner.data.formats import Corpus, ReadOptions, detect_format, read_corpus
from bertner.data.jsonl import window_to_row
from bertner.data.splits import SPLITS, check_ratios, split_documents, unseen_labels
from bertner.data.windows import WindowReport, make_windows
from bertner.errors import BertnerError, DataError, OutputExistsError
from bertner.fileio import (
    atomic_dir,
    check_writable,
    write_json,
    write_jsonl,
)
from bertner.runs import check_output_place
from bertner.spans import Document, Window
from bertner.tags import check_scheme

OUTPUT_FILES = ("train.jsonl", "dev.jsonl", "test.jsonl", "labels.json", "stats.json")


@dataclass
class PreprocessOptions:
    """The settings of `bertner preprocess`, one field per flag."""

    input: Path
    output: Path = Path("data/processed")
    input_format: str = "auto"
    scheme: str = "BIO"
    discontinuous: str = "merge"
    max_chars: int = 256
    dev_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 13
    group_by_prefix: bool | None = None  # None: on for brat (article_part ids), off otherwise
    strict: bool = False
    force: bool = False
    repair_tags: bool = False


@dataclass
class SplitStats:
    """Counts of one split: documents, windows, characters and entities by label."""

    documents: int = 0
    windows: int = 0
    characters: int = 0
    entities: Counter = field(default_factory=Counter)


@dataclass
class PreprocessResult:
    """What `preprocess` did: the split counts, what it changed, its warnings, and where it wrote."""

    output: Path
    input_format: str
    splits: dict[str, SplitStats]
    changes: list[tuple[str, int]]  # what had to change, with counts (only non-zero)
    warnings: list[str]
    stats: dict  # what stats.json holds
    notes: list[str] = field(default_factory=list)  # informative lines (given split used, ...)


def check_output(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} exists and is not a folder")
    held = [name for name in OUTPUT_FILES if (output / name).exists()]
    if held and not force:
        raise OutputExistsError(f"{output} already holds data ({', '.join(held)}); use --force to overwrite or choose another --output")
    check_writable(output, folder=True)


def doc_labels(documents: list[Document]) -> dict[str, set[str]]:
    return {d.id: {e.label for e in d.entities} for d in documents}


def assign_splits(corpus: Corpus, options: PreprocessOptions, group: bool, notes: list[str]) -> dict[str, list[Document]]:
    """Random split by document, or the input's own train/dev/test with missing parts carved from train."""
    docs = corpus.documents
    all_docs = [d for ds in docs.values() for d in ds]
    seen: set[str] = set()
    for d in all_docs:
        if d.id in seen:
            raise DataError(f"document id {d.id!r} occurs twice; ids must be unique", d.source or None)
        seen.add(d.id)
    if "all" in docs:
        ids = split_documents([d.id for d in all_docs], options.dev_ratio, options.test_ratio, options.seed, group,
                              labels=doc_labels(all_docs))
        by_id = {d.id: d for d in all_docs}
        return {name: [by_id[i] for i in ids[name]] for name in SPLITS}
    if "train" not in docs:
        raise DataError("the input gives dev/test files but no train file", options.input)
    notes.append(f"using the split given by the input files ({', '.join(n for n in SPLITS if n in docs)})")
    carve_dev = 0.0 if "dev" in docs else options.dev_ratio
    carve_test = 0.0 if "test" in docs else options.test_ratio
    if "test" in docs and options.test_ratio:
        notes.append("--test-ratio ignored: the input has its own test file")
    train = docs["train"]
    if carve_dev or carve_test:
        ids = split_documents([d.id for d in train], carve_dev, carve_test, options.seed, group, labels=doc_labels(train))
        by_id = {d.id: d for d in train}
        carved = {name: [by_id[i] for i in ids[name]] for name in SPLITS}
        notes.append(f"carved {', '.join(n for n, r in (('dev', carve_dev), ('test', carve_test)) if r)} out of the given train file by ratio")
    else:
        carved = {"train": train, "dev": [], "test": []}
    return {name: docs.get(name, carved[name]) if name != "train" else carved["train"] for name in SPLITS}


def check_options(options: PreprocessOptions) -> tuple[str, str]:
    """Every option checked before any work; the discontinuous policy and the input format (detected for auto)."""
    policy = policies.check_policy(options.discontinuous)
    options.scheme = check_scheme(options.scheme)
    check_ratios(options.dev_ratio, options.test_ratio)
    if options.max_chars < 1:
        raise BertnerError(f"--max-chars must be at least 1, not {options.max_chars}")
    input_format = options.input_format.lower()
    if input_format != "auto" and input_format not in INPUT_FORMATS:
        raise BertnerError(f"unknown --format {input_format!r}; use one of auto, {', '.join(INPUT_FORMATS)}")
    if input_format == "auto":
        input_format = detect_format(Path(options.input), hint="; use --format")
    return policy, input_format


def preprocess(options: PreprocessOptions) -> PreprocessResult:
    """Read, split, window and write; returns what was done for the report."""
    policy, input_format = check_options(options)
    output = Path(options.output)
    check_output_place(output, [options.input])
    check_output(output, options.force)  # before any work: fail fast

    corpus = read_corpus(Path(options.input), input_format,
                         ReadOptions(strict=options.strict, scheme=options.scheme, repair_tags=options.repair_tags))
    group = options.group_by_prefix if options.group_by_prefix is not None else input_format == "brat"
    notes: list[str] = []
    documents = assign_splits(corpus, options, group, notes)
    write_test = options.test_ratio > 0 or bool(documents["test"])

    changes: Counter = Counter()
    windowing = WindowReport()
    rows: dict[str, list[dict]] = {}
    split_stats: dict[str, SplitStats] = {}
    for name in SPLITS:
        stats = split_stats[name] = SplitStats()
        windows: list[Window] = []
        for doc in documents[name]:
            spans, doc_changes = policies.apply_policy(doc.entities, policy)
            changes.update(doc_changes)
            doc_windows, report = make_windows(doc.id, doc.text, spans, options.max_chars)
            windowing.add(report)
            windows.extend(doc_windows)
            stats.documents += 1
            stats.characters += len(doc.text)
            stats.entities.update(s.label for s in spans)
        stats.windows = len(windows)
        rows[name] = [window_to_row(w) for w in windows]

    if not write_test:
        split_stats.pop("test")
    labels = sorted({label for s in split_stats.values() for label in s.entities})
    stats_json = build_stats(corpus.read, changes, windowing, split_stats, group, policy)
    with atomic_dir(output) as tmp:
        for name in SPLITS:
            if name in split_stats:
                write_jsonl(tmp / f"{name}.jsonl", rows[name])
        write_json(tmp / "labels.json", {"labels": labels, "source": str(options.input), "format": input_format, "discontinuous": policy, "max_chars": options.max_chars})
        write_json(tmp / "stats.json", stats_json)
    for name in SPLITS:
        stale = output / f"{name}.jsonl"
        if name not in split_stats and stale.exists():
            # From an earlier split (--force): left there, it would pair a new train.jsonl with an old test set.
            stale.unlink()
            notes.append(f"removed {stale}: this split has no {name} set")

    warnings = list(corpus.warnings)
    unseen = unseen_labels({name: [d.id for d in docs] for name, docs in documents.items()}, doc_labels(corpus_docs(documents)))
    if unseen:
        tried = " (no split of whole documents tried avoids it)" if "all" in corpus.documents else ""
        warnings.append(f"dev/test hold labels that no train document has: {', '.join(sorted(unseen))}{tried}; "
                        "`bertner train` counts their entities as misses")
    if windowing.overlong_entities:
        warnings.append(
            f"{windowing.overlong_entities} entities are longer than --max-chars {options.max_chars}; kept whole in longer windows "
            f"(first: {windowing.overlong_examples[0]})"
        )
    return PreprocessResult(output, input_format, split_stats, change_list(corpus.read, changes, windowing), warnings, stats_json, notes)


def corpus_docs(documents: dict[str, list[Document]]) -> list[Document]:
    return [d for docs in documents.values() for d in docs]


def build_stats(read: dict, changes: Counter, windowing: WindowReport, splits: dict[str, SplitStats], group: bool, policy: str) -> dict:
    kept = sum(sum(s.entities.values()) for s in splits.values())
    overlaps = policies.overlaps_by_label(changes)
    dropped = changes[policies.DISCONTINUOUS_DROPPED] + changes[policies.DUPLICATES] + sum(overlaps.values())
    extra = changes[policies.SPLIT_EXTRA]
    return {
        "splits": {
            name: {"documents": s.documents, "windows": s.windows, "characters": s.characters, "entities": dict(sorted(s.entities.items()))}
            for name, s in splits.items()
        },
        "read": read,
        "policy": policy,
        "group_by_prefix": group,
        "split_unit": "documents",
        "changes": {
            "discontinuous_merged": changes[policies.MERGED],
            "discontinuous_first_fragment": changes[policies.FIRST_KEPT],
            "discontinuous_split_extra_spans": extra,
            "discontinuous_dropped": changes[policies.DISCONTINUOUS_DROPPED],
            "overlaps_dropped": dict(sorted(overlaps.items())),
            "duplicates_dropped": changes[policies.DUPLICATES],
            "windows_cut_inside_sentence": windowing.cut_inside_sentence,
            "overlong_entities": windowing.overlong_entities,
            "whitespace_windows_skipped": windowing.whitespace_skipped,
        },
        "check": {
            "entities_read": read["entities"],
            "dropped": dropped,
            "extra_from_split": extra,
            "kept": kept,
            "adds_up": kept == read["entities"] - dropped + extra,
        },
    }


def change_list(read: dict, changes: Counter, windowing: WindowReport) -> list[tuple[str, int]]:
    """The human list of what preprocessing had to change, non-zero counts only."""
    overlaps = policies.overlaps_by_label(changes)
    items = [
        ("discontinuous entities merged (first start to last end)", changes[policies.MERGED]),
        ("discontinuous entities cut to their first fragment", changes[policies.FIRST_KEPT]),
        ("extra spans from splitting discontinuous entities", changes[policies.SPLIT_EXTRA]),
        ("discontinuous entities dropped", changes[policies.DISCONTINUOUS_DROPPED]),
        ("overlapping spans dropped (longer, then earlier kept)" + (": " + ", ".join(f"{k} {v}" for k, v in sorted(overlaps.items())) if overlaps else ""), sum(overlaps.values())),
        ("duplicate spans dropped", changes[policies.DUPLICATES]),
        ("windows cut inside a sentence", windowing.cut_inside_sentence),
        ("entities longer than --max-chars (kept whole)", windowing.overlong_entities),
        (".ann texts differing from the .txt (the .txt is used)", read.get("text_mismatches", 0)),
        ("stray I-/E- tags read as entity starts", read.get("repaired_tags", 0)),
        ("unpaired files skipped", read.get("unpaired_files_skipped", 0)),
    ]
    return [(what, n) for what, n in items if n]
