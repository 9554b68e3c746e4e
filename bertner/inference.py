"""Running a tagger over encoded windows: batches in, character spans per window out."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from bertner.align import merge_chunk_predictions, token_spans_to_spans
from bertner.engine.batching import EncodedWindows, iterate_batches, sorted_batches
from bertner.models.tagger import Tagger
from bertner.spans import Span
from bertner.tags import spans_to_tags, tags_to_spans


@dataclass
class TaggedWindows:
    spans: list[list[Span]]  # per window, relative to the window's text
    loss: float | None  # mean loss per batch when the windows were labelled


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
    was_training = model.training
    model.eval()
    lengths = [len(e) for e in encoded.examples]
    predictions: list[list[int] | None] = [None] * len(encoded.examples)
    loss_sum = torch.zeros((), device=device)
    n_batches = 0
    for batch in iterate_batches(encoded, sorted_batches(lengths, batch_size), aligner, with_labels=with_loss):
        batch = batch.to(device)
        with autocast():
            emissions = model.emissions(batch.input_ids, batch.attention_mask)
        if with_loss:
            loss_sum += model.loss(emissions, batch.labels).detach()
            n_batches += 1
        best = model.decode(emissions, batch.label_mask).cpu()  # one transfer per batch
        for row, index in enumerate(batch.examples):
            predictions[index] = best[row, : len(encoded.examples[index].ids)].tolist()
        if on_batch is not None:
            on_batch(len(batch.examples))
    model.train(was_training)

    # Gather the chunks of each window and keep each token's prediction from its best chunk.
    chunks: dict[int, list[tuple[tuple[int, int], list[int]]]] = {}
    for example, predicted in zip(encoded.examples, predictions):
        start = example.token_start
        chunks.setdefault(example.window, []).append(((start, start + len(example.ids)), predicted))
    spans: list[list[Span]] = []
    for index, offsets in enumerate(encoded.offsets):
        pieces = chunks.get(index)
        if not pieces:
            spans.append([])
            continue
        if len(pieces) == 1:
            token_ids = pieces[0][1]
        else:
            ranges = [r for r, _ in pieces]
            token_ids = merge_chunk_predictions(len(offsets), ranges, [p for _, p in pieces])
        token_spans = tags_to_spans([tags[i] for i in token_ids])
        spans.append(token_spans_to_spans(offsets, token_spans))
    loss = (loss_sum / max(1, n_batches)).item() if with_loss else None
    return TaggedWindows(spans, loss)


def char_tags(texts: list[str], spans: list[list[Span]]) -> list[list[str]]:
    """BIO tags over characters: the model-independent ground on which every run is scored."""
    return [spans_to_tags(len(text), sorted(s)) for text, s in zip(texts, spans)]
