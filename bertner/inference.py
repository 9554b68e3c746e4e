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
    """A tagger's output over windows: spans and their confidences per window, and the loss when labelled."""

    spans: list[list[Span]]  # per window, relative to the window's text
    scores: list[list[float]]  # per window, one confidence per span (see `tag_windows`)
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
    """Decode every example and map the tags back to character spans per window.

    Each span's score is the mean, over its tokens, of the probability the emission softmax
    gives the chosen tag: exact for softmax heads, an approximation of the marginal for CRF.
    """
    was_training = model.training
    model.eval()
    lengths = [len(e) for e in encoded.examples]
    predictions: list[list[int] | None] = [None] * len(encoded.examples)
    confidences: list[list[float] | None] = [None] * len(encoded.examples)
    loss_sum = torch.zeros((), device=device)
    n_batches = 0
    for batch in iterate_batches(encoded, sorted_batches(lengths, batch_size), aligner, with_labels=with_loss):
        batch = batch.to(device)
        with autocast():
            emissions = model.emissions(batch.input_ids, batch.attention_mask)
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
        if on_batch is not None:
            on_batch(len(batch.examples))
    model.train(was_training)

    # Gather the chunks of each window and keep each token's prediction from its best chunk.
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
    loss = (loss_sum / max(1, n_batches)).item() if with_loss else None
    return TaggedWindows(spans, scores, loss)


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
