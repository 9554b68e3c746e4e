"""Compare finished runs: one table sorted by dev F1, runs that differ only in seed grouped with mean and std.

Only what the run directories hold is read (config.yaml, summary.json, metrics.jsonl), never TensorBoard, so a
folder of runs copied off a GPU machine compares anywhere. Computing (`compare_runs`) is separate from output
(`plot_comparison` here, the tables in `bertner.cli.compare`); every result is a plain dataclass with `to_dict()`.

    comparison = compare_runs("runs/study", by=["variant", "crf_lr_mult"])
    comparison.groups[0].mean_f1, comparison.groups[0].std_f1, comparison.groups[0].count

Data first: runs trained on different data (their data_fingerprint.json says which train and dev files they saw)
belong to different studies, so runs and groups are listed data set by data set and never grouped or tested across
data sets. Within a data set, by default runs are grouped by every setting except the seed and pure bookkeeping
(output folder, device, threads, logging). `by` picks the grouping columns instead; any training setting or summary
field (variant, encoder, ...) is allowed. A group is named by its variant plus only the settings that tell it apart
from the other groups of its data set (`tiny+crf, crf_lr_mult=x10`), the name `--baseline` takes.

Pruned runs (a search's `--prune` stopped them early: `pruned` in summary.json) are listed, marked, but belong to no
group: their best F1 is that of an unfinished run, so they are left out of every mean, std and `--baseline` test;
each group counts those with its settings in `pruned`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertner.config import TrainConfig, encoder_type, variant_name
from bertner.errors import BertnerError, RunError
from bertner.fileio import atomic_path, check_writable
from bertner.runs import RunDir, find_runs
from bertner.text import plural

# Summary fields that describe the run's settings as actually resolved (lr None -> the real rate, alignment auto ->
# char/subword, ...); they take precedence over config.yaml's values of the same name.
SUMMARY_SETTINGS = ("variant", "encoder", "alignment", "crf", "gru", "crf_lr_mult", "head_lr_mult", "lr", "seed",
                    "epochs", "device", "precision")
# Never part of the default grouping: the seed (that is the point), settings that do not change the result, and the
# data folder (runs are split by the data they trained on before any grouping).
NOT_GROUPED = {"seed", "output", "device", "num_threads", "compile", "log_every", "save_every", "data"}
# Covered by another column in the default display: variant spells crf and gru, encoder spells model.
IMPLIED = {"crf", "gru", "model"}


@dataclass
class RunResult:
    """One finished run as compare reads it: settings, best dev scores and the dev-F1 curve."""

    name: str  # path relative to the compared folder
    path: str
    data: str  # the data set it trained on, as `data_sets` names it
    settings: dict[str, Any]  # config.yaml merged with the summary's resolved settings
    best_f1: float | None
    best_step: int | None
    steps: int | None
    train_seconds: float | None
    tokens_per_second: float | None
    per_type_f1: dict[str, float]
    curve: list[tuple[int, float]]  # (step, dev micro F1) of every evaluation, from metrics.jsonl
    epochs_done: float | None = None  # epochs actually trained (fractional when a time budget stopped it)
    pruned: bool = False  # a search's pruner stopped it early: in no group

    @property
    def variant(self) -> str:
        return self.settings.get("variant", "?")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["curve"] = [list(point) for point in self.curve]
        return d


@dataclass
class GroupResult:
    """Runs with the same grouping values (usually: differing only in seed), with mean, std, min and max F1."""

    data: str  # the data set of its runs
    name: str  # the variant plus the settings that tell it apart from the other groups of its data set
    key: dict[str, Any]  # grouping column -> value
    runs: list[str]  # run names, best first
    count: int
    mean_f1: float | None
    std_f1: float | None  # sample standard deviation (n-1); None for a single run
    min_f1: float | None
    max_f1: float | None
    per_type_mean_f1: dict[str, float]
    pruned: list[str] = field(default_factory=list)  # runs with these settings that were pruned: not in the numbers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IncompleteRun:
    """A folder that looks like a run but cannot be compared, and why (crashed, interrupted, corrupt)."""

    name: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    """What `compare_runs` returns: every run best first, the groups, and what was skipped."""

    runs_dir: str
    by: list[str]  # the grouping columns
    runs: list[RunResult]  # data set by data set, best dev F1 first
    groups: list[GroupResult]  # data set by data set, best mean F1 first
    incomplete: list[IncompleteRun] = field(default_factory=list)
    by_default: bool = True  # `by` was chosen automatically

    @property
    def labels(self) -> list[str]:
        return sorted({label for run in self.runs for label in run.per_type_f1})

    @property
    def data_sets(self) -> list[str]:
        """The data sets of the runs, in the order they are listed."""
        return list(dict.fromkeys(run.data for run in self.runs))

    def groups_of(self, data: str) -> list[GroupResult]:
        return [g for g in self.groups if g.data == data]

    def group_title(self, group: GroupResult) -> str:
        """The group's name, after its data set's when the runs span several (a figure or a page shows them together)."""
        return group.name if len(self.data_sets) == 1 else f"{group.data}: {group.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs_dir": self.runs_dir,
            "by": list(self.by),
            "data_sets": self.data_sets,
            "runs": [r.to_dict() for r in self.runs],
            "groups": [g.to_dict() for g in self.groups],
            "incomplete": [i.to_dict() for i in self.incomplete],
        }


# -- reading -------------------------------------------------------------------------------------
def _name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return path.name if rel == "." else rel


def read_run(run: RunDir, root: Path) -> tuple[RunResult, tuple[str, str]]:
    """One run's settings and results, and which data it trained on (`data_identity`); a file with a field of the
    wrong type is a RunError (the run is skipped)."""
    summary = run.read_summary()
    settings = run.read_config_values()
    # None: a field older runs lack (or a setting that was not resolved), so config.yaml's value stands.
    settings.update({k: getattr(summary, k) for k in SUMMARY_SETTINGS if getattr(summary, k) is not None})
    saved_encoder = saved_encoder_type(run)
    if saved_encoder is not None:
        # Runs written before variants named the encoder's type say `bert+...` whatever it was.
        settings["variant"] = variant_name(saved_encoder, bool(settings.get("crf")), bool(settings.get("gru")))
    elif "variant" not in settings:
        settings["variant"] = TrainConfig(crf=bool(settings.get("crf")), gru=bool(settings.get("gru"))).variant
    if settings.get("time_budget"):
        settings.pop("epochs", None)  # the clock ended the run: its saved epochs never took effect
    per_type = {label: scores.get("f1") for label, scores in summary.best_per_type.items() if scores.get("f1") is not None}
    identity = data_identity(run, settings)
    result = RunResult(
        name=_name(run.path, root), path=str(run.path), data=identity[1], settings=settings, best_f1=summary.best_f1,
        best_step=summary.best_step, steps=summary.steps, train_seconds=summary.train_seconds,
        tokens_per_second=summary.tokens_per_second, per_type_f1=per_type, curve=run.read_curve(),
        epochs_done=summary.epochs_done, pruned=bool(summary.pruned),
    )
    return result, identity


def data_identity(run: RunDir, settings: dict[str, Any]) -> tuple[str, str]:
    """(what identifies the data the run trained on, the data folder's name): the SHA-256 of its train and dev files
    from data_fingerprint.json; a run from before fingerprints is known only by its data folder."""
    folder = str(settings.get("data") or "?")
    fingerprint = run.load_fingerprint()
    if fingerprint is None:
        return f"folder:{folder}", folder
    dev = fingerprint.get("dev") or {}
    return f"sha256:{fingerprint['train']['sha256']}:{dev.get('sha256')}", folder


def name_data_sets(identities: list[tuple[str, str]]) -> dict[str, str]:
    """A name per data identity: the data folder, followed by the start of its hash when one folder held different
    data for different runs (the quick start and a corpus both preprocessed into data/processed)."""
    folders: dict[str, list[str]] = {}
    for key, folder in identities:
        folders.setdefault(key, []).append(folder)
    # The same files under two folder names are one data set: named by the folder most runs gave.
    names = {key: max(sorted(set(given)), key=given.count) for key, given in folders.items()}
    shared = {folder for folder in names.values() if list(names.values()).count(folder) > 1}
    return {key: folder if folder not in shared else
            f"{folder} ({key.split(':')[1][:8]})" if key.startswith("sha256:") else f"{folder} (no fingerprint)"
            for key, folder in names.items()}


def saved_encoder_type(run: RunDir) -> str | None:
    """The encoder type of a run by its encoder/ folder (tiny, bilstm, albert, ...); None without one."""
    meta = run.saved_encoder_meta()
    if meta is None:
        return None
    if meta.get("family") == "bertner-bilstm":
        return "bilstm"
    if meta.get("name") == "tiny":
        return "tiny"
    return encoder_type(str(run.encoder_dir))


# -- grouping ------------------------------------------------------------------------------------
def valid_columns(runs: list[RunResult]) -> list[str]:
    return sorted(set(TrainConfig.__dataclass_fields__) | set(SUMMARY_SETTINGS) | {k for r in runs for k in r.settings})


def default_by(runs: list[RunResult]) -> list[str]:
    """The variant, then every other setting whose value differs between the runs of one data set (seed and
    bookkeeping excepted; a setting that differs only between data sets groups nothing)."""
    columns = ["variant"]
    keys = [k for k in dict.fromkeys(k for r in runs for k in r.settings)]
    for key in keys:
        if key in columns or key in NOT_GROUPED or key in IMPLIED:
            continue
        values = {(r.data, _hashable(setting(r, key))) for r in runs}
        if len(values) > len({r.data for r in runs}):
            columns.append(key)
    # The study's own order first, then the rest as they appear in config.yaml.
    preferred = ["variant", "encoder", "crf_lr_mult"]
    return [c for c in preferred if c in columns] + [c for c in columns if c not in preferred]


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def setting(run: RunResult, column: str) -> Any:
    """A run's value of a grouping column; None for a setting that means nothing in this run, so runs that differ
    only there are one group (the CRF's learning-rate multiplier of a softmax run)."""
    if column == "crf_lr_mult" and run.variant.endswith("softmax"):
        return None
    return run.settings.get(column)


def group_runs(runs: list[RunResult], by: list[str]) -> list[GroupResult]:
    """Runs with the same data and the same values of `by` as one group, named within its data set; pruned runs
    are in no group (settings whose runs were all pruned make none)."""
    buckets: dict[tuple, list[RunResult]] = {}
    for run in runs:  # runs are sorted best first, so each group's run list is too
        key = (run.data, *(_hashable(setting(run, column)) for column in by))
        buckets.setdefault(key, []).append(run)
    groups = []
    for bucket in buckets.values():
        members = [r for r in bucket if not r.pruned]
        if not members:
            continue
        scores = [r.best_f1 for r in members if r.best_f1 is not None]
        labels = sorted({label for r in members for label in r.per_type_f1})
        groups.append(GroupResult(
            data=members[0].data,
            name="",  # below, once the data set's other groups are known
            key={column: setting(members[0], column) for column in by},
            runs=[r.name for r in members],
            count=len(members),
            mean_f1=_mean(scores),
            std_f1=statistics.stdev(scores) if len(scores) >= 2 else None,
            min_f1=min(scores) if scores else None,
            max_f1=max(scores) if scores else None,
            per_type_mean_f1={label: _mean([r.per_type_f1[label] for r in members if label in r.per_type_f1])
                              for label in labels},
            pruned=[r.name for r in bucket if r.pruned],
        ))
    groups.sort(key=lambda g: (g.data, g.mean_f1 is None, -(g.mean_f1 or 0.0)))
    for data in sorted({g.data for g in groups}):
        name_groups([g for g in groups if g.data == data], by)
    return groups


def name_groups(groups: list[GroupResult], by: list[str]) -> None:
    """Name each group of one data set by the first grouping column (the variant) plus only the columns needed to
    tell the groups apart: a column is named when two groups alike in the columns named so far differ in it."""
    named = by[:1]
    for column in by[1:]:
        seen: dict[tuple, Any] = {}
        for g in groups:
            alike = tuple(_hashable(g.key[c]) for c in named)
            if seen.setdefault(alike, _hashable(g.key[column])) != _hashable(g.key[column]):
                named.append(column)
                break
    for g in groups:
        cells = [(column, format_value(column, g.key[column])) for column in named]
        shown = [cell if column == "variant" else f"{column}={cell}" for column, cell in cells if cell != "-"]
        g.name = ", ".join(shown) or format_value(by[0], None)


def compare_runs(runs_dir: str | Path, by: list[str] | None = None) -> Comparison:
    """Read every run under runs_dir (recursively), sort by best dev F1 and group runs that differ only in seed."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise RunError(f"{root} is not a folder; pass the folder holding your run directories (default: runs/)")
    finished, unfinished = find_runs(root)
    incomplete = [IncompleteRun(_name(run.path, root), str(run.path), run.incomplete_reason()) for run in unfinished]
    runs, identities = [], []
    for run in finished:
        try:
            result, identity = read_run(run, root)
        except RunError as e:
            incomplete.append(IncompleteRun(_name(run.path, root), str(run.path), str(e)))
            continue
        runs.append(result)
        identities.append(identity)
    names = name_data_sets(identities)
    for run, (key, _) in zip(runs, identities):
        run.data = names[key]
    if not runs:
        hint = f" ({plural(len(incomplete), 'incomplete run folder')} skipped)" if incomplete else ""
        raise RunError(f"no finished runs found under {root}{hint}; train one with `bertner train` or `bertner sweep`")
    runs.sort(key=lambda r: (r.data, r.best_f1 is None, -(r.best_f1 or 0.0), r.name))
    by_default = not by
    if by:
        by = [c for c in by if c]
        valid = valid_columns(runs)
        unknown = [c for c in by if c not in valid]
        if unknown or not by:
            raise BertnerError(f"unknown --by column(s): {', '.join(unknown) or '(empty)'}; valid: {', '.join(valid)}")
    else:
        by = default_by(runs)
    return Comparison(str(root), list(by), runs, group_runs(runs, by), incomplete, by_default)


# -- output --------------------------------------------------------------------------------------
def format_value(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("_mult") and isinstance(value, (int, float)):
        return f"x{value:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_f1(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{value:.1f}s"


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_comparison(comparison: Comparison, png_path: str | Path) -> Path:
    """Two panels: dev F1 against step for each run, and each group's mean F1 with std error bars. Atomic write."""
    png_path = Path(png_path)
    check_plot_path(png_path)
    fig = comparison_figure(comparison)
    import matplotlib.pyplot as plt

    try:
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return png_path


def check_plot_path(png_path: Path) -> None:
    """Refuse a --plot target that is not a writable .png file name (checked before the runs are read)."""
    if png_path.suffix.lower() != ".png":
        raise BertnerError(f"--plot writes a PNG; give a file name ending in .png (got {png_path})")
    check_writable(png_path)


def comparison_figure(comparison: Comparison):
    """The matplotlib figure `plot_comparison` writes: curves on the left, grouped bars on the right."""
    try:
        import matplotlib
    except ImportError:
        # Escaped because the CLI prints errors as rich markup, where a bare [plot] would vanish.
        raise BertnerError('--plot needs matplotlib: pip install "bertner[plot]"') from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = comparison.groups
    names = [wrap(comparison.group_title(g), LABEL_CHARACTERS) for g in groups]
    # Tall enough for every (wrapped) group name at its font size, so names never overlap one another.
    height = max(5.0, 1.6 + 0.19 * sum(name.count("\n") + 1.6 for name in names))
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [1, 1]})
    try:
        draw_comparison(comparison, curves, bars, plt.get_cmap("tab10" if len(groups) <= 10 else "tab20"), names)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig


LABEL_CHARACTERS = 34  # a group name's line on the bars' axis: longer names wrap (at ", " first), never squeeze the bars
TITLE_CHARACTERS = 60


def wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def draw_comparison(comparison: Comparison, curves: Any, bars: Any, cmap: Any, names: list[str]) -> None:
    """Dev-F1 curves per run on `curves`, each group's mean and std on `bars` (named `names`)."""
    groups = comparison.groups
    # One colour per group, so the seeds of one setting read as one family of curves; within a group each
    # run (seed) has its own line style and marker, so they stay apart.
    style = {name: (cmap(i % cmap.N), LINE_STYLES[j % len(LINE_STYLES)], MARKERS[j % len(MARKERS)])
             for i, g in enumerate(groups) for j, name in enumerate(g.runs)}
    labelled = len(comparison.runs) <= 12
    for run in comparison.runs:
        if run.curve:
            steps, f1 = zip(*run.curve)
            colour, line, marker = style.get(run.name, ("0.55", ":", "x"))  # in no group: a pruned run, in grey
            label = run.name + (" (pruned)" if run.pruned else "")
            curves.plot(steps, f1, marker=marker, markersize=3, linewidth=1.2, color=colour, linestyle=line,
                        label=label if labelled else None)
    curves.set_xlabel("step")
    curves.set_ylabel("dev micro F1")
    curves.set_title("dev F1 during training")
    curves.grid(alpha=0.3)
    if labelled:
        curves.legend(fontsize=7)

    means = [g.mean_f1 or 0.0 for g in groups]
    errors = [g.std_f1 or 0.0 for g in groups]
    positions = list(range(len(groups)))
    bars.barh(positions, means, xerr=errors, capsize=3, color=[cmap(i % cmap.N) for i in positions])
    bars.set_yticks(positions, labels=names, fontsize=7.5)
    bars.invert_yaxis()  # best on top
    bars.set_xlim(0.0, 1.0)  # from 0, so bar lengths compare honestly
    for y, g, mean, error in zip(positions, groups, means, errors):
        # Beside the error bar's end, or inside the bar where that would run off the axis: never on the error bar.
        text, outside = f"{format_f1(g.mean_f1)} (n={g.count})", mean + error <= 0.78
        bars.text(mean + error + 0.015 if outside else mean - error - 0.015, y, text, va="center", fontsize=7.5,
                  ha="left" if outside else "right", bbox={"boxstyle": "square,pad=0.15", "facecolor": "white",
                                                           "edgecolor": "none", "alpha": 0.85})
    for y in range(1, len(groups)):  # a rule between data sets: their groups are never compared
        if groups[y].data != groups[y - 1].data:
            bars.axhline(y - 0.5, color="black", linewidth=0.8)
    bars.set_xlabel("best dev F1: mean and std over runs")
    title = "best dev F1 per group" + (f" of {comparison.data_sets[0]}" if len(comparison.data_sets) == 1 else "")
    bars.set_title(wrap(f"{title}, grouped by {', '.join(comparison.by)}", TITLE_CHARACTERS), fontsize=10)
    bars.grid(axis="x", alpha=0.3)
