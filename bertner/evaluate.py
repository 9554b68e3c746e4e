"""Scoring a run on labelled data: preprocessed JSONL, a CoNLL file or folder, or a brat folder.

Every score is computed over characters, whatever the model's tokens were, so runs with
different tokenizers are comparable and an entity a tokenizer cannot split counts as an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from bertner.data.formats import detect_format, read_corpus
from bertner.data.jsonl import read_windows
from bertner.data.policies import POLICIES, apply_policy, check_policy
from bertner.errors import DataError, RunError
from bertner.fileio import parse_json
from bertner.metrics import entity_scores, error_kinds, span_scores
from bertner.predict import Predictor, char_tags
from bertner.runs import RunDir
from bertner.spans import Document, Entity, Span
from bertner.text import plural
from bertner.writers import BRAT_RECORD

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Evaluation:
    """Scores of a run (or of predicted .ann files) on labelled data, with error kinds when asked for."""

    data: str
    kind: str  # jsonl | brat | conll
    scores: dict[str, Any]  # micro, macro, per_type (seqeval strict, characters)
    document_scores: dict[str, Any] | None = None  # exact (doc, start, end, type) spans, brat only
    errors: list[dict[str, Any]] = field(default_factory=list)
    unknown_labels: dict[str, int] = field(default_factory=dict)
    trained_on: int = 0  # documents of the data that the run trained on (see warn_trained_on)
    held_out: bool = False  # only documents the run did not train on were scored

    def to_dict(self) -> dict[str, Any]:
        result = {"data": self.data, "kind": self.kind, **self.scores}
        if self.document_scores is not None:
            result["document"] = self.document_scores
        if self.errors:
            result["errors"] = self.errors
        if self.unknown_labels:
            result["unknown_labels"] = self.unknown_labels
        if self.trained_on:
            result["trained_on_documents"] = self.trained_on
        if self.held_out:
            result["held_out"] = True
        return result


def data_kind(path: Path) -> str:
    """The input format of labelled data (the registry's detection); JSONL is scored one file at a time."""
    kind = detect_format(path)
    if kind == "jsonl" and path.is_dir():
        raise DataError("a folder of JSONL files: name one file, e.g. dev.jsonl", path=path)
    return kind


def gold_documents(path: Path, kind: str, policy: str) -> list[Document]:
    """Documents whose `entities` hold the gold spans after the run's discontinuous policy."""
    documents = read_corpus(path, kind).all_documents()
    resolved = []
    for doc in documents:
        spans, _ = apply_policy(doc.entities, policy)
        entities = [Entity(f"T{i}", s.label, ((s.start, s.end),)) for i, s in enumerate(spans)]
        resolved.append(Document(doc.id, doc.text, entities, doc.source))
    return resolved


def _spans_of(doc: Document) -> list[Span]:
    return sorted(Span(e.start, e.end, e.label) for e in doc.entities)


def count_unknown(gold: list[list[Span]], known: set[str]) -> dict[str, int]:
    unknown: dict[str, int] = {}
    for spans in gold:
        for s in spans:
            if s.label not in known:
                unknown[s.label] = unknown.get(s.label, 0) + 1
    return unknown


def evaluate(predictor: Predictor, data: str | Path, n_errors: int = 0, held_out: bool = False) -> Evaluation:
    """Score a run on labelled data; `held_out`: only the documents it did not train on."""
    path = Path(data)
    kind = data_kind(path)
    policy = predictor.run.data_info.get("discontinuous", "merge")
    run = predictor.name
    trained = predictor.trained_documents()
    if held_out and trained is None:
        raise RunError(f"{run} has no data_fingerprint.json (it was trained before bertner recorded its "
                       "training documents), so --held-out cannot tell which documents it trained on")
    if kind == "jsonl":
        windows = read_windows(path)
        if not windows:
            raise DataError("no windows to evaluate on", path=path)
        if held_out:
            windows = keep_held_out(windows, lambda w: w.doc, trained, str(run), path)
        ids, texts, gold = [w.id for w in windows], [w.text for w in windows], [w.spans for w in windows]
        predicted = predictor.tag_windows(windows).spans
    else:
        documents = gold_documents(path, kind, policy)
        if not documents:
            raise DataError("no documents to evaluate on", path=path)
        if held_out:
            documents = keep_held_out(documents, lambda d: d.id, trained, str(run), path)
        ids, texts, gold = [d.id for d in documents], [d.text for d in documents], [_spans_of(d) for d in documents]
        predicted = [p.spans for p in predictor.predict(documents)]

    documents_scored = {w.doc for w in windows} if kind == "jsonl" else set(ids)
    trained_on = warn_trained_on(str(run), path, documents_scored, trained)
    unknown = count_unknown(gold, set(predictor.run.labels))
    if unknown:
        listed = ", ".join(f"{label} ({n})" for label, n in sorted(unknown.items()))
        log.warning(f"labels this run was not trained on are scored as misses: {listed}")
    scores = entity_scores(char_tags(texts, gold), char_tags(texts, predicted)).to_dict()
    document_scores = None
    if kind == "brat":
        gold_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, gold) for s in spans]
        pred_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, predicted) for s in spans]
        document_scores = span_scores(gold_set, pred_set).to_dict()
    errors = most_frequent_errors(ids, gold, predicted, texts, n_errors)
    return Evaluation(str(path), kind, scores, document_scores, errors, unknown, trained_on, held_out)


def keep_held_out(items: list[T], doc_of: Callable[[T], str], trained: set[str], run: str, data: Path) -> list[T]:
    """The items (windows or documents) of documents the run did not train on; an error if none is left."""
    kept = [item for item in items if doc_of(item) not in trained]
    documents = {doc_of(item) for item in items}
    held_out = len({doc_of(item) for item in kept})
    if not kept:
        raise DataError(f"all {plural(len(documents), 'document')} here were in {run}'s training data: "
                        "nothing held out to score", path=data)
    log.info(f"scoring the {plural(held_out, 'document')} {run} did not train on "
             f"(--held-out; {len(documents) - held_out:,} it trained on left out)")
    return kept


def warn_trained_on(run: str, data: Path, documents: set[str], trained: set[str] | None) -> int:
    """Warn when `documents` include some the run trained on (their scores would flatter it); how many.

    Typical causes: the raw folder preprocess split into train and dev (`--held-out` scores the
    rest), or `bertner preprocess --force` re-split the data folder after the run was trained, so
    today's dev.jsonl holds documents that were in the run's train.jsonl.
    """
    if trained is None:
        return 0  # a run from before fingerprints: nothing to compare with
    seen = sorted(documents & trained)
    if seen:
        message = (f"{len(seen)} of the {len(documents)} documents in {data} were in {run}'s training data "
                   f"(e.g. {seen[0]}), so these scores overstate it")
        if len(seen) < len(documents):
            message += f"; --held-out scores only the {len(documents) - len(seen)} it did not train on"
        if data.suffix == ".jsonl":
            message += "; was the data re-split (preprocess --force) after training?"
        log.warning(message)
    return len(seen)


def most_frequent_errors(
    ids: list[str], gold: list[list[Span]], predicted: list[list[Span]], texts: list[str], n: int, examples: int = 3
) -> list[dict[str, Any]]:
    """The `n` most frequent error kinds (wrong type, wrong boundary, missed, spurious), with examples."""
    if n <= 0:
        return []
    kinds = error_kinds(dict(zip(ids, gold)), dict(zip(ids, predicted)), dict(zip(ids, texts)), examples)
    return sorted((k for k in kinds if k["count"]), key=lambda k: -k["count"])[:n]


def read_brat_record(folder: Path) -> dict[str, Any]:
    """What `predict --format brat` recorded in `folder` (its run's policy, the documents it wrote); {} if absent."""
    path = folder / BRAT_RECORD
    if not path.is_file():
        return {}
    try:
        record = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"is corrupt ({e}); delete it and pass --discontinuous", path=path) from None
    if not isinstance(record, dict) or record.get("discontinuous", "merge") not in POLICIES:
        raise DataError("is corrupt (no known discontinuous policy); delete it and pass --discontinuous", path=path)
    return record


def prediction_policy(predicted: Path, record: dict[str, Any], policy: str | None) -> str:
    """The discontinuous policy to read gold with: --discontinuous, else the recorded one, else merge."""
    recorded = record.get("discontinuous")
    if policy is None:
        if recorded is None:
            log.warning(f"{predicted} has no {BRAT_RECORD} saying which discontinuous policy its run was trained with; "
                 "gold is read with merge (pass --discontinuous to choose)")
        return recorded or "merge"
    policy = check_policy(policy)
    if recorded is not None and policy != recorded:
        log.warning(f"gold is read with --discontinuous {policy}, but the run that wrote {predicted} was trained with {recorded}: "
             "the scores will differ from `bertner evaluate RUN`")
    return policy


def evaluate_predicted_brat(
    predicted: str | Path, gold: str | Path, policy: str | None = None, n_errors: int = 0, held_out: bool = False,
) -> Evaluation:
    """Score `.ann` files written by `bertner predict --format brat` against a gold brat folder.

    Gold is read with the discontinuous policy the predicting run was trained with (recorded by
    predict in the folder) unless `policy` says otherwise, and scored exactly as `evaluate` scores
    a run, so the two give the same numbers. `held_out`: only the documents that run did not
    train on (predict records them too).
    """
    predicted, gold = Path(predicted), Path(gold)
    record = read_brat_record(predicted)
    policy = prediction_policy(predicted, record, policy)
    gold_docs = {d.id: d for d in gold_documents(gold, "brat", policy)}
    # Predicted spans were written as fragments split at line breaks: merge gives them back exactly.
    pred_docs = {d.id: d for d in gold_documents(predicted, "brat", "merge")}
    if not set(gold_docs) & set(pred_docs):
        examples = f" ({min(pred_docs)} here, {min(gold_docs)} there)" if gold_docs and pred_docs else ""
        raise DataError(f"no document here is in {gold}{examples}: nothing to score; predict the gold folder's "
                        ".txt files", path=predicted)
    trained = recorded_training_documents(predicted, record)
    run = str(record.get("run", predicted))
    if held_out:
        if trained is None:
            raise DataError(f"{BRAT_RECORD} does not say which documents its run trained on (an older bertner "
                            "wrote it): predict again, or score the run itself with `bertner evaluate RUN GOLD "
                            "--held-out`", path=predicted)
        gold_docs = {d.id: d for d in keep_held_out(list(gold_docs.values()), lambda d: d.id, trained, run, gold)}
        pred_docs = {i: d for i, d in pred_docs.items() if i not in trained}
        if not set(gold_docs) & set(pred_docs):
            raise DataError(f"every predicted document of {gold} was in {run}'s training data: nothing held out "
                            "to score; predict the documents it did not train on", path=predicted)
    if isinstance(record.get("documents"), list):
        older = sorted(set(pred_docs) - set(record["documents"]))
        if older:
            log.warning(f"{plural(len(older), '.ann file')} in {predicted} {'was' if len(older) == 1 else 'were'} not written by the last predict into it "
                 f"(e.g. {older[0]}.ann); they are scored too")
    missing = sorted(set(gold_docs) - set(pred_docs))
    if missing:
        log.warning(f"{plural(len(missing), 'gold document')} without a prediction (scored as all missed), e.g. {missing[0]}")
    extra = sorted(set(pred_docs) - set(gold_docs))
    if extra:
        log.warning(f"{plural(len(extra), 'predicted document')} not in the gold folder, ignored, e.g. {extra[0]}")
    ids = sorted(gold_docs)
    trained_on = 0 if held_out else warn_trained_on(run, gold, set(ids) & set(pred_docs), trained)
    texts = [gold_docs[i].text for i in ids]
    for i in ids:
        if i in pred_docs and pred_docs[i].text != gold_docs[i].text:
            raise DataError(f"the text of {i} differs from the gold text; predictions must be made on the same files", path=predicted)
    gold = [_spans_of(gold_docs[i]) for i in ids]
    pred = [_spans_of(pred_docs[i]) if i in pred_docs else [] for i in ids]
    scores = entity_scores(char_tags(texts, gold), char_tags(texts, pred)).to_dict()
    gold_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, gold) for s in spans]
    pred_set = [(d, s.start, s.end, s.label) for d, spans in zip(ids, pred) for s in spans]
    errors = most_frequent_errors(ids, gold, pred, texts, n_errors)
    return Evaluation(str(predicted), "brat", scores, span_scores(gold_set, pred_set).to_dict(), errors,
                      trained_on=trained_on, held_out=held_out)


def recorded_training_documents(predicted: Path, record: dict[str, Any]) -> set[str] | None:
    """The documents the predicting run trained on, as predict recorded them; None if it did not."""
    documents = record.get("trained_documents")
    if documents is None:
        return None
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise DataError("is corrupt (trained_documents is not a list of document ids); predict again",
                        path=predicted / BRAT_RECORD)
    return set(documents)
