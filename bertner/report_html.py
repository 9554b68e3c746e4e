"""`bertner report`: one self-contained HTML page about a folder of runs.

The page holds the comparison with intervals against a baseline group (bertner.significance), the
dev-F1 curves and grouped bars (compare's figure, a PNG as a data URI), per-type F1 as a heatmap
table (type x group), the most frequent error kinds, and a few dev documents with gold and
predicted entities side by side. It reads only the run directories, like `compare`.

    html = build_report(compare_runs("runs/study"), baseline="bert+softmax")
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Sequence

from bertner.compare import Comparison, GroupResult, RunResult, comparison_figure
from bertner.dev_predictions import DevPrediction
from bertner.fileio import write_text
from bertner.html_spans import escape, highlight, label_colours, label_toggle, legend, page_head, page_tail
from bertner.metrics import KINDS, error_kinds
from bertner.runs import RunDir
from bertner.significance import RESAMPLES, BaselineComparison, compare_to_baseline, find_baselines, format_p

DOCUMENTS = 4  # dev documents shown side by side


def default_baseline(groups: Sequence[GroupResult]) -> GroupResult:
    """Of one data set's groups: the plain softmax group (no GRU) when there is exactly one, else the group with the
    lowest mean F1."""
    plain = [g for g in groups if str(g.key.get("variant", "")).endswith("+softmax") and "+gru" not in str(g.key.get("variant"))]
    return plain[0] if len(plain) == 1 else groups[-1]


def baselines(comparison: Comparison, baseline: str | None) -> dict[str, GroupResult]:
    """Each data set's baseline group: the one `baseline` names, else the default of each data set with more than
    one group (groups of different data sets are never tested against each other)."""
    if baseline is not None:
        return find_baselines(comparison, baseline)
    return {data: default_baseline(comparison.groups_of(data)) for data in comparison.data_sets
            if len(comparison.groups_of(data)) > 1}


def build_report(comparison: Comparison, baseline: str | None = None, documents: int = DOCUMENTS,
                 resamples: int = RESAMPLES) -> str:
    """The whole page as a string."""
    predictions = {r.name: RunDir(r.path).read_dev_predictions() for r in comparison.runs}
    bases = baselines(comparison, baseline)
    significance = compare_to_baseline(comparison, bases, resamples) if bases else None
    labels = comparison.labels or sorted({s.label for rows in predictions.values() if rows for w in rows for s in w.gold})
    colours = label_colours(labels)
    sections = [
        _header(comparison),
        _comparison_section(comparison, significance),
        _curves_section(comparison),
        _heatmap_section(comparison),
        _errors_section(comparison, predictions),
        _documents_section(comparison, predictions, colours, documents),
    ]
    return page_head(f"bertner report: {comparison.runs_dir}") + "\n".join(sections) + page_tail()


def _header(comparison: Comparison) -> str:
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    skipped = f", {len(comparison.incomplete)} incomplete skipped" if comparison.incomplete else ""
    pruned = sum(run.pruned for run in comparison.runs)
    skipped += f", {pruned} pruned (in no group)" if pruned else ""
    data = comparison.data_sets
    trained = (f"trained on {escape(data[0])}" if len(data) == 1 else
               f"trained on {len(data)} different data sets ({escape(', '.join(data))}), each compared on its own")
    return (f"<h1>bertner report: {escape(comparison.runs_dir)}</h1>\n"
            f'<p class="muted">{len(comparison.runs)} runs in {len(comparison.groups)} groups{skipped}, {trained}; '
            f"grouped by {escape(', '.join(comparison.by))}; written {stamp}</p>")


def _f1(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _test_cells(test) -> str:
    if test is None:
        return "<td>-</td><td>-</td>"
    p = test.p_holm if test.p_holm is not None else test.p_value
    return (f"<td>{100 * test.difference:+.1f} [{100 * test.low:.1f}, {100 * test.high:.1f}]</td>"
            f"<td>{escape(format_p(p).removeprefix('p = ').removeprefix('p '))}</td>")


def _comparison_section(comparison: Comparison, significance: BaselineComparison | None) -> str:
    """One table per data set (groups of different data are never compared), with each group's difference to the
    data set's baseline."""
    rows = {(d.data, d.group): d for d in significance.differences} if significance else {}
    head = ("<tr><th class=name>group</th><th>runs</th><th>mean F1</th><th>std</th><th>min-max</th>"
            "<th>documents: diff [95%]</th><th>p</th><th>seeds: diff [95%]</th><th>p</th><th>verdict</th></tr>")
    several = len(comparison.data_sets) > 1
    parts = ["<h2>Comparison</h2>"]
    if significance:
        parts.append(f'<p class="muted">Dev F1 in points. Differences against the baseline group of each data set '
                     f"with 95% intervals; p-values Holm-corrected across each data set's comparisons. Documents: "
                     f"paired bootstrap over dev documents ({significance.resamples:,} resamples), pooled over seed "
                     "pairs. Seeds: t test over the runs' best dev F1.</p>")
    for data in comparison.data_sets:
        base = significance.baselines.get(data) if significance else None
        body = []
        for g in comparison.groups_of(data):
            row = rows.get((data, g.name))
            verdict = row.verdict() if row else ("baseline" if base == g.name else "-")
            cells = (_test_cells(row.documents) + _test_cells(row.seeds)) if row else "<td>-</td>" * 4
            body.append(f"<tr><td class=name>{escape(g.name)}</td><td>{g.count}</td><td>{_f1(g.mean_f1)}</td>"
                        f"<td>{_f1(g.std_f1)}</td><td>{_f1(g.min_f1)}-{_f1(g.max_f1)}</td>{cells}"
                        f'<td class="name {verdict if verdict in ("better", "worse") else ""}">{verdict}</td></tr>')
        against = (f"baseline <b>{escape(base)}</b>" if base else "one group: nothing to test" if len(body) == 1 else
                   "no baseline group: nothing is tested")
        parts.append(f"<h3>{escape(data)}: {against}</h3>" if several else f'<p class="muted">Data {escape(data)}; {against}.</p>')
        parts.append(f"<table>{head}{''.join(body)}</table>")
        sentences = [d for d in (significance.differences if significance else []) if d.data == data]
        if sentences:
            parts.append('<ul class="sentences">' + "".join(f"<li>{escape(d.sentence())}</li>" for d in sentences) + "</ul>")
    if significance and significance.without_predictions:
        parts.append(f'<p class="muted">{len(significance.without_predictions)} run(s) have no dev_predictions.jsonl '
                     "(trained before bertner kept them): no document bootstrap for them.</p>")
    return "\n".join(parts)


def _curves_section(comparison: Comparison) -> str:
    figure = comparison_figure(comparison)  # a clear error without matplotlib
    import matplotlib.pyplot as plt  # deferred on purpose: optional and slow to import; comparison_figure checked it is there

    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return ("<h2>Learning curves</h2>\n<p class=\"muted\">Dev micro F1 at each evaluation (left); each group's "
            f'best dev F1, mean and std (right).</p>\n<img alt="dev F1 curves" src="data:image/png;base64,{data}">')


def heat(value: float | None) -> str:
    """A cell colour from white (F1 0) to green (F1 1)."""
    if value is None:
        return "#ffffff"
    v = min(1.0, max(0.0, value))
    red, green, blue = (round(255 - (255 - c) * v) for c in (46, 160, 67))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _heatmap_section(comparison: Comparison) -> str:
    labels = comparison.labels
    if not labels:
        return "<h2>F1 per type</h2><p class=muted>No per-type scores in these runs.</p>"
    head = "<tr><th class=name>type</th>" + "".join(f"<th>{escape(comparison.group_title(g))}</th>" for g in comparison.groups) + "</tr>"
    body = []
    for label in labels:
        cells = []
        for g in comparison.groups:
            value = g.per_type_mean_f1.get(label)
            ink = "#fff" if value is not None and value > 0.65 else "#1f2328"
            cells.append(f'<td style="background:{heat(value)};color:{ink}">{_f1(value)}</td>')
        body.append(f"<tr><td class=name>{escape(label)}</td>{''.join(cells)}</tr>")
    return ("<h2>F1 per type</h2>\n<p class=\"muted\">Best dev F1 per entity type, mean over each group's runs.</p>\n"
            f"<table>{head}{''.join(body)}</table>")


def _run_errors(rows: list[DevPrediction]) -> list[dict]:
    gold = {w.id: w.gold for w in rows}
    predicted = {w.id: w.spans for w in rows}
    return error_kinds(gold, predicted, {w.id: w.text for w in rows}, n_examples=3)


def _best_run(comparison: Comparison, predictions: dict[str, list[DevPrediction] | None]) -> RunResult | None:
    """The run with dev predictions and the best dev F1 (runs are listed data set by data set, so not the first)."""
    kept = [r for r in comparison.runs if predictions.get(r.name) and not r.pruned]
    return max(kept, key=lambda r: r.best_f1 if r.best_f1 is not None else -1.0) if kept else None


def _errors_section(comparison: Comparison, predictions: dict[str, list[DevPrediction] | None]) -> str:
    columns = []
    for g in comparison.groups:
        counted = [_run_errors(predictions[name]) for name in g.runs if predictions.get(name)]
        if not counted:
            continue
        mean = {kind: sum(next(k["count"] for k in kinds if k["kind"] == kind) for kinds in counted) / len(counted)
                for kind in KINDS}
        columns.append((g, mean))
    if not columns:
        return "<h2>Error kinds</h2><p class=muted>No run here has dev_predictions.jsonl (trained before bertner kept them).</p>"
    order = sorted(KINDS, key=lambda kind: -sum(mean[kind] for _, mean in columns))
    best = _best_run(comparison, predictions)
    head = "<tr><th class=name>error kind</th>" + "".join(f"<th>{escape(comparison.group_title(g))}</th>" for g, _ in columns) + "</tr>"
    body = "".join(f"<tr><td class=name>{kind.replace('_', ' ')}</td>" + "".join(f"<td>{mean[kind]:.1f}</td>" for _, mean in columns)
                   + "</tr>" for kind in order)
    return ("<h2>Error kinds</h2>\n<p class=\"muted\">Mistakes of the best checkpoint on dev, mean per run of each group, "
            "most frequent first.</p>\n" + f"<table>{head}{body}</table>\n" + _error_examples(best, _run_errors(predictions[best.name]), order))


def _error_examples(run: RunResult, kinds: list[dict], order: list[str]) -> str:
    by_kind = {k["kind"]: k for k in kinds}
    items = []
    for kind in order[:3]:
        for example in by_kind[kind]["examples"][:2]:
            items.append(f"<li><b>{kind.replace('_', ' ')}</b>: <code>{escape(example)}</code></li>")
    if not items:
        return ""
    gold, predicted = kinds[0]["marks"]["gold"], kinds[0]["marks"]["predicted"]  # brackets the examples do not hold
    return (f"<h3>Examples from {escape(run.name)} (best dev F1)</h3>\n<p class=\"muted\">{escape(gold[0])}gold{escape(gold[1])} and "
            f"{escape(predicted[0])}predicted{escape(predicted[1])} entities in context.</p>\n<ul>{''.join(items)}</ul>")


def _documents_section(comparison: Comparison, predictions: dict[str, list[DevPrediction] | None],
                       colours: dict[str, str], documents: int) -> str:
    """The best run's dev windows where gold and prediction disagree most, gold left, prediction right."""
    best = _best_run(comparison, predictions)
    if best is None or documents <= 0:
        return "<h2>Dev documents</h2><p class=muted>No run here has dev_predictions.jsonl.</p>"
    rows = predictions[best.name]
    disagreement = Counter({i: len(set(w.gold) ^ set(w.spans)) for i, w in enumerate(rows)})
    chosen = sorted(i for i, _ in disagreement.most_common(documents))
    parts = [f"<h2>Dev documents</h2>\n<p class=\"muted\">From {escape(best.name)} (best dev F1, on {escape(best.data)}): the {len(chosen)} "
             "windows where gold and prediction differ most. Hover over an entity for its label.</p>", label_toggle(),
             legend(colours)]
    for i in chosen:
        w = rows[i]
        hits = len(set(w.gold) & set(w.spans))
        parts.append(f"<h3>{escape(w.id)}</h3><p class=muted>{len(w.gold)} gold, {len(w.spans)} predicted, {hits} exact</p>"
                     f'<div class="side"><div><b>gold</b><div class="text">{highlight(w.text, w.gold, colours)}</div></div>'
                     f'<div><b>predicted</b><div class="text">{highlight(w.text, w.spans, colours)}</div></div></div>')
    return "\n".join(parts)


def write_report(comparison: Comparison, output: Path, baseline: str | None = None, documents: int = DOCUMENTS,
                 resamples: int = RESAMPLES) -> Path:
    """Build the page and write it atomically."""
    write_text(output, build_report(comparison, baseline, documents, resamples))
    return output
