"""Prediction: a run directory and raw documents in, character spans in document offsets out.

Documents of any length are cut into windows as in preprocessing; windows longer than the
encoder's limit are chunked. Documents stream through in groups: a group gathers documents until
its windows fill `GROUP_BATCHES` batches, is tagged (sorted by length, so batches pad little), and
its predictions come out before the next group is read. Memory holds one group, not the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from bertner.config import check_settings
from bertner.data.windows import make_windows
from bertner.engine.batching import encode_windows
from bertner.engine.trainer import autocast_for, pick_device, pick_precision
from bertner.inference import TaggedWindows, tag_windows
from bertner.runs import LoadedRun, load_run
from bertner.spans import Document, Span, Window

GROUP_BATCHES = 16  # batches of windows per group: enough to sort by length and fill batches, small in memory


@dataclass
class Prediction:
    """The entities found in one document, in document offsets, with a confidence each."""

    doc: str
    text: str
    spans: list[Span]  # document offsets, sorted
    scores: list[float]  # one confidence in [0, 1] per span
    source: str = ""  # the file it came from, if any


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

    def tag_windows(
        self, windows: Sequence[Window], on_batch: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> TaggedWindows:
        """Spans (and their scores) per window, relative to each window's text.

        `on_start(n)` is told how many model inputs there are, `on_batch(k)` each batch's size.
        """
        encoded = encode_windows(windows, self.run.aligner, self.max_length())
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

    def predict_text(self, text: str, doc_id: str = "text") -> list[Span]:
        """The entities of one text: `Span(start, end, label)`s in its character offsets."""
        return self.predict([Document(doc_id, text)])[0].spans


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
