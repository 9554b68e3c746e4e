"""Prediction: a run directory and raw documents in, character spans in document offsets out.

Documents of any length are cut into windows as in preprocessing; windows longer than the
encoder's limit are chunked; all windows of all documents are batched together for speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from bertner.data.windows import make_windows
from bertner.engine.batching import encode_windows
from bertner.engine.trainer import autocast_for, pick_device, pick_precision
from bertner.inference import TaggedWindows, tag_windows
from bertner.runs import LoadedRun, load_run
from bertner.spans import Document, Span, Window


@dataclass
class Prediction:
    doc: str
    text: str
    spans: list[Span]  # document offsets, sorted
    scores: list[float]  # one confidence in [0, 1] per span
    source: str = ""  # the file it came from, if any


class Predictor:
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
        torch_device = pick_device(device)
        run = load_run(path, torch_device, constrained)
        max_chars = int(run.data_info.get("max_chars") or 256)
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

    def predict(
        self, documents: Sequence[Document], on_batch: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> list[Prediction]:
        windows: list[Window] = []
        owner: list[int] = []
        for index, doc in enumerate(documents):
            doc_windows, _ = make_windows(doc.id, doc.text, (), self.max_chars)
            windows.extend(doc_windows)
            owner.extend([index] * len(doc_windows))
        tagged = self.tag_windows(windows, on_batch, on_start)
        found: list[list[tuple[Span, float]]] = [[] for _ in documents]
        for window, window_spans, window_scores, index in zip(windows, tagged.spans, tagged.scores, owner):
            found[index].extend((s.shifted(window.offset), score) for s, score in zip(window_spans, window_scores))
        predictions = []
        for doc, pairs in zip(documents, found):
            pairs.sort()
            predictions.append(Prediction(doc.id, doc.text, [s for s, _ in pairs], [c for _, c in pairs], doc.source))
        return predictions

    def predict_text(self, text: str, doc_id: str = "text") -> list[Span]:
        return self.predict([Document(doc_id, text)])[0].spans
