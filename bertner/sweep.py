"""Sweeps: train every combination of a grid of settings, one run after another, resumably; then compare.

The sweep file is YAML:

    # base settings: any `bertner train` setting (the TrainConfig field names; - or _ both work)
    data: data/processed
    model: tiny
    epochs: 2
    output: runs/quickstart-sweep  # the folder holding the runs (default: runs/<file name>; --output wins)
    grid:                        # setting -> list of values; every combination is one run
      crf: [false, true]
      crf_lr_mult: [1, 10, 100]
      seed: [1, 2, 3]

Rules:
- Every key, at the top level and in `grid`, must be a training setting (or `output`/`grid` at the top level);
  unknown keys are an error naming them. A setting may be in the base or in the grid, not both.
- Paths (`data`, `output`, a local `model`) are relative to the folder you run `bertner sweep` from, as with
  `bertner train`.
- Combinations in which a setting has no effect are collapsed into one run: `crf_lr_mult` without `crf`,
  `gru_hidden`/`gru_layers`/`gru_bidirectional` without `gru`, `tiny_*` without `model: tiny` are reset to their
  defaults, and duplicates dropped. So `crf: [false, true]` x `crf_lr_mult: [1, 10]` gives 3 runs, not 4.
- Each run's folder is named from its grid values, stably: the variant, by the encoder's type (`tiny-softmax`,
  `bert-gru-crf`, `albert-crf`, ...), then every other grid setting in file order: `x100` for crf_lr_mult, `seed2`
  for seed, `lr5e-05` for others, `key`/`no_key` for true/false, a model by its folder name (`tiny` and `bilstm`
  are in the variant already). Example: `runs/study/bert-gru-crf-x100-seed2`. A finished run that an older bertner
  named `bert-...` for any transformer encoder is found under that name and not trained again, when its
  config.yaml names the same model and head (else this run is trained under its own name).
- A run whose folder already holds a finished run is skipped, so running the same sweep again continues where it
  stopped. A folder with an unfinished run goes on from its checkpoint when it has one (an interrupted run, a
  killed worker's), else it is trained again from scratch (`force`).
- A run that stops on a training error (e.g. the loss became NaN at a large crf_lr_mult) is reported and the sweep
  goes on; the command then exits non-zero. Any other error stops the sweep (the run goes back to the queue).
- Which runs wait, run, are done or failed is kept in an Optuna study (`bertner.sweep_storage`): by default the
  SQLite file `sweep.db` in the output folder, or `--storage URL` shared by several machines. `--workers N` trains
  N runs at once (`bertner.sweep_worker`); the same command started elsewhere on the same storage and folder joins
  in, and each run is trained once. The folder's `sweep.json` records its grid: another grid is refused there.
- At the end the compare table of the output folder is printed (`bertner compare OUTPUT` shows it again).
- A `search:` section samples ranges instead of listing values (`--trials N`, `--prune`): see bertner/search.py for
  its rules. With a search, `grid:` is optional; each grid combination is searched on its own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from bertner.compare import Comparison, compare_runs
from bertner.config import (
    TrainConfig,
    build_config,
    check_options,
    coerce_setting,
    config_keys,
    encoder_type,
    has_effect,
    load_yaml,
)
from bertner.engine.tracking import TrainView
from bertner.engine.trainer import Trainer
from bertner.errors import BertnerError, OutputError, TrainingError, shown
from bertner.fileio import check_writable, path_name_problem, temporary_beside
from bertner.lock import LOCK_FILE, FolderLock
from bertner.runs import RunDir, check_output_place, find_runs, read_json
from bertner.search import (
    RUN_ATTR,
    SearchOutcome,
    SearchSpace,
    abandon,
    check_space,
    done_trials,
    next_trial,
    open_study,
    parse_sampler_seed,
    parse_search,
    pruner,
    pruning_callback,
    requeue_interrupted,
    sampler,
    search_outcome,
    study_storage,
    tell_failure,
    tell_summary,
    trials_done,
)
from bertner.sweep_storage import (
    DEFAULT_STORAGE_FILE,
    FAILED,
    HEARTBEAT_SECONDS,
    RUNNING,
    WAITING,
    Claim,
    StudyStatus,
    SweepStorage,
    default_storage_url,
    parse_storage_url,
    study_name_for,
)

if TYPE_CHECKING:
    from bertner.sweep_worker import WorkersView

log = logging.getLogger(__name__)

SWEEP_KEYS = {"grid", "output", "search", "sampler_seed"}
DEFAULTS = TrainConfig()
# setting -> (when it has an effect, why it is dropped otherwise), from each field's `only_with`.
CONDITIONAL: dict[str, tuple[Any, str]] = {
    f.name: (partial(has_effect, f.name), f.metadata["only_with"][2]) for f in fields(TrainConfig) if f.metadata["only_with"]
}
DONE, TODO, RESTART, RESUME = "done", "to train", "restart", "resume"
SWEEP_RECORD = "sweep.json"  # in the output folder: the grid it holds and the study that tracks it
MAX_WORKERS = 256  # worker processes of one command (one machine)
MAX_HEARTBEAT = 3600
# More runs than anyone trains one after another (a 1-minute run each: a week); a larger grid is a typo or a
# generated list, refused before it is expanded (500,000 combinations took a minute and 1.3 GB to list).
MAX_RUNS = 10_000


@dataclass
class SweepRun:
    """One run of a sweep: its name, folder and settings, and whether it is done."""

    name: str
    run_dir: Path
    config: TrainConfig
    grid_values: dict[str, Any]  # this run's value of each grid setting that has an effect

    def status(self) -> str:
        run = RunDir(self.run_dir)
        if run.is_complete():
            return DONE
        if run.is_resumable():
            return RESUME
        if self.run_dir.is_dir() and any(p.name != LOCK_FILE for p in self.run_dir.iterdir()):
            return RESTART
        return TODO

    def settings_changed(self) -> dict[str, tuple[Any, Any]]:
        """For a finished run: settings it was trained with that differ from the sweep's (saved, now)."""
        try:
            saved = RunDir(self.run_dir).load_config().to_dict()
        except BertnerError:
            return {}
        now = self.config.to_dict()
        # A setting left to its default (None) is resolved by training (e.g. lr): not a change.
        return {
            k: (saved.get(k), v) for k, v in now.items() if k != "output" and v is not None and saved.get(k) != v
        }


@dataclass
class SearchedCombination:
    """A grid combination whose runs a search samples: one study, named as the combination's run would be."""

    name: str  # the study's name and its runs' prefix (`tiny-crf`, `tiny-crf-seed2`)
    settings: dict[str, Any]  # every setting of the combination but `output` (defaults, base, grid values)
    space: SearchSpace  # the searched settings that can have an effect here


@dataclass
class Sweep:
    """A sweep file read and expanded: the base settings, the grid and the runs it makes (and, with a search,
    the combinations it searches)."""

    source: Path
    output: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    runs: list[SweepRun]  # the grid's runs (with a search: the combinations where nothing searched has an effect)
    collapsed: int = 0  # grid combinations dropped because a setting had no effect in them
    collapse_reasons: list[str] = field(default_factory=list)
    space: SearchSpace | None = None  # the file's `search:` section
    searches: list[SearchedCombination] = field(default_factory=list)
    sampler_seed: int = 0

    def identity(self) -> dict[str, Any]:
        """What makes two grids the same sweep: their runs' grid values, in order (base settings may change, as
        before: a finished run trained with others is kept, with a warning). Kept in the study and sweep.json."""
        rows = json.dumps([sorted(run.grid_values.items()) for run in self.runs], default=str)
        return {"fingerprint": hashlib.sha256(rows.encode()).hexdigest()[:16], "runs": len(self.runs),
                "file": self.source.name}

    def run_named(self, name: str) -> SweepRun | None:
        return next((run for run in self.runs if run.name == name), None)


@dataclass
class SweepResult:
    """What `run_sweep` did: runs trained, skipped (already finished) and failed, and the comparison."""

    sweep: Sweep
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already finished
    failed: dict[str, str] = field(default_factory=dict)  # name -> error message
    pruned: list[str] = field(default_factory=list)  # trained runs a search's pruner stopped early
    searches: list[SearchOutcome] = field(default_factory=list)  # each searched combination's trials and best run
    left: list[str] = field(default_factory=list)  # neither done nor failed: their worker processes stopped on errors
    comparison: Comparison | None = None  # of the output folder, when any run is finished
    status: StudyStatus | None = None  # the study at the end, with worker processes



# -- reading and expanding -----------------------------------------------------------------------
def _format_part(key: str, value: Any) -> str:
    if key == "crf_lr_mult":
        text = f"x{value:g}"
    elif key == "seed":
        text = f"seed{value}"
    elif key in ("model", "data") and value is not None:
        text = Path(str(value)).name or str(value)
    elif key == "init_embeddings":
        text = f"init-{Path(str(value)).name}" if value is not None else "no_init"
    elif key == "lexicon":  # `lex-jieba+huatuo`: each source by its file or folder name
        text = "lex-" + "+".join(Path(source).stem or source for source in value) if value else "no_lexicon"
    elif isinstance(value, bool):
        text = key if value else f"no_{key}"
    elif isinstance(value, float):
        text = f"{key}{value:g}"
    else:
        text = f"{key}{value}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def run_name(values: dict[str, Any], grid_keys: list[str]) -> str:
    """`bert-gru-crf-x100-seed2`: the variant, then each other grid setting (in file order) that has an effect."""
    variant = TrainConfig(model=str(values["model"]), crf=bool(values["crf"]), gru=bool(values["gru"])).variant.replace("+", "-")
    parts = [variant]
    for key in grid_keys:
        if key in ("crf", "gru") or (key == "model" and values[key] in ("tiny", "bilstm")):
            continue  # spelled by the variant
        condition = CONDITIONAL.get(key)
        if condition and not condition[0](values):
            continue
        parts.append(_format_part(key, values[key]))
    return "-".join(parts)


def trial_run_name(combination: str, number: int, sampled: dict[str, Any]) -> str:
    """`tiny-crf-trial003-lr0.000321-x10`: the combination, the trial's number, each sampled value (3 digits) in file order."""
    parts = [_format_part(key, float(f"{value:.3g}") if isinstance(value, float) else value) for key, value in sampled.items()]
    return "-".join([combination, f"trial{number:03d}", *parts])


def legacy_run_name(name: str, model: str) -> str | None:
    """The name sweeps gave this run before variants named the encoder's type: `bert-...` for every transformer."""
    kind = encoder_type(str(model))
    if kind in ("bert", "bilstm"):
        return None
    return "bert" + name[len(kind):]


def same_model(run_dir: Path, values: dict[str, Any]) -> bool:
    """Whether `run_dir` holds a finished run of this model and head: an old name (`bert-crf`) was shared by
    every transformer encoder, so a run found under one is this run's only if its config.yaml says so."""
    run = RunDir(run_dir)
    if not run.is_complete():
        return False
    try:
        saved = run.read_config_values()
    except BertnerError:
        return False
    return all(saved.get(key) == values[key] for key in ("model", "crf", "gru"))


def expand_grid(base: dict[str, Any], grid: dict[str, list[Any]], output: Path,
                source: str = "sweep") -> tuple[list[SweepRun], int, list[str]]:
    """Every combination of the grid over the base settings, with meaningless settings collapsed."""
    keys = list(grid)
    runs: list[SweepRun] = []
    seen: dict[str, str] = {}  # settings -> run name
    names: dict[str, str] = {}  # run name -> settings
    collapsed, reasons = 0, []
    for combination in itertools.product(*(grid[k] for k in keys)):
        values = {**DEFAULTS.to_dict(), **base, **dict(zip(keys, combination))}
        for key, (applies, reason) in CONDITIONAL.items():
            if not applies(values) and values[key] != getattr(DEFAULTS, key):
                values[key] = getattr(DEFAULTS, key)
                if key in grid and reason not in reasons:
                    reasons.append(reason)
        identity = json.dumps({k: v for k, v in values.items() if k != "output"}, sort_keys=True, default=str)
        if identity in seen:
            collapsed += 1
            continue
        name = run_name(values, keys)
        if name in names:
            raise BertnerError(f"{source}: two different runs would both be named {name}; make the grid values distinct")
        seen[identity], names[name] = name, identity
        run_dir = output / name
        problem = path_name_problem(run_dir)
        if problem is not None:
            raise BertnerError(f"{source}: a run's folder would be too long to create ({problem}); use fewer or shorter grid values")
        legacy = legacy_run_name(name, values["model"])
        if legacy and not run_dir.exists() and same_model(output / legacy, values):
            name, run_dir = legacy, output / legacy  # finished under its old name: kept, not trained again
        config = build_config({**values, "output": str(run_dir)}, {}, str(source))
        grid_values = {k: values[k] for k in keys if not (k in CONDITIONAL and not CONDITIONAL[k][0](values))}
        runs.append(SweepRun(name, run_dir, config, grid_values))
    return runs, collapsed, reasons


def load_sweep(config_file: str | Path, output: str | Path | None = None) -> Sweep:
    """Read and check a sweep file and expand its grid (nothing is trained)."""
    source = Path(config_file)
    values = load_yaml(source)
    known = config_keys()
    unknown = sorted(set(values) - known - SWEEP_KEYS)
    if unknown:
        raise BertnerError(f"{source}: unknown setting(s): {', '.join(unknown)} (valid: grid, search, sampler_seed, output and the "
                           f"`bertner train` settings: {', '.join(sorted(known - {'output'}))})")
    grid_raw = values.pop("grid", None)
    search_raw = values.pop("search", None)
    if "sampler_seed" in values and search_raw is None:
        raise BertnerError(f"{source}: sampler_seed is the seed of a search; there is no `search:` section")
    sampler_seed = parse_sampler_seed(source, values.pop("sampler_seed", None))
    if (grid_raw is not None or search_raw is None) and (not isinstance(grid_raw, dict) or not grid_raw):
        raise BertnerError(f"{source}: needs a `grid:` mapping of setting -> list of values, e.g. `seed: [1, 2, 3]` "
                           "(or a `search:` of ranges)")
    grid_raw = {str(k).replace("-", "_"): v for k, v in (grid_raw or {}).items()}
    unknown = sorted(set(grid_raw) - known)
    if unknown:
        raise BertnerError(f"{source}: unknown setting(s) in grid: {', '.join(unknown)}")
    if "output" in grid_raw:
        raise BertnerError(f"{source}: `output` cannot be in the grid: each run's folder is named from its grid values")
    both = sorted(set(grid_raw) & set(values))
    if both:
        raise BertnerError(f"{source}: {', '.join(both)} set both at the top level and in grid; keep one")

    sizes = {key: len(options) if isinstance(options, list) else 1 for key, options in grid_raw.items()}
    if math.prod(sizes.values()) > MAX_RUNS:  # before any value is read: the grid may be huge
        listed = " x ".join(f"{n:,} {key}" for key, n in sizes.items())
        raise BertnerError(f"{source}: the grid makes {math.prod(sizes.values()):,} combinations ({listed}); a sweep "
                           f"trains at most {MAX_RUNS:,} runs: split it into smaller sweeps")
    file_output = values.pop("output", None)
    base = {k: coerce_setting(str(source), k, v) for k, v in values.items()}
    grid: dict[str, list[Any]] = {}
    for key, options in grid_raw.items():
        options = options if isinstance(options, list) else [options]
        if not options:
            raise BertnerError(f"{source}: grid.{key} is an empty list")
        checked = [coerce_setting(f"{source}: grid", key, v) for v in options]
        if len(set(map(repr, checked))) != len(checked):
            raise BertnerError(f"{source}: grid.{key} lists a value twice")
        grid[key] = checked
    space = parse_search(source, search_raw, set(base) | set(grid)) if search_raw is not None else None
    out_dir = Path(output) if output is not None else Path(file_output) if file_output else Path("runs") / source.stem
    runs, collapsed, reasons = expand_grid(base, grid, out_dir, str(source))
    searches: list[SearchedCombination] = []
    if space is not None:  # each combination where a searched setting can matter is searched; the rest are grid runs
        plain = []
        for run in runs:
            settings = {k: v for k, v in run.config.to_dict().items() if k != "output"}
            part = space.for_settings(settings)
            if part:
                searches.append(SearchedCombination(run.name, settings, part))
            else:
                plain.append(run)
        runs = plain
    return Sweep(source, out_dir, base, grid, runs, collapsed, reasons, space, searches, sampler_seed)


def check_search_options(sweep: Sweep, trials: int | None, prune: bool) -> None:
    """--trials goes with a `search:` section and a search needs it; --prune is for searches."""
    if sweep.space is None:
        if trials is not None or prune:
            flag = "--trials" if trials is not None else "--prune"
            raise BertnerError(f"{flag} is for a sweep with a `search:` section; {sweep.source} has only a grid")
        return
    if trials is None:
        raise BertnerError(f"{sweep.source} has a `search:` section: say how many trials to run with --trials N")
    check_options(trials=trials)
    total = len(sweep.runs) + len(sweep.searches) * trials
    if total > MAX_RUNS:
        raise BertnerError(f"{sweep.source}: {len(sweep.searches):,} searched combinations x {trials:,} trials make "
                           f"{total:,} runs; a sweep trains at most {MAX_RUNS:,}: use fewer trials or a smaller grid")


def search_progress(sweep: Sweep) -> list[tuple[SearchedCombination, int]]:
    """Each searched combination and how many of its trials study.db holds as done (nothing is created)."""
    return [(combination, trials_done(sweep.output, combination.name)) for combination in sweep.searches]


# -- running -------------------------------------------------------------------------------------
class GridPlan:
    """The grid's trials for a worker (`bertner.sweep_worker.Plan`): each names its run."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.positions = {run.name: index for index, run in enumerate(sweep.runs, 1)}

    def run_for(self, claim: Claim) -> tuple[SweepRun, str]:
        run = self.sweep.run_named(claim.run)
        if run is None:  # the study was checked to hold this grid
            raise RuntimeError(f"trial {claim.number} names {claim.run!r}, which is not a run of {self.sweep.source}")
        return run, f"[{self.positions[run.name]}/{len(self.sweep.runs)}] {run.name}"


def run_sweep(config_file: str | Path, output: str | Path | None = None, dry_run: bool = False,
              on_start: Callable[[Trainer], None] | None = None,
              on_compared: Callable[[Comparison], None] | None = None, view: TrainView | None = None,
              trials: int | None = None, prune: bool = False,
              workers: int = 1, storage: str | None = None, heartbeat: int = HEARTBEAT_SECONDS,
              workers_view: WorkersView | None = None) -> SweepResult:
    """Train the sweep's runs (finished ones skipped), `workers` at a time, then compare them.

    `dry_run`: only the plan (`result.sweep`), nothing trained. With one worker the runs train in this
    process, one after another, and `on_start` and `view` go to each Trainer; with more, worker processes
    train them and `workers_view` shows their lines and progress. `storage`: the study's URL (default: sweep.db
    in the output folder); `heartbeat`: seconds between a worker's signs of life. `on_compared(comparison)` is
    told the comparison before a failed run raises TrainingError. With a `search:` section, `trials` runs per
    searched combination (the study's total) and `prune` (bertner.search), in this process.
    """
    check_worker_settings(workers, heartbeat)
    sweep = load_sweep(config_file, output)
    check_search_options(sweep, trials, prune)
    result = SweepResult(sweep)
    if dry_run:
        return result
    if sweep.searches and (workers != 1 or storage is not None):
        raise BertnerError(f"{sweep.source}: a search: section runs in one process (its trials one after another, in "
                           f"the folder's study.db); leave out --workers and --storage, or list the values in grid:")
    if sweep.runs:
        store = open_sweep(sweep, storage, heartbeat)
        _note_finished(sweep, result)
        if workers == 1:
            stopped = _train_here(sweep, store, result, on_start, view)
        else:
            stopped = _train_in_processes(sweep, store, result, workers, heartbeat, workers_view)
        if stopped:
            raise TrainingError(stopped)
    if sweep.searches:
        searched_data = {str(combination.settings["data"]) for combination in sweep.searches}
        for data in sorted(searched_data):
            _check_dev_data(sweep, Path(data))
        # The runs' folders go inside the sweep's; each run's Trainer checks its own against its inputs.
        check_output_place(sweep.output, [sweep.source, *searched_data], may_hold_runs=True)
        if sweep.output.exists() and not sweep.output.is_dir():
            raise BertnerError(f"{sweep.output} exists and is not a folder; the sweep's runs need a folder")
        check_writable(sweep.output, folder=True)
        sweep.output.mkdir(parents=True, exist_ok=True)
        # One search at a time per folder: two would sample the same studies into the same directories.
        with FolderLock.acquire(sweep.output, "running a sweep's search"):
            _search_runs(sweep, result, trials or 0, prune, on_start, view)
    _compare(sweep, result, on_compared)
    return result


def check_worker_settings(workers: int, heartbeat: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise BertnerError(f"--workers must be from 1 to {MAX_WORKERS}, got {workers}")
    if not 1 <= heartbeat <= MAX_HEARTBEAT:
        raise BertnerError(f"--heartbeat must be from 1 to {MAX_HEARTBEAT} seconds, got {heartbeat}")


def open_sweep(sweep: Sweep, storage: str | None, heartbeat: int = HEARTBEAT_SECONDS) -> SweepStorage:
    """Check the output folder and the storage, then record the grid in both: its study holds a trial per run.

    Nothing is written before the folder, its sweep.json and the storage URL are checked; a folder made here
    goes again if the storage then fails.
    """
    output = sweep.output
    # The runs' folders go inside the sweep's; each run's Trainer checks its own against its inputs.
    check_output_place(output, [sweep.source, *{r.config.data for r in sweep.runs}], may_hold_runs=True)
    if output.exists() and not output.is_dir():
        raise BertnerError(f"{output} exists and is not a folder; the sweep's runs need a folder")
    check_writable(output, folder=True)
    identity = sweep.identity()
    record = read_sweep_record(output)
    _check_record(output, record, identity)
    study = record["study"] if record else study_name_for(output)
    url = storage if storage is not None else default_storage_url(output)
    parse_storage_url(url)

    def finished() -> list[tuple[str, float | None, dict[str, Any]]]:
        # Read under the storage's lock: a run a worker finishes meanwhile is seen done, not queued again.
        return [(run.name, finished_f1(run.run_dir) if run.status() == DONE else None, run.grid_values)
                for run in sweep.runs]

    created = not output.exists()
    if storage is not None:  # reached and prepared before the folder is made
        store = SweepStorage.open(url, study, heartbeat)
        store.prepare(identity, finished)
    try:
        output.mkdir(parents=True, exist_ok=True)
        if storage is None:
            store = SweepStorage.open(url, study, heartbeat)
            store.prepare(identity, finished)
        _write_record(output, {"format": 1, "study": study, **identity}, identity)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    return store


def read_sweep_record(output: Path) -> dict[str, Any] | None:
    """The output folder's sweep.json (None before a sweep has run there), checked."""
    path = output / SWEEP_RECORD
    if not path.exists():
        return None
    record = read_json(path)
    if not all(isinstance(record.get(key), str) for key in ("study", "fingerprint")):
        raise BertnerError(f"{path} is corrupt (no study and fingerprint); delete it to record this sweep afresh")
    return record


def _check_record(output: Path, record: dict[str, Any] | None, identity: dict[str, Any]) -> None:
    if record is not None and record["fingerprint"] != identity["fingerprint"]:
        raise BertnerError(
            f"{output} holds the runs of another grid ({record.get('file')}, {record.get('runs')} runs; see "
            f"{output / SWEEP_RECORD}); this one ({identity['file']}, {identity['runs']} runs) differs: sweep into "
            f"another --output, or delete {SWEEP_RECORD} and {DEFAULT_STORAGE_FILE} there to give the folder to this "
            "grid (its finished runs are kept)")


def _write_record(output: Path, record: dict[str, Any], identity: dict[str, Any]) -> None:
    """sweep.json, written once: whole or not at all, and never over another start's (which is checked instead)."""
    target = output / SWEEP_RECORD
    if target.exists():
        return
    tmp = temporary_beside(target, folder=False)
    try:
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.link(tmp, target)
    except FileExistsError:  # another start wrote it meanwhile
        _check_record(output, read_sweep_record(output), identity)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def finished_f1(run_dir: Path) -> float:
    """A finished run's best dev F1 for the study (0.0 without a dev set, or with an unreadable summary)."""
    try:
        f1 = RunDir(run_dir).read_summary().best_f1
    except BertnerError:
        return 0.0
    return f1 if f1 is not None else 0.0


def _note_finished(sweep: Sweep, result: SweepResult) -> None:
    total = len(sweep.runs)
    for index, run in enumerate(sweep.runs, 1):
        if run.status() != DONE:
            continue
        changed = run.settings_changed()
        if changed:
            diff = ", ".join(f"{k}: {shown(a)} -> {shown(b)}" for k, (a, b) in changed.items())
            log.warning(f"{run.name} is finished but was trained with other settings ({diff}); "
                        f"kept as it is: delete {run.run_dir} to train it again")
        log.info(f"[{index}/{total}] {run.name}: already finished, skipped")
        result.skipped.append(run.name)


def _train_here(sweep: Sweep, store: SweepStorage, result: SweepResult, on_start: Callable[[Trainer], None] | None,
                view: TrainView | None) -> str | None:
    """One worker in this process; what stopped it (a signal), or None."""
    from bertner.sweep_worker import Worker, worker_identity  # it imports this module

    worker = Worker(GridPlan(sweep), store, worker_identity(1), on_start=on_start, view=view)
    worker.run()
    result.trained += worker.trained
    result.skipped += worker.skipped
    result.failed.update(worker.failed)
    if worker.stop_signal is None:
        return None
    if worker.stopped_run is None:
        return f"sweep stopped by {worker.stop_signal}; run the same command again to go on: finished runs are skipped"
    name, where = worker.stopped_run
    return (f"sweep stopped by {worker.stop_signal} during {where}; run the same command again to go on: "
            f"finished runs are skipped, {name} goes on from its checkpoint")


def _train_in_processes(sweep: Sweep, store: SweepStorage, result: SweepResult, workers: int, heartbeat: int,
                        view: WorkersView | None) -> str | None:
    """`workers` worker processes (fewer when fewer runs wait); what stopped them (a signal), or None."""
    from bertner.sweep_worker import start_worker_processes, watch_worker_processes, worker_command

    names = [run.name for run in sweep.runs]
    waiting = sum(r.state in (WAITING, RUNNING) for r in store.status(names).runs)
    processes = []
    stop = None
    if waiting:
        uses_gpus = all(run.config.device in ("auto", "cuda") for run in sweep.runs)
        on_line = view.line if view is not None else (lambda number, text: log.info(f"worker {number}: {text}"))
        processes = start_worker_processes(worker_command(sweep.source, sweep.output, heartbeat),
                                           min(workers, waiting), store.url, uses_gpus, on_line)
        stop = watch_worker_processes(processes, store, names, view)
    result.status = status = store.status(names)
    here = os.getpid()
    for record in status.runs:
        if record.state == FAILED:
            result.failed[record.name] = record.error or "failed"
        elif record.outcome in ("trained", "resumed") and (record.worker or {}).get("parent") == here:
            result.trained.append(record.name)
        elif record.state in (WAITING, RUNNING):
            result.left.append(record.name)
    if stop is not None:
        return (f"sweep stopped by {stop}: {len(result.left)} runs are not done; run the same command again to go "
                "on: finished runs are skipped, stopped ones go on from their checkpoints")
    for process in processes:
        code = process.process.returncode
        if code is not None and code < 0:
            log.warning(f"worker {process.number} (PID {process.pid}) was killed by {_signal_name(-code)}; its run "
                        "was queued again")
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _check_dev_data(sweep: Sweep, data: Path) -> None:
    if data.is_dir() and not (data / "dev.jsonl").exists():
        raise BertnerError(f"{sweep.source}: a search maximises dev F1, but {data} has no dev.jsonl; preprocess with "
                           "a dev split (--dev-ratio)")


def _search_runs(sweep: Sweep, result: SweepResult, trials: int, prune: bool,
                 on_start: Callable[[Trainer], None] | None, view: TrainView | None) -> None:
    """Each searched combination's study, one trial after another until `trials` are done (study.db's count)."""
    storage = study_storage(sweep.output)
    for combination in sweep.searches:
        study = open_study(storage, combination.name, sampler(sweep.sampler_seed), pruner(prune))
        check_space(study, combination.space, sweep.source)
        requeue_interrupted(study)  # this process holds the folder's lock: a trial still "running" was cut off
        while (done := len(done_trials(study))) < trials:
            trial = next_trial(study, sweep.sampler_seed)
            try:
                _run_trial(sweep, combination, study, trial, f"[{done + 1}/{trials}]", result, on_start, view)
            except BaseException:
                abandon(study, trial)  # no result: tried again next time
                raise
        outcome = search_outcome(study)
        result.searches.append(outcome)
        if outcome.best_run is not None:
            values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={shown(v)}"
                               for k, v in (outcome.best_values or {}).items())
            log.info(f"search {combination.name}: best {outcome.best_run}, dev F1 {outcome.best_f1:.4f} ({values}); "
                     f"{outcome.complete} complete, {outcome.pruned} pruned, {outcome.failed} failed")


def _run_trial(sweep: Sweep, combination: SearchedCombination, study: Any, trial: Any, counter: str,
               result: SweepResult, on_start: Callable[[Trainer], None] | None, view: TrainView | None) -> None:
    """One trial: its values sampled, its run trained (or a finished one read back), the result told to the study."""
    sampled = combination.space.suggest(trial)
    name = trial.user_attrs.get(RUN_ATTR) or trial_run_name(combination.name, trial.number, sampled)
    trial.set_user_attr(RUN_ATTR, name)
    run_dir = sweep.output / name
    problem = path_name_problem(run_dir)
    if problem is not None:
        raise BertnerError(f"{sweep.source}: a trial's folder would be too long to create ({problem}); search fewer settings")
    config = build_config({**combination.settings, **sampled, "output": str(run_dir)}, {}, str(sweep.source))
    run = SweepRun(name, run_dir, config, sampled)
    status = run.status()
    if status == DONE:  # trained before its trial's result was recorded (or in a study.db since deleted)
        changed = run.settings_changed()
        if changed:
            diff = ", ".join(f"{k}: {shown(a)} -> {shown(b)}" for k, (a, b) in changed.items())
            log.warning(f"{name} is finished but was trained with other settings ({diff}); kept as it is")
        for step, f1 in RunDir(run_dir).read_curve():
            trial.report(f1, step)
        tell_summary(study, trial, RunDir(run_dir).read_summary())
        log.info(f"{counter} {name}: already finished, skipped")
        result.skipped.append(name)
        return
    # A cut trial starts again rather than resuming: its pruner's reports went to the trial that was cut.
    again = status in (RESTART, RESUME)
    log.info(f"{counter} {name}: {'training again from scratch' if again else 'training'}")
    trainer = Trainer(config, force=again, on_start=on_start, view=view, on_evaluation=pruning_callback(trial))
    try:
        summary = trainer.fit()
    except TrainingError as e:
        if trainer.stop_signal:
            raise TrainingError(f"sweep stopped during {name}; run the same command again to go on: finished runs "
                                f"are skipped, {name} starts again") from None
        log.warning(f"{name} failed: {e}")
        tell_failure(study, trial, str(e))
        result.failed[name] = str(e)
        return
    tell_summary(study, trial, summary)
    result.trained.append(name)
    if summary.pruned:
        result.pruned.append(name)
        log.info(f"{counter} {name}: pruned at step {summary.steps}, best dev F1 {summary.best_f1:.4f}")
    elif summary.best_f1 is not None:
        log.info(f"{counter} {name}: best dev F1 {summary.best_f1:.4f}")


def _compare(sweep: Sweep, result: SweepResult, on_compared: Callable[[Comparison], None] | None) -> None:
    if find_runs(sweep.output)[0]:
        result.comparison = compare_runs(sweep.output)
        if on_compared is not None:
            on_compared(result.comparison)
    total = len(result.trained) + len(result.skipped) + len(result.failed)  # the grid's runs and this search's trials
    if result.failed:
        raise TrainingError(
            f"{len(result.failed)} of {total} runs failed: {', '.join(result.failed)}; the rest are in {sweep.output}"
        )
    if result.left:
        raise BertnerError(
            f"{len(result.left)} of {total} runs are not done ({', '.join(result.left)}): the workers stopped on "
            "the errors above; run the same command again to go on")


# -- a worker process and --status ---------------------------------------------------------------
def run_worker(config_file: str | Path, output: str | Path | None, storage: str | None, heartbeat: int,
               number: int) -> None:
    """`bertner sweep GRID --worker K`: one worker process of a sweep its parent command prepared."""
    from bertner.sweep_worker import Worker, worker_identity

    check_worker_settings(1, heartbeat)
    sweep = load_sweep(config_file, output)
    check_writable(sweep.output, folder=True)  # a worker that cannot write the runs claims none
    record = read_sweep_record(sweep.output)
    study = record["study"] if record else study_name_for(sweep.output)
    store = SweepStorage.open(storage if storage is not None else default_storage_url(sweep.output), study, heartbeat)
    store.check_grid(sweep.identity())
    worker = Worker(GridPlan(sweep), store, worker_identity(number, parent=os.getppid()), watch_parent=True)
    worker.run()
    if worker.stop_signal is not None:
        where = f" during {worker.stopped_run[1]}, which went back to the queue" if worker.stopped_run else ""
        raise TrainingError(f"stopped by {worker.stop_signal}{where}")


def sweep_status(config_file: str | Path, output: str | Path | None = None, storage: str | None = None) -> StudyStatus:
    """Each run of the sweep as its study has it (`bertner sweep --status`); nothing is created or changed."""
    sweep = load_sweep(config_file, output)
    record = read_sweep_record(sweep.output)
    study = record["study"] if record else study_name_for(sweep.output)
    url = storage if storage is not None else default_storage_url(sweep.output)
    store = SweepStorage.open(url, study, create=False)
    return store.status([run.name for run in sweep.runs])
