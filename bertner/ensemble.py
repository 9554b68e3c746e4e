"""Ensembles (`--ensemble RUN`): several runs over the same entity types tag as one.

Each member reads the same windows its own way (its tokenizer, lexicon and softword; a window
longer than its encoder takes is chunked) and gives each token a tag distribution: a CRF's
marginals (forward-backward), a softmax head's probabilities. These become distributions over
character BIO tags, are averaged over the members, and one Viterbi over the characters, kept to
well-formed BIO sequences, decodes the average. Averaging at characters rather than emissions at
tokens lets the members differ in tokenizer (a character bilstm with a word-piece ALBERT), tag
scheme (BIO, BIOES) and head, and keeps every member's scale (a CRF's emissions mean nothing
without its transitions; its marginals are probabilities).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from bertner.align import merge_chunk_predictions
from bertner.engine.batching import EncodedWindows
from bertner.errors import RunError
from bertner.models.crf import viterbi_decode
from bertner.models.tagger import constraint_scores
from bertner.predict import Predictor, TaggedWindows, emission_batches, strip_whitespace
from bertner.runs import RunDir
from bertner.spans import Span, Window
from bertner.tags import label_set_to_tags, split_tag, tags_to_spans

log = logging.getLogger(__name__)

FLOOR = 1e-12  # log(0) would forbid a tag every member thinks impossible; the BIO constraints do the forbidding


def char_projections(tags: Sequence[str], scheme: str, char_tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """0/1 matrices `[K, C]` taking a token's tag distribution to its first character's and to its later ones'.

    A token tagged B-X (or S-X) begins an X entity at its first character, which its later
    characters continue (I-X); I-X and E-X continue one throughout; O is O.
    """
    if scheme == "IOB1":
        # IOB1's I-X begins an entity or continues one depending on the tag before it, which
        # a token's own distribution cannot say.
        raise RunError("an ensemble averages runs tagged in BIO or BIOES; this one was trained with IOB1")
    column = {tag: i for i, tag in enumerate(char_tags)}
    first = np.zeros((len(tags), len(char_tags)), dtype=np.float32)
    later = np.zeros_like(first)
    for row, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix == "O":
            first[row, column["O"]] = later[row, column["O"]] = 1.0
            continue
        first[row, column[f"B-{label}" if prefix in ("B", "S") else f"I-{label}"]] = 1.0
        later[row, column[f"I-{label}"]] = 1.0
    return first, later


def token_probabilities(member: Predictor, encoded: EncodedWindows,
                        on_batch: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Each model input's token tag distributions, `[tokens, K]`, in `encoded.examples` order."""
    model = member.run.model
    found: list[np.ndarray | None] = [None] * len(encoded.examples)
    for batch, emissions in emission_batches(model, encoded, member.run.aligner, member.batch_size, member.device,
                                             member.autocast, on_batch=on_batch):
        with torch.no_grad():
            probabilities = model.marginals(emissions, batch.label_mask).cpu().numpy()
        for row, index in enumerate(batch.examples):
            found[index] = probabilities[row, : len(encoded.examples[index].ids)]
    return found


def char_probabilities(encoded: EncodedWindows, per_example: list[np.ndarray], first: np.ndarray,
                       later: np.ndarray) -> list[np.ndarray]:
    """Per window, `[characters, C]`: each character's BIO tag distribution from its tokens'.

    A token seen by several chunks takes its distribution from the chunk where it sits furthest
    from an edge, as decoding does. A character no token covers (whitespace between two) takes
    the token before it as continuing; characters before the first token are O.
    """
    chunks: dict[int, list[tuple[tuple[int, int], np.ndarray]]] = {}
    for example, probabilities in zip(encoded.examples, per_example):
        start = example.token_start
        chunks.setdefault(example.window, []).append(((start, start + len(example.ids)), probabilities))
    result = []
    for index, (window, offsets) in enumerate(zip(encoded.windows, encoded.offsets)):
        n = len(window.text)
        chars = np.zeros((n, first.shape[1]), dtype=np.float32)
        chars[:, 0] = 1.0  # tag 0 is O
        pieces = chunks.get(index)
        if pieces and offsets:
            if len(pieces) == 1:
                tokens = pieces[0][1]
            else:
                tokens = np.stack(merge_chunk_predictions(len(offsets), [r for r, _ in pieces],
                                                          [list(p) for _, p in pieces]))
            starts = np.array([s for s, _ in offsets])
            owner = np.searchsorted(starts, np.arange(n), side="right") - 1  # the last token starting at or before
            seen = owner >= 0
            at_start = np.zeros(n, dtype=bool)
            at_start[seen] = starts[owner[seen]] == np.arange(n)[seen]
            chars[seen & at_start] = (tokens @ first)[owner[seen & at_start]]
            chars[seen & ~at_start] = (tokens @ later)[owner[seen & ~at_start]]
        result.append(chars)
    return result


def decode_characters(char_tags: Sequence[str], windows: Sequence[Window],
                      probabilities: list[np.ndarray]) -> tuple[list[list[Span]], list[list[float]]]:
    """The best well-formed BIO sequence per window under the averaged distributions; spans and their scores.

    A span's score is the mean, over its characters, of the averaged probability of the tag chosen.
    """
    start, transitions, end = constraint_scores(tuple(char_tags), "BIO")
    spans: list[list[Span]] = [[] for _ in windows]
    scores: list[list[float]] = [[] for _ in windows]
    order = [i for i in sorted(range(len(windows)), key=lambda i: len(windows[i].text)) if windows[i].text]
    for group in (order[i : i + 256] for i in range(0, len(order), 256)):  # similar lengths pad little
        longest = max(len(windows[i].text) for i in group)
        scores_in = torch.zeros(len(group), longest, len(char_tags))
        mask = torch.zeros(len(group), longest, dtype=torch.bool)
        for row, i in enumerate(group):
            scores_in[row, : len(windows[i].text)] = torch.from_numpy(np.log(np.maximum(probabilities[i], FLOOR)))
            mask[row, : len(windows[i].text)] = True
        best = viterbi_decode(scores_in, mask, start, transitions, end)
        for row, i in enumerate(group):
            text, chosen = windows[i].text, best[row, : len(windows[i].text)].numpy()
            confidence = probabilities[i][np.arange(len(text)), chosen]
            for span in tags_to_spans([char_tags[t] for t in chosen]):
                stripped = strip_whitespace(text, span)
                if stripped is not None:
                    spans[i].append(stripped)
                    scores[i].append(float(confidence[stripped.start : stripped.end].mean()))
    return spans, scores


class EnsemblePredictor(Predictor):
    """Runs over the same entity types tagging as one: `EnsemblePredictor.from_runs([a, b]).predict(docs)`.

    Documents are cut into windows no longer than any member trained on; the rest is `Predictor`'s.
    """

    def __init__(self, members: list[Predictor]):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two runs")
        first = members[0]
        for member in members[1:]:
            if sorted(member.run.labels) != sorted(first.run.labels):
                only = sorted(set(member.run.labels) ^ set(first.run.labels))
                raise RunError(f"{member.name} and {first.name} tag different entity types (not in both: "
                               f"{', '.join(only)}); an ensemble's runs must share their types")
            policies = {m.run.data_info.get("discontinuous", "merge") for m in (first, member)}
            if len(policies) > 1:
                raise RunError(f"{member.name} and {first.name} were trained with different discontinuous "
                               f"policies ({', '.join(sorted(policies))}); an ensemble's runs must share one")
        super().__init__(first.run, first.device, first.batch_size, min(m.max_chars for m in members))
        self.members = members
        self.char_tags = label_set_to_tags(first.run.labels, "BIO")
        self.projections = [char_projections(m.run.tags, m.run.scheme, self.char_tags) for m in members]

    @classmethod
    def from_runs(cls, paths: Sequence[str | Path], device: str = "auto", batch_size: int = 32) -> "EnsemblePredictor":
        """Load every run in `paths` (offline) onto one device."""
        return cls([Predictor.from_run(path, device=device, batch_size=batch_size) for path in paths])

    @property
    def name(self) -> str:
        return " + ".join(m.name for m in self.members)

    def trained_documents(self) -> set[str] | None:
        """Every document any member trained on; None when a member did not record its own."""
        found: set[str] = set()
        for member in self.members:
            trained = member.trained_documents()
            if trained is None:
                return None
            found |= trained
        return found

    def tag_windows(
        self, windows: Sequence[Window], on_batch: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> TaggedWindows:
        encoded = [member.encode(windows) for member in self.members]
        if on_start is not None:
            on_start(sum(len(e.examples) for e in encoded))
        average: list[np.ndarray] | None = None
        for member, member_encoded, (first, later) in zip(self.members, encoded, self.projections):
            tokens = token_probabilities(member, member_encoded, on_batch)
            chars = char_probabilities(member_encoded, tokens, first, later)
            average = chars if average is None else [a + c for a, c in zip(average, chars)]
        average = [a / len(self.members) for a in average]
        spans, scores = decode_characters(self.char_tags, windows, average)
        return TaggedWindows(spans, scores, None)


def load_predictor(run: str | Path, ensemble: Sequence[str | Path] = (), device: str = "auto", batch_size: int = 32,
                   constrained: bool | None = None) -> Predictor:
    """`run`'s Predictor; with `ensemble` runs, the ensemble of `run` and them (`constrained` then has no say:
    an ensemble decodes its averaged distributions, always to well-formed sequences)."""
    if not ensemble:
        return Predictor.from_run(run, device=device, batch_size=batch_size, constrained=constrained)
    for path in ensemble:
        RunDir(path).check()  # a wrong path is named as such, not as a broken run
    return EnsemblePredictor.from_runs([run, *ensemble], device=device, batch_size=batch_size)
