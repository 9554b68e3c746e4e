"""Prediction: a run directory and raw documents in, character spans in document offsets out.

Documents of any length are cut into windows as in preprocessing; windows longer than the
encoder's limit are chunked. Documents stream through in groups: a group gathers documents until
its windows fill `GROUP_BATCHES` batches, is tagged (sorted by length, so batches pad little), and
its predictions come out before the next group is read. Memory holds one group, not the input.

Read top to bottom: the inputs (text files checked before any is tagged), the tagger over encoded
windows (batching, decoding, chunk merging: shared with evaluation during training), then `Predictor`.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Sequence

import torch

from bertner.align import merge_chunk_predictions, token_spans_to_spans
from bertner.config import check_settings
from bertner.data.windows import make_windows
from bertner.engine.batching import (
    EncodedWindows,
    encode_windows,
    iterate_batches,
    sorted_batches,
)
from bertner.engine.device import autocast_for, pick_device, pick_precision
from bertner.errors import DataError
from bertner.fileio import decode_utf8, decode_utf8_bytes, input_files, missing_input
from bertner.models.tagger import Tagger
from bertner.runs import LoadedRun, RunDir, load_run
from bertner.spans import Document, Span, Window
from bertner.tags import spans_to_tags, tags_to_spans

log = logging.getLogger(__name__)

STDIN = "<stdin>"  # how messages name standard input
GROUP_BATCHES = 16  # batches of windows per group: enough to sort by length and fill batches, small in memory


# ----------------------------------------------------------------------------- inputs

@dataclass
class TextInput:
    """One document to tag, known before it is read for tagging: its id, where it is, its length."""

    id: str
    source: str  # the file, or <stdin>
    characters: int
    path: Path | None = None
    text: str | None = None  # standard input only: it cannot be read a second time


def read_text(path: Path, warn_bom: bool = False) -> str:
    """A text file exactly as stored, less a UTF-8 byte-order mark."""
    try:
        text = decode_utf8(path)  # the same checks (binary, not UTF-8) as the corpus readers
    except OSError as e:
        raise DataError(f"cannot read it: {e.strerror or e}", path=path) from None
    return without_bom(text, path, warn_bom)


def read_stdin() -> str:
    """Standard input, checked exactly as a file is (UTF-8, not binary, a BOM dropped with a warning)."""
    stream = sys.stdin
    # Its bytes, not text a locale decoded; a text-only stream (a caller's StringIO) is taken as it is.
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode("utf-8", "surrogateescape")
    return without_bom(decode_utf8_bytes(data, STDIN), STDIN, warn_bom=True)


def without_bom(text: str, source: object, warn_bom: bool) -> str:
    if text.startswith("\ufeff"):
        # Offsets then count from the first character after the BOM, like our brat reader.
        if warn_bom:
            log.warning(f"{source}: has a UTF-8 byte-order mark; offsets count characters after it")
        text = text[1:]
    return text


def check_text_input(path: Path, doc_id: str) -> TextInput | None:
    """A text file checked and measured (then let go: it is read again when its turn comes); None if empty."""
    text = read_text(path, warn_bom=True)
    if not text.strip():
        log.warning(f"{path}: empty, skipped")
        return None
    return TextInput(doc_id, str(path), len(text), path)


def gather_inputs(inputs: list[str]) -> list[TextInput]:
    """Every document to tag, each file checked (UTF-8, not binary, not empty) before any is tagged."""
    found: list[TextInput | None] = []
    for item in inputs:
        if item == "-":
            text = read_stdin()
            if not text.strip():
                raise DataError("standard input is empty", path=STDIN)
            found.append(TextInput("stdin", STDIN, len(text), text=text))
            continue
        path = Path(item)
        if path.is_dir():
            files = input_files(path, (".txt",), recursive=True)
            if not files:
                raise DataError("no .txt files in this folder", path=path)
            found.extend(check_text_input(f, f.relative_to(path).with_suffix("").as_posix()) for f in files)
        elif path.is_file():
            found.append(check_text_input(path, path.stem))
        else:
            raise missing_input(path)
    kept = [f for f in found if f is not None]
    if not kept:
        raise DataError("nothing to tag: every input was empty", path=", ".join(inputs))
    repeated = sorted(doc_id for doc_id, n in Counter(f.id for f in kept).items() if n > 1)
    if repeated:
        raise DataError(f"two inputs share the document id {repeated[0]!r}; rename one of them")
    return kept


def read_documents(inputs: Iterable[TextInput]) -> Iterator[Document]:
    """The documents one at a time, read when their turn comes."""
    for item in inputs:
        text = item.text if item.text is not None else read_text(item.path)
        yield Document(item.id, text, source=item.source)


def gather_documents(inputs: list[str]) -> list[Document]:
    """Every input document in memory at once (for scripts and benchmarks; `bertner predict` streams)."""
    return list(read_documents(gather_inputs(inputs)))


# ----------------------------------------------------------------------------- a tagger over windows

@dataclass
class TaggedWindows:
    """A tagger's output over windows: spans and their confidences per window, and the loss when labelled."""

    spans: list[list[Span]]  # per window, relative to the window's text
    scores: list[list[float]]  # per window, one confidence per span (see `tag_windows`)
    loss: float | None  # mean loss per batch when the windows were labelled


def emission_batches(
    model: Tagger,
    encoded: EncodedWindows,
    aligner,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], ContextManager] = nullcontext,
    with_labels: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """Every model input through the model in eval mode, in length-sorted batches: (batch, emissions).

    `batch.examples[row]` is the index in `encoded.examples` of the batch's row `row`; `on_batch(k)` is
    told each batch's size after its consumer is done with it.
    """
    was_training = model.training
    model.eval()
    lengths = [len(e) for e in encoded.examples]
    try:
        for batch in iterate_batches(encoded, sorted_batches(lengths, batch_size), aligner, with_labels=with_labels):
            batch = batch.to(device)
            with torch.no_grad(), autocast():
                emissions = model.emissions(batch.input_ids, batch.attention_mask, batch.lexicon, batch.softword)
            yield batch, emissions
            if on_batch is not None:
                on_batch(len(batch.examples))
    finally:
        model.train(was_training)


@torch.no_grad()
def tag_windows(
    model: Tagger,
    encoded: EncodedWindows,
    tags: list[str],
    aligner,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], ContextManager] = nullcontext,
    with_loss: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> TaggedWindows:
    """Decode every example and map the tags back to character spans per window.

    Each span's score is the mean, over its tokens, of the probability the emission softmax
    gives the chosen tag: exact for softmax heads, an approximation of the marginal for CRF.
    """
    predictions: list[list[int] | None] = [None] * len(encoded.examples)
    confidences: list[list[float] | None] = [None] * len(encoded.examples)
    loss_sum = torch.zeros((), device=device)
    n_batches = 0
    for batch, emissions in emission_batches(model, encoded, aligner, batch_size, device, autocast,
                                             with_labels=with_loss, on_batch=on_batch):
        if with_loss:
            loss_sum += model.loss(emissions, batch.labels).detach()
            n_batches += 1
        best = model.decode(emissions, batch.label_mask)
        probability = emissions.softmax(-1).gather(-1, best.unsqueeze(-1)).squeeze(-1)
        best, probability = best.cpu(), probability.cpu()  # one transfer per batch
        for row, index in enumerate(batch.examples):
            n = len(encoded.examples[index].ids)
            predictions[index] = best[row, :n].tolist()
            confidences[index] = probability[row, :n].tolist()
    spans, scores = window_spans(encoded, tags, predictions, confidences)
    loss = (loss_sum / max(1, n_batches)).item() if with_loss else None
    return TaggedWindows(spans, scores, loss)


def window_spans(
    encoded: EncodedWindows, tags: list[str], predictions: list[list[int]], confidences: list[list[float]],
) -> tuple[list[list[Span]], list[list[float]]]:
    """Each window's spans and their scores, from the tag ids and confidences of its chunks.

    A token seen by several chunks keeps its prediction from its best chunk (the one where it sits
    furthest from an edge); a span's score is the mean confidence of its tokens.
    """
    chunks: dict[int, list[tuple[tuple[int, int], list[tuple[int, float]]]]] = {}
    for example, predicted, confidence in zip(encoded.examples, predictions, confidences):
        start = example.token_start
        chunk = ((start, start + len(example.ids)), list(zip(predicted, confidence)))
        chunks.setdefault(example.window, []).append(chunk)
    spans: list[list[Span]] = []
    scores: list[list[float]] = []
    for index, offsets in enumerate(encoded.offsets):
        pieces = chunks.get(index)
        if not pieces:
            spans.append([])
            scores.append([])
            continue
        if len(pieces) == 1:
            per_token = pieces[0][1]
        else:
            per_token = merge_chunk_predictions(len(offsets), [r for r, _ in pieces], [p for _, p in pieces])
        token_spans = tags_to_spans([tags[tag] for tag, _ in per_token])
        text = encoded.windows[index].text
        kept_spans, kept_scores = [], []
        for token_span, span in zip(token_spans, token_spans_to_spans(offsets, token_spans)):
            span = strip_whitespace(text, span)
            if span is not None:
                kept_spans.append(span)
                kept_scores.append(
                    sum(per_token[i][1] for i in range(token_span.start, token_span.end)) / len(token_span)
                )
        spans.append(kept_spans)
        scores.append(kept_scores)
    return spans, scores


def strip_whitespace(text: str, span: Span) -> Span | None:
    """A predicted span without leading or trailing whitespace; None if nothing else is left.

    A predicted span runs from its first token's start to its last token's end, so it covers the
    whitespace between them, and in char alignment a model can tag whitespace tokens; no
    gold entity starts or ends with whitespace (none of 87,638 in Ruijin train), so such edges are errors.
    """
    start, end = span.start, span.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end, span.label) if start < end else None


def char_tags(texts: list[str], spans: list[list[Span]]) -> list[list[str]]:
    """BIO tags over characters: the model-independent ground on which every run is scored."""
    return [spans_to_tags(len(text), sorted(s)) for text, s in zip(texts, spans)]


# ----------------------------------------------------------------------------- a run over documents

@dataclass
class Prediction:
    """The entities found in one document, in document offsets, with a confidence each."""

    doc: str
    text: str
    spans: list[Span]  # document offsets, sorted
    scores: list[float]  # one confidence in [0, 1] per span
    source: str = ""  # the file it came from, if any

    def entities(self) -> list["FoundEntity"]:
        """Each span with its text and confidence."""
        return [FoundEntity(s.start, s.end, s.label, self.text[s.start : s.end], score)
                for s, score in zip(self.spans, self.scores)]


@dataclass(frozen=True)
class FoundEntity:
    """A predicted entity: its span in document offsets, its text and the model's confidence in [0, 1]."""

    start: int
    end: int
    label: str
    text: str
    score: float


class Predictor:
    """A trained run ready to tag text: `Predictor.from_run("runs/x").predict_text("...")`.

    `predict` takes `Document`s and returns `Prediction`s; `predict_stream` yields them one group at a time.
    """
    def __init__(self, run: LoadedRun, device: torch.device, batch_size: int = 32, max_chars: int = 256):
        self.run = run
        self.device = device
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.autocast = autocast_for(pick_precision("auto", device), device)

    @classmethod
    def from_run(
        cls, path: str | Path, device: str = "auto", batch_size: int = 32, constrained: bool | None = None
    ) -> "Predictor":
        """Load the run in `path` (offline). `constrained` overrides a softmax run's decoding."""
        check_settings(batch_size=batch_size, device=device)
        torch_device = pick_device(device)
        run = load_run(path, torch_device, constrained)
        max_chars = run.data_info.get("max_chars") or 256  # checked when the run was loaded
        return cls(run, torch_device, batch_size, max_chars)

    def max_length(self) -> int:
        return min(self.run.config.max_length, self.run.max_positions)

    def encode(self, windows: Sequence[Window]) -> EncodedWindows:
        """The windows as this run's model inputs: its tokens, lexicon slots and segmentation tags; long ones chunked."""
        texts = [w.text for w in windows]
        lexicon = self.run.lexicon.text_features(texts) if self.run.lexicon is not None else None
        softword = self.run.segmenter.tags(texts) if self.run.segmenter is not None else None
        return encode_windows(windows, self.run.aligner, self.max_length(), lexicon=lexicon, softword=softword)

    @property
    def name(self) -> str:
        """What messages call this predictor: its run's folder."""
        return str(self.run.path)

    def trained_documents(self) -> set[str] | None:
        """The documents its run trained on (None when the run did not record them)."""
        return RunDir(self.run.path).trained_documents()

    def tag_windows(
        self, windows: Sequence[Window], on_batch: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> TaggedWindows:
        """Spans (and their scores) per window, relative to each window's text.

        `on_start(n)` is told how many model inputs there are, `on_batch(k)` each batch's size.
        """
        encoded = self.encode(windows)
        if on_start is not None:
            on_start(len(encoded.examples))
        return tag_windows(
            self.run.model, encoded, self.run.tags, self.run.aligner, self.batch_size, self.device,
            self.autocast, on_batch=on_batch,
        )

    def predict_stream(
        self, documents: Iterable[Document], on_characters: Callable[[int], None] | None = None,
    ) -> Iterator[Prediction]:
        """Predictions in input order, each as soon as its group of documents is tagged.

        `documents` is read lazily; `on_characters(n)` is told after each batch how many more
        characters of text are done (in proportion within a group, exact at its end).
        """
        group: list[Document] = []
        windows: list[Window] = []
        owner: list[int] = []
        for doc in documents:
            doc_windows, _ = make_windows(doc.id, doc.text, (), self.max_chars)
            owner.extend([len(group)] * len(doc_windows))
            windows.extend(doc_windows)
            group.append(doc)
            if len(windows) >= self.batch_size * GROUP_BATCHES:
                yield from self._predict_group(group, windows, owner, on_characters)
                group, windows, owner = [], [], []
        if group:
            yield from self._predict_group(group, windows, owner, on_characters)

    def _predict_group(
        self, group: list[Document], windows: list[Window], owner: list[int], on_characters: Callable[[int], None] | None,
    ) -> Iterator[Prediction]:
        share = CharacterShare(sum(len(doc.text) for doc in group), on_characters)
        tagged = self.tag_windows(windows, on_batch=share.batch_done, on_start=share.start)
        share.finish()
        found: list[list[tuple[Span, float]]] = [[] for _ in group]
        for window, window_spans, window_scores, index in zip(windows, tagged.spans, tagged.scores, owner):
            found[index].extend((s.shifted(window.offset), score) for s, score in zip(window_spans, window_scores))
        for doc, pairs in zip(group, found):
            pairs.sort()
            yield Prediction(doc.id, doc.text, [s for s, _ in pairs], [c for _, c in pairs], doc.source)

    def predict(self, documents: Iterable[Document]) -> list[Prediction]:
        """All predictions at once (for evaluation and scripts); `predict_stream` holds less."""
        return list(self.predict_stream(documents))

    def predict_text(self, text: str, doc_id: str = "text") -> list[FoundEntity]:
        """The entities of one text: start and end in its character offsets, label, text and score."""
        return self.predict([Document(doc_id, text)])[0].entities()


class CharacterShare:
    """Turns 'k more model inputs done' into 'n more characters done' for a group of documents."""

    def __init__(self, characters: int, report: Callable[[int], None] | None):
        self.characters, self.report = characters, report
        self.inputs = 0
        self.inputs_done = 0
        self.reported = 0

    def start(self, inputs: int) -> None:
        self.inputs = inputs

    def batch_done(self, inputs: int) -> None:
        self.inputs_done += inputs
        self.tell(self.characters * self.inputs_done // max(1, self.inputs))

    def finish(self) -> None:
        self.tell(self.characters)  # whitespace-only documents have no model inputs, but count as done

    def tell(self, characters: int) -> None:
        if self.report is not None and characters > self.reported:
            self.report(characters - self.reported)
            self.reported = characters
