"""Is a variant really better than the baseline? Differences in dev F1 with intervals and p-values.

Two views of the same question, each answered for every group against the baseline group:
- seeds: a t test over the runs' best dev F1, paired by seed when both groups ran the same seeds
  (same data order and initial head), else Welch's; it needs two runs per group.
- documents: a paired bootstrap over dev documents (Koehn 2004; Dror et al. 2018), pooled over
  matched seeds: each resample draws documents with replacement, recomputes each run's F1 from
  the drawn documents' counts, and averages the differences of the seed pairs. It reads the
  runs' dev_predictions.jsonl (bertner.dev_predictions) and works with one seed per group.
Holm's step-down correction is applied across the comparisons, to each view's p-values separately.
Runs trained on different data are never tested against each other: each data set's groups are tested
against that data set's baseline group, and corrected among themselves.

    report = compare_to_baseline(compare_runs("runs/study"), "bert+softmax")
    report.differences[0].documents.low, report.differences[0].documents.p_holm

Everything is returned as dataclasses; nothing here prints.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from bertner.compare import Comparison, GroupResult, RunResult
from bertner.dev_predictions import DevPrediction
from bertner.errors import BertnerError
from bertner.runs import RunDir

RESAMPLES = 10_000
CONFIDENCE = 0.95
# Fewer dev documents than this and resampling them says little: one document gives a zero-width interval.
MIN_DOCUMENTS = 10


@dataclass
class TestResult:
    """One test of `group - baseline` in dev F1 (fractions: 0.021 is 2.1 points)."""

    method: str  # "paired t over seeds", "Welch t over seeds" or "paired bootstrap over documents"
    difference: float
    low: float  # the confidence interval of the difference
    high: float
    p_value: float  # two-sided, before correction
    seeds: int  # runs per group (pairs for paired methods)
    documents: int | None = None  # dev documents resampled (bootstrap only)
    p_holm: float | None = None  # after Holm's correction across the comparisons


@dataclass
class GroupDifference:
    """A group against the baseline: the seed test and the document bootstrap, or why each is missing."""

    group: str
    baseline: str
    data: str  # the data set both groups trained on
    runs: int
    baseline_runs: int
    seeds: TestResult | None = None
    seeds_note: str | None = None
    documents: TestResult | None = None
    documents_note: str | None = None
    not_comparable: str | None = None  # why no test was run: the runs were scored on different gold

    def verdict(self, alpha: float = 0.05) -> str:
        """better / worse when every available test says so after Holm's correction, else no clear difference."""
        if self.not_comparable:
            return "not comparable"
        tests = [t for t in (self.documents, self.seeds) if t is not None]
        if tests and all(t.p_holm is not None and t.p_holm < alpha for t in tests):
            if all(t.low > 0 for t in tests):
                return "better"
            if all(t.high < 0 for t in tests):
                return "worse"
        return "no clear difference"

    def sentence(self) -> str:
        """The row in plain language: the document bootstrap first (it works with one seed), then the seeds."""
        parts = []
        if self.documents is not None:
            d = self.documents
            parts.append(f"{_interval(d)}, {_p(d)}, {_count(d.seeds, 'seed')} x {_count(d.documents or 0, 'document')}")
        if self.seeds is not None:
            s = self.seeds
            parts.append(f"{'seeds alone: ' if parts else ''}{_interval(s)}, {_p(s)} ({s.method}, {_count(s.seeds, 'seed')})")
        parts += [note for note in (self.not_comparable, self.documents_note, self.seeds_note) if note]
        return f"{self.group} vs {self.baseline}: {self.verdict()}; " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict(), "sentence": self.sentence()}


@dataclass
class BaselineComparison:
    """What `compare_to_baseline` returns: one GroupDifference per other group, data set by data set, best group first."""

    baseline: str  # the baseline's name (the names, when data sets resolved a prefix differently)
    confidence: float
    resamples: int
    differences: list[GroupDifference]
    without_predictions: list[str] = field(default_factory=list)  # runs with no dev_predictions.jsonl
    baselines: dict[str, str] = field(default_factory=dict)  # data set -> its baseline group
    without_baseline: list[str] = field(default_factory=list)  # data sets with no such group: not tested

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "baselines": dict(self.baselines), "confidence": self.confidence,
                "resamples": self.resamples, "correction": "holm", "differences": [d.to_dict() for d in self.differences],
                "without_predictions": list(self.without_predictions), "without_baseline": list(self.without_baseline)}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _interval(test: TestResult) -> str:
    return f"{100 * test.difference:+.1f} points [{100 * test.low:.1f}, {100 * test.high:.1f}]"


def format_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _p(test: TestResult) -> str:
    return format_p(test.p_holm if test.p_holm is not None else test.p_value) + (" (Holm)" if test.p_holm is not None else "")


# -- multiple comparisons ------------------------------------------------------------------------
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the k-th smallest times (m - k + 1), kept monotone."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# -- seeds ---------------------------------------------------------------------------------------
def seed_test(baseline: dict[int, float], other: dict[int, float], confidence: float = CONFIDENCE) -> TestResult | str:
    """A t test of other - baseline over the runs' F1 by seed; a note (str) when it cannot be done.

    Paired when both groups ran the same seeds (each pair shares data order and head initialisation),
    else Welch's unequal-variance test.
    """
    from scipy import stats  # deferred on purpose: scipy is slow to import and only the seed test needs it

    if len(baseline) < 2 or len(other) < 2:
        return "the seed test needs at least 2 seeds per group (document bootstrap only)"
    if set(baseline) == set(other):
        seeds = sorted(baseline)
        differences = [other[s] - baseline[s] for s in seeds]
        if max(differences) - min(differences) < 1e-12:
            return "every seed gives the same difference, so the seed test is undefined"
        result, method = stats.ttest_rel([other[s] for s in seeds], [baseline[s] for s in seeds]), "paired t over seeds"
        difference, n = float(np.mean(differences)), len(seeds)
    else:
        a, b = list(other.values()), list(baseline.values())
        if np.std(a) + np.std(b) < 1e-12:
            return "no spread between seeds, so the seed test is undefined"
        result, method = stats.ttest_ind(a, b, equal_var=False), "Welch t over seeds"
        difference, n = float(np.mean(a) - np.mean(b)), min(len(a), len(b))
    interval = result.confidence_interval(confidence)
    return TestResult(method, difference, float(interval.low), float(interval.high), float(result.pvalue), n)


# -- documents -----------------------------------------------------------------------------------
def document_counts(predictions: Sequence[DevPrediction]) -> dict[str, np.ndarray]:
    """Per dev document: exact-span true positives, predicted and gold entities (windows of a document summed)."""
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(3, dtype=np.int64))
    for window in predictions:
        gold, predicted = set(window.gold), set(window.spans)
        counts[window.doc] += (len(gold & predicted), len(predicted), len(gold))
    return dict(counts)


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """F1 = 2 tp / (predicted + gold) over the last axis (tp, predicted, gold); 0 where both are 0."""
    tp, total = 2.0 * counts[..., 0], counts[..., 1] + counts[..., 2]
    return np.divide(tp, total, out=np.zeros_like(tp), where=total > 0)


def paired_bootstrap(baseline: np.ndarray, other: np.ndarray, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> TestResult:
    """Bootstrap of the mean F1 difference over seed pairs; `baseline`, `other`: (pairs, documents, 3) counts.

    The same documents are drawn for every pair in a resample. Two-sided p-value by the shifted-null
    rule (Berg-Kirkpatrick et al. 2012): how often a resampled difference strays from the observed
    one by at least the observed difference itself.
    """
    if baseline.shape != other.shape or baseline.ndim != 3 or baseline.shape[2] != 3:
        raise ValueError(f"count arrays must share the shape (pairs, documents, 3): {baseline.shape} {other.shape}")
    pairs, documents, _ = baseline.shape
    observed = float(np.mean(f1_from_counts(other.sum(axis=1)) - f1_from_counts(baseline.sum(axis=1))))
    rng = np.random.default_rng(seed)
    samples = []
    for start in range(0, resamples, 1000):  # in chunks: (chunk, documents) weights stay small
        weights = rng.multinomial(documents, np.full(documents, 1.0 / documents), size=min(1000, resamples - start))
        drawn_base = np.einsum("rd,pdk->rpk", weights, baseline)
        drawn_other = np.einsum("rd,pdk->rpk", weights, other)
        samples.append((f1_from_counts(drawn_other) - f1_from_counts(drawn_base)).mean(axis=1))
    deltas = np.concatenate(samples)
    alpha = 1.0 - confidence
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    strays = int(np.sum(np.abs(deltas - observed) >= abs(observed) - 1e-12))
    p_value = (strays + 1) / (resamples + 1)
    return TestResult("paired bootstrap over documents", observed, float(low), float(high), min(1.0, p_value),
                      pairs, documents)


# -- a comparison against a baseline group -------------------------------------------------------
def _normal(name: str) -> str:
    """A group name as --baseline matches it: case and spaces after commas do not matter."""
    return ",".join(part.strip() for part in name.lower().split(","))


def find_baselines(comparison: Comparison, name: str) -> dict[str, GroupResult]:
    """The group `name` names in each data set: the group of exactly that name, else the one group whose name
    starts with it (`bilstm` for `bilstm+crf`). Data sets without one are left out; none at all, or more than one
    group in a data set, is an error listing the groups."""
    found: dict[str, GroupResult] = {}
    for data in comparison.data_sets:
        groups = comparison.groups_of(data)
        matches = [g for g in groups if _normal(g.name) == _normal(name)]
        matches = matches or [g for g in groups if _normal(g.name).startswith(_normal(name))]
        if len(matches) > 1:
            listed = "; ".join(repr(g.name) for g in matches)
            where = f" of {data}" if len(comparison.data_sets) > 1 else ""
            raise BertnerError(f"--baseline {name!r} names more than one group{where}: {listed}; give more of the name")
        if matches:
            found[data] = matches[0]
    if not found:
        listed = "; ".join(repr(comparison.group_title(g)) for g in comparison.groups)
        raise BertnerError(f"--baseline {name!r} is not a group (nor the start of one); the groups are: {listed}")
    return found


def _seed(run: RunResult) -> int | None:
    seed = run.settings.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def pair_runs(baseline: Sequence[RunResult], other: Sequence[RunResult]) -> list[tuple[RunResult, RunResult]]:
    """Runs of the same seed paired; runs left over are paired in seed order (documents stay paired either way)."""
    by_seed = {_seed(r): r for r in baseline}
    pairs = [(by_seed[_seed(r)], r) for r in other if _seed(r) is not None and _seed(r) in by_seed]
    paired = {id(r) for pair in pairs for r in pair}
    key = lambda r: (_seed(r) is None, _seed(r) or 0, r.name)  # noqa: E731
    rest_base = sorted((r for r in baseline if id(r) not in paired), key=key)
    rest_other = sorted((r for r in other if id(r) not in paired), key=key)
    return pairs + list(zip(rest_base, rest_other))


def _bootstrap_for(pairs: list[tuple[RunResult, RunResult]], counts: dict[str, dict[str, np.ndarray]],
                   resamples: int, confidence: float) -> TestResult | str:
    usable = [(a, b) for a, b in pairs if a.name in counts and b.name in counts]
    if not usable:
        return "document bootstrap skipped: no dev_predictions.jsonl (runs trained before bertner kept them)"
    documents = sorted(counts[usable[0][0].name])
    if any(sorted(counts[r.name]) != documents for pair in usable for r in pair):
        return "document bootstrap skipped: the runs were evaluated on different dev documents"
    if len(documents) < MIN_DOCUMENTS:
        return f"document bootstrap skipped: it needs at least {MIN_DOCUMENTS} dev documents (found {len(documents)})"
    stack = lambda side: np.stack([[counts[pair[side].name][d] for d in documents] for pair in usable])  # noqa: E731
    return paired_bootstrap(stack(0), stack(1), resamples, confidence)


def compare_to_baseline(comparison: Comparison, baseline: str | dict[str, GroupResult], resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE) -> BaselineComparison:
    """Every other group of `comparison` against the baseline group of its data set, Holm-corrected per data set.

    `baseline`: a group's name (or the start of one, `find_baselines`), or the baseline group of each data set.
    """
    bases = find_baselines(comparison, baseline) if isinstance(baseline, str) else baseline
    runs = {r.name: r for r in comparison.runs}
    counts, golds, missing = {}, {}, []
    for run in comparison.runs:
        predictions = RunDir(run.path).read_dev_predictions()
        if predictions is None:
            missing.append(run.name)
        else:
            counts[run.name] = document_counts(predictions)
            golds[run.name] = gold_entities(predictions)
    differences = []
    for data, base_group in bases.items():
        base_runs = [runs[name] for name in base_group.runs]
        tested = []
        for group in comparison.groups_of(data):
            if group is base_group:
                continue
            members = [runs[name] for name in group.runs]
            row = GroupDifference(group.name, base_group.name, data, len(members), len(base_runs))
            row.not_comparable = different_gold([golds[r.name] for r in (*base_runs, *members) if r.name in golds])
            if row.not_comparable:
                tested.append(row)
                continue
            seeds = seed_test(_f1_by_seed(base_runs), _f1_by_seed(members), confidence)
            row.seeds, row.seeds_note = (None, seeds) if isinstance(seeds, str) else (seeds, None)
            documents = _bootstrap_for(pair_runs(base_runs, members), counts, resamples, confidence)
            row.documents, row.documents_note = (None, documents) if isinstance(documents, str) else (documents, None)
            tested.append(row)
        for view in ("seeds", "documents"):  # one family of comparisons per data set
            tests = [getattr(d, view) for d in tested if getattr(d, view) is not None]
            for test, adjusted in zip(tests, holm([t.p_value for t in tests])):
                test.p_holm = adjusted
        differences += tested
    names = list(dict.fromkeys(g.name for g in bases.values()))
    return BaselineComparison(" / ".join(names), confidence, resamples, differences, missing,
                              {data: g.name for data, g in bases.items()},
                              [data for data in comparison.data_sets if data not in bases])


def gold_entities(predictions: Sequence[DevPrediction]) -> frozenset[tuple[str, int, int, str]]:
    """The gold entities a run was scored on, as (document, start, end, label) in document offsets."""
    return frozenset((w.doc, w.offset + s.start, w.offset + s.end, s.label) for w in predictions for s in w.gold)


def different_gold(golds: Sequence[frozenset[tuple[str, int, int, str]]]) -> str | None:
    """Why runs scored on these gold sets cannot be compared (their F1s measure different things), or None."""
    if len(set(golds)) <= 1:
        return None
    if len({frozenset(entity[0] for entity in gold) for gold in golds}) > 1:
        return "not tested: the runs were scored on different dev documents (different dev data)"
    return ("not tested: the runs were scored on different gold entities for the same dev documents (the dev data "
            "differ, e.g. a label removed): train them on one data folder")


def _f1_by_seed(runs: Sequence[RunResult]) -> dict[int, float]:
    """Best dev F1 by seed; runs with no seed (or no F1) count by their order, so Welch still sees them."""
    scores: dict[int, float] = {}
    for index, run in enumerate(runs):
        if run.best_f1 is not None and not math.isnan(run.best_f1):
            seed = _seed(run)
            scores[seed if seed is not None and seed not in scores else -1 - index] = run.best_f1
    return scores
