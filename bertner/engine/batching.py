"""From windows to padded tensor batches: tokenise once, group similar lengths, pad to a multiple of 8."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from bertner.align import chunk_ranges, token_tags
from bertner.lexicon import SETS, LexiconSlots
from bertner.models.tagger import IGNORE
from bertner.spans import Window

PAD_MULTIPLE = 8  # tensor cores and vectorised CPU kernels like lengths that are multiples of 8


@dataclass
class Example:
    """One model input: a window, or a chunk of a window longer than the encoder's limit."""

    window: int  # index into the list of windows it came from
    token_start: int  # first token of this chunk within the window's tokens
    ids: list[int]  # text token ids, no special tokens
    tags: list[int]  # one tag id per text token (empty when unlabelled)
    lexicon: LexiconSlots | None = None  # the lexicon slots of its tokens (positions: token index in `ids`)
    softword: np.ndarray | None = None  # per text token, its segmentation tag id (int8, index into softword.TAGS)

    def __len__(self) -> int:
        return len(self.ids) + 2


@dataclass
class EncodedWindows:
    """Windows after tokenisation: their token offsets and the examples cut from them."""

    windows: list[Window]
    offsets: list[list[tuple[int, int]]]  # per window, the char span of each token
    examples: list[Example]
    inexact_entities: int  # gold entities with a boundary inside a token (subword mode)


def encode_windows(
    windows: Sequence[Window],
    aligner,
    max_length: int,
    tag_to_id: dict[str, int] | None = None,
    scheme: str = "BIO",
    stride: int | None = None,
    lexicon: Sequence[LexiconSlots] | None = None,
    softword: Sequence[np.ndarray] | None = None,
) -> EncodedWindows:
    """Tokenise every window once; label it when `tag_to_id` is given; chunk long ones with overlap.

    `lexicon`: each window's lexicon slots by character (`LexiconMatcher.features`), given to its tokens;
    `softword`: each window's segmentation tag per character (`Segmenter.tags`), likewise.
    """
    max_tokens = max_length - 2
    stride = stride or max(1, max_tokens // 2)
    offsets_all: list[list[tuple[int, int]]] = []
    examples: list[Example] = []
    inexact = 0
    # Dev may hold labels train never saw: the model has no tag for them, so they are O for the loss
    # (and misses in the scores, which read the windows' own spans).
    known = {tag.split("-", 1)[-1] for tag in tag_to_id} if tag_to_id is not None else set()
    for index, window in enumerate(windows):
        tokenized = aligner.encode(window.text)
        offsets_all.append(tokenized.offsets)
        tag_ids: list[int] = []
        if tag_to_id is not None:
            spans = [s for s in window.spans if s.label in known]
            tags, bad = token_tags(tokenized, spans, scheme)
            inexact += bad
            tag_ids = [tag_to_id[t] for t in tags]
        n = len(tokenized.ids)
        if n == 0:
            continue  # nothing to tag; callers treat a window without examples as having no spans
        slots = token_slots(lexicon[index], tokenized.offsets, len(window.text)) if lexicon is not None else None
        tags = None
        if softword is not None:
            tags = softword[index]
            if n != len(window.text):
                tags = tags[[start for start, _ in tokenized.offsets]]
        for start, end in chunk_ranges(n, max_tokens, stride):
            chunk = slots
            if slots is not None and (start, end) != (0, n):
                first, last = np.searchsorted(slots.positions, (start, end))
                chunk = LexiconSlots(slots.positions[first:last] - start, slots.entries[first:last], slots.sets[first:last])
            examples.append(Example(index, start, tokenized.ids[start:end], tag_ids[start:end], chunk,
                                    None if tags is None else tags[start:end]))
    return EncodedWindows(list(windows), offsets_all, examples, inexact)


def token_slots(slots: LexiconSlots, offsets: list[tuple[int, int]], length: int) -> LexiconSlots:
    """A window's lexicon slots by token instead of character (tokens are single characters; whitespace may have none)."""
    if len(offsets) == length:
        return slots  # a token for every character: positions are already token indices
    token_of_char = np.full(length, -1, dtype=np.int32)
    token_of_char[[start for start, _ in offsets]] = np.arange(len(offsets), dtype=np.int32)
    tokens = token_of_char[slots.positions]
    keep = tokens >= 0
    return LexiconSlots(tokens[keep], slots.entries[keep], slots.sets[keep])


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_factor: int = 50
) -> list[list[int]]:
    """Shuffle, sort within mega-batches by length, cut into batches, shuffle the batches.

    Similar lengths in a batch waste little padding; the shuffles keep epochs random. The order
    depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * group_factor
    batches: list[list[int]] = []
    for i in range(0, len(order), mega):
        group = sorted(order[i : i + mega], key=lambda j: lengths[j], reverse=True)
        batches.extend(group[k : k + batch_size] for k in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """For evaluation and prediction: longest first, so padding is minimal and order is fixed."""
    order = sorted(range(len(lengths)), key=lambda j: lengths[j], reverse=True)
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


@dataclass
class Batch:
    """Padded tensors of some examples, ready for the model."""

    input_ids: Tensor
    attention_mask: Tensor
    label_mask: Tensor  # true on text tokens
    labels: Tensor | None  # IGNORE off the text tokens
    examples: list[int]  # indices of the examples in this batch
    tokens: int  # real (unpadded) tokens, for throughput
    # The batch's lexicon slots: each one's bag (its position in the flattened `[B, T]` times 4, plus its set) and
    # feature id, in the order of their examples' slots.
    lexicon: tuple[Tensor, Tensor] | None = None
    softword: Tensor | None = None  # `[B, T]` segmentation tag id + 1 of each token, 0 off the text

    def map_tensors(self, fn) -> "Batch":
        """The same batch with `fn` applied to each tensor (labels, lexicon and softword may be None)."""
        apply = lambda t: None if t is None else fn(t)  # noqa: E731
        lexicon = None if self.lexicon is None else (fn(self.lexicon[0]), fn(self.lexicon[1]))
        return Batch(
            apply(self.input_ids), apply(self.attention_mask), apply(self.label_mask), apply(self.labels),
            self.examples, self.tokens, lexicon, apply(self.softword),
        )

    def to(self, device: torch.device) -> "Batch":
        non_blocking = device.type == "cuda"
        return self.map_tensors(lambda t: t.to(device, non_blocking=non_blocking))


def collate(
    examples: Sequence[Example], indices: Sequence[int], cls_id: int, sep_id: int, pad_id: int,
    with_labels: bool, pin: bool = False,
) -> Batch:
    """Pad the chosen examples to the longest, rounded up to a multiple of 8."""
    chosen = [examples[i] for i in indices]
    longest = max(len(e) for e in chosen)
    width = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(chosen), width), dtype=torch.long)
    label_mask = torch.zeros((len(chosen), width), dtype=torch.bool)
    labels = torch.full((len(chosen), width), IGNORE, dtype=torch.long) if with_labels else None
    for row, e in enumerate(chosen):
        n = len(e.ids)
        ids[row, 0] = cls_id
        ids[row, 1 : n + 1] = torch.tensor(e.ids, dtype=torch.long)
        ids[row, n + 1] = sep_id
        attention[row, : n + 2] = 1
        label_mask[row, 1 : n + 1] = True
        if labels is not None:
            labels[row, 1 : n + 1] = torch.tensor(e.tags, dtype=torch.long)
    lexicon = None
    if chosen[0].lexicon is not None:
        # Token i of row r sits at r * width + 1 + i (after [CLS]).
        positions = np.concatenate([e.lexicon.positions + (row * width + 1) for row, e in enumerate(chosen)], dtype=np.int64)
        sets = np.concatenate([e.lexicon.sets for e in chosen])
        entries = np.concatenate([e.lexicon.entries for e in chosen], dtype=np.int64)
        lexicon = (torch.from_numpy(positions * len(SETS) + sets), torch.from_numpy(entries))
    softword = None
    if chosen[0].softword is not None:
        softword = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, e in enumerate(chosen):
            softword[row, 1 : len(e.ids) + 1] = torch.from_numpy(e.softword.astype(np.int64) + 1)
    batch = Batch(ids, attention, label_mask, labels, list(indices), sum(len(e) for e in chosen), lexicon, softword)
    return batch.map_tensors(Tensor.pin_memory) if pin else batch


def iterate_batches(
    encoded: EncodedWindows, batches: list[list[int]], aligner, with_labels: bool, pin: bool = False
) -> Iterator[Batch]:
    for indices in batches:
        yield collate(encoded.examples, indices, aligner.cls_id, aligner.sep_id, aligner.pad_id, with_labels, pin)
