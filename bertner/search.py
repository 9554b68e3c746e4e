"""Searches: a sweep's `search:` ranges sampled by Optuna (TPE), and pruning of runs that fall behind.

A sweep file may hold, beside or instead of its `grid:`, a `search:` mapping of training settings to ranges:

    search:
      lr: {low: 1.0e-5, high: 1.0e-3, log: true}   # a number in [low, high]; log: sampled on a log scale
      dropout: {low: 0.0, high: 0.3, step: 0.05}   # step: low, low + step, ... up to high
      crf_lr_mult: {choices: [1, 10, 100]}         # one of these values
    sampler_seed: 0                                # optional (default 0): the same seed, the same trials

`bertner sweep FILE --trials N` trains N runs ("trials"), each with values Optuna's TPE sampler picks from how
the earlier trials scored (their best dev F1, maximised); `--prune` stops a trial whose dev F1 at an evaluation
is below the median of the finished trials' at the same step (Optuna's MedianPruner). Without `search:` a sweep
is the grid it always was.

Rules:
- A key is a training setting (TrainConfig's field names; - or _ both work) that is neither in the base settings
  nor in the grid. A range is for number settings (whole numbers for int settings, as config.py types them):
  low < high, both inside the setting's range (config.py's LIMITS); `log` needs low > 0 and no `step`; with
  `step`, high - low is a multiple of it. `choices` is a non-empty list of distinct valid values, for any setting
  but a list (lexicon). `output`, `data` and `seed` are not searched: a folder is not a setting to tune, dev F1s
  of different data do not compare, and the seed that scores best is luck (put seeds in the grid). Nor are `crf`,
  `gru` and `model`, which decide whether other settings have an effect: list them in the grid.
- Grid and search: every grid combination is searched on its own, N trials each, in a study of its own named by
  the combination's run name (`tiny-crf`, `tiny-crf-seed2`): a softmax run's learning rate never steers a CRF
  run's, and pruning compares runs of one combination. A searched setting that has no effect in a combination
  (crf_lr_mult without crf) is not sampled there, and a combination where none has one is trained once, as a
  grid run.
- Repeatable: each trial's sampler is a TPESampler seeded from `sampler_seed` and the number of trials with a
  result before it (`next_trial`), so the same file gives the same trials, also when a search is interrupted
  and started again (a restarted sampler seeded once would draw its first values again). Training on CPU with
  a fixed seed is repeatable, so the scores the sampler sees, and hence the whole search, are too.
- Resumable: the studies are kept in `<sweep folder>/study.db` (SQLite; `study_storage`). `--trials N` is each
  combination's total: trials already in study.db count, so the same command continues an interrupted search
  and a larger N extends one. A trial that was interrupted (Ctrl-C, a crash) is trained again with its values
  under its name. A study.db whose ranges differ from the file's is refused (`check_space`).
- A run that fails in training (its loss became NaN) is a failed trial, and counts; a run that finishes with no
  dev F1 (no dev set) too.
- Each trial's run folder is `<combination>-trial<number>-<values>`, e.g. `tiny-crf-trial003-lr0.000321-x10`:
  Optuna's trial number, then the sampled values in file order, numbers to 3 significant digits
  (`bertner.sweep.trial_run_name`). The run's config.yaml holds the exact values.

The pieces, for any driver of trials (the sequential sweep here, or workers sharing one storage):
`parse_search` (a SearchSpace), `open_study`, `pruner`, `next_trial` (seeded sampler + `study.ask()`),
`SearchSpace.suggest`, `pruning_callback` (the Trainer's `on_evaluation`) and `tell_summary`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from bertner.config import LIMITS, TrainConfig, coerce_setting, config_keys, has_effect, setting_kind
from bertner.errors import BertnerError, shown
from bertner.runs import Summary

log = logging.getLogger(__name__)

STUDY_FILE = "study.db"  # in the sweep's folder: every combination's study, one SQLite file
# Settings whose value decides whether another has an effect (the fields' `only_with`: crf, gru, model).
CONDITIONS = {f.metadata["only_with"][0] for f in TrainConfig.__dataclass_fields__.values() if f.metadata["only_with"]}
NOT_SEARCHED = {
    "output": "each run's folder is named by the sweep",
    "data": "dev F1 on different data does not compare",
    "seed": "the seed that scores best is luck, not a setting; list seeds in grid",
    **{key: "it decides which other settings have an effect; list its values in grid" for key in CONDITIONS},
}
RANGE_KEYS = ("low", "high", "log", "step")
ERROR_ATTR = "error"  # a trial's user attribute: why training failed (a failed trial with it counts as done)
RUN_ATTR = "run"  # a trial's user attribute: its run's folder name, kept when an interrupted trial is retried
RETRY_ATTR = "retry_of"  # a trial's user attribute: the number of the interrupted trial it repeats
SPACE_ATTR = "search_space"  # a study's user attribute: the ranges it samples (check_space)


@dataclass(frozen=True)
class Range:
    """Numbers from low to high (both included), on a log scale or in steps; whole numbers for int settings."""

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None
    whole: bool = False  # an int setting: sampled with suggest_int

    def describe(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step, "whole": self.whole}


@dataclass(frozen=True)
class Choices:
    """One of a list of values."""

    values: tuple[Any, ...]

    def describe(self) -> dict[str, Any]:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class SearchSpace:
    """What a search samples: setting -> Range or Choices, in file order."""

    params: dict[str, Range | Choices]

    def __bool__(self) -> bool:
        return bool(self.params)

    def __iter__(self):
        return iter(self.params)

    def describe(self) -> dict[str, Any]:
        """A JSON-able form, stored with a study so that another space is not mixed into it."""
        return {key: spec.describe() for key, spec in self.params.items()}

    def for_settings(self, settings: Mapping[str, Any]) -> SearchSpace:
        """The part that has an effect on a run with these settings (every setting's value: a grid combination's):
        crf_lr_mult is left out where crf is false."""
        return SearchSpace({key: spec for key, spec in self.params.items() if has_effect(key, settings)})

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's value of each setting, in file order, as the setting's type."""
        values = {}
        for key, spec in self.params.items():
            if isinstance(spec, Choices):
                value = trial.suggest_categorical(key, list(spec.values))
            elif spec.whole:
                value = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
            else:
                value = trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)
            values[key] = coerce_setting("search", key, value)
        return values


# -- reading ---------------------------------------------------------------------------------------
def parse_search(source: str | Path, raw: Any, fixed: set[str]) -> SearchSpace:
    """The `search:` mapping of a sweep file, checked: `fixed` are the settings the base or the grid set."""
    where = f"{source}: search"
    if not isinstance(raw, dict) or not raw:
        raise BertnerError(f"{where} must map settings to ranges, e.g. `lr: {{low: 1.0e-5, high: 1.0e-3, log: true}}` "
                           "or `crf_lr_mult: {choices: [1, 10, 100]}`")
    raw = {str(key).replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(raw) - config_keys())
    if unknown:
        raise BertnerError(f"{where}: unknown setting(s): {', '.join(unknown)}")
    both = sorted(set(raw) & fixed)
    if both:
        raise BertnerError(f"{where}: {', '.join(both)} also set at the top level or in grid; keep one")
    params: dict[str, Range | Choices] = {}
    for key, spec in raw.items():
        if key in NOT_SEARCHED:
            raise BertnerError(f"{where}: {key} cannot be searched ({NOT_SEARCHED[key]})")
        params[key] = _parse_param(f"{where}.{key}", key, spec)
    return SearchSpace(params)


def _parse_param(where: str, key: str, spec: Any) -> Range | Choices:
    if not isinstance(spec, dict):
        raise BertnerError(f"{where} must be a mapping: {{low: ..., high: ...}} or {{choices: [...]}}, got {shown(spec)}"
                           + ("; a list of values to try each belongs in grid" if isinstance(spec, list) else ""))
    kind, _ = setting_kind(key)
    if "choices" in spec:
        extra = sorted(set(map(str, spec)) - {"choices"})
        if extra:
            raise BertnerError(f"{where}: choices cannot be combined with {', '.join(extra)}")
        return _parse_choices(where, key, kind, spec["choices"])
    unknown = sorted(set(map(str, spec)) - set(RANGE_KEYS))
    if unknown:
        raise BertnerError(f"{where}: unknown key(s) {', '.join(unknown)} (a range has low, high, log, step; "
                           "a list has choices)")
    if kind not in ("int", "float"):
        raise BertnerError(f"{where}: {key} is not a number, so it has no range; give {{choices: [...]}}")
    missing = [k for k in ("low", "high") if spec.get(k) is None]
    if missing:
        raise BertnerError(f"{where} needs {' and '.join(missing)}")
    low = coerce_setting(f"{where}.low", key, spec["low"])
    high = coerce_setting(f"{where}.high", key, spec["high"])
    if low >= high:
        raise BertnerError(f"{where}: low must be less than high, got low {low:g} and high {high:g}")
    use_log = spec.get("log", False)
    if not isinstance(use_log, bool):
        raise BertnerError(f"{where}.log must be true or false, got {shown(use_log)}")
    step = spec.get("step")
    if use_log and low <= 0:
        raise BertnerError(f"{where}: log needs low > 0, got {low:g}")
    if step is not None:
        if use_log:
            raise BertnerError(f"{where}: log and step cannot be combined (a log scale has no even steps)")
        step = _step(where, kind, step, low, high)
    return Range(low, high, use_log, step, whole=kind == "int")


def _step(where: str, kind: str, value: Any, low: int | float, high: int | float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BertnerError(f"{where}.step must be a positive number, got {shown(value)}")
    try:
        step = float(value)
    except ValueError:
        raise BertnerError(f"{where}.step must be a positive number, got {shown(value)}") from None
    if not math.isfinite(step) or step <= 0:
        raise BertnerError(f"{where}.step must be a positive number, got {shown(value)}")
    if kind == "int":
        if step != int(step):
            raise BertnerError(f"{where}.step must be a whole number, got {shown(value)}")
        step = int(step)
    # Exact arithmetic on the decimals as written: 0.3 - 0 is a multiple of 0.05 though not in binary floats.
    count = (Fraction(str(high)) - Fraction(str(low))) / Fraction(str(step))
    if count.denominator != 1:
        raise BertnerError(f"{where}: high - low ({high - low:g}) must be a multiple of step ({step:g})")
    return step


def _parse_choices(where: str, key: str, kind: str, choices: Any) -> Choices:
    if kind == "list":
        raise BertnerError(f"{where}: {key} takes a list of values, which a search cannot sample; put it in grid")
    if not isinstance(choices, list) or not choices:
        raise BertnerError(f"{where}.choices must be a non-empty list of values, got {shown(choices)}")
    values = tuple(coerce_setting(f"{where}.choices", key, value) for value in choices)
    if len(set(map(repr, values))) != len(values):
        raise BertnerError(f"{where}.choices lists a value twice")
    if key == "trust_remote_code" and True in values:
        raise BertnerError(f"{where}: trust_remote_code: true is not taken from a file; only the --trust-remote-code "
                           "flag on the command line lets a --model folder run its own code")
    return Choices(values)


def parse_sampler_seed(source: str | Path, value: Any) -> int:
    """The file's `sampler_seed` (default 0), a whole number in the training seed's range."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not LIMITS["seed"].accepts(value, whole=True):
        raise BertnerError(f"{source}: sampler_seed must be a whole number of at least 0, got {shown(value)}")
    return value


# -- studies, samplers, pruners --------------------------------------------------------------------
def study_storage(folder: str | Path) -> str:
    """The storage URL of a sweep folder's studies: `sqlite:///<folder>/study.db`."""
    return f"sqlite:///{Path(folder).resolve() / STUDY_FILE}"


def sampler(seed: int, trials_before: int = 0) -> optuna.samplers.TPESampler:
    """Optuna's TPE sampler for the trial that has `trials_before` trials with a result before it, seeded from both.

    TPE draws its first 10 trials at random (its n_startup_trials), then from the scores: one seed per trial
    keeps the draws the same whether the search ran in one go or was started again.
    """
    state = np.random.SeedSequence([seed, trials_before]).generate_state(1)[0]
    return optuna.samplers.TPESampler(seed=int(state))


def pruner(prune: bool) -> optuna.pruners.BasePruner:
    """`--prune`: the median rule; otherwise none (trials still report their evaluations, to see in the study).

    n_startup_trials=3: nothing is pruned until three trials have finished, since the median of one or two runs is
    one run's luck and a CPU search is often 6 to 20 trials (Optuna's 5 would leave few to prune). n_warmup_steps=0:
    the steps reported are evaluations, which come after an epoch or --eval-every steps, so the first one is
    already a fair look; a warm-up counted in steps would depend on each study's run length.
    """
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def open_study(storage_url: str, name: str, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """The study `name` in `storage_url` (created on first use, maximising dev F1), to sample and prune with these.

    Optuna's own per-trial log lines are silenced: the sweep logs each run itself.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage_url, study_name=name, sampler=sampler, pruner=pruner,
                               direction="maximize", load_if_exists=True)


def check_space(study: optuna.Study, space: SearchSpace, source: str | Path) -> None:
    """Record the study's ranges when it is new; refuse a study that samples other ranges than `space`."""
    described = json.loads(json.dumps(space.describe()))  # as stored: tuples become lists
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, described)
    elif stored != described:
        raise BertnerError(f"{source}: the search differs from the one study {study.study_name} in {STUDY_FILE} was "
                           f"sampled with ({json.dumps(stored)}); put it in another output folder, or delete "
                           f"{STUDY_FILE} and the study's runs to start it again")


def counts_as_done(trial: FrozenTrial) -> bool:
    """Finished with a result: complete, pruned, or failed in training. Interrupted trials are retried instead."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs)


def done_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if counts_as_done(t)]


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Retry the trials that were interrupted (left running, or stopped without a result): each is marked failed
    (without an error, so it does not count) and its values are queued, with its run's name, for `next_trial`.

    Only for a driver that knows no other process is running trials of the study (the sequential sweep holds the
    folder's lock); returns the numbers of the trials queued again.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    queued = []
    for trial in trials:
        interrupted = trial.state == TrialState.RUNNING or (
            trial.state == TrialState.FAIL and ERROR_ATTR not in trial.user_attrs)
        if not interrupted or trial.number in retried:
            continue
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:  # stopped before its values were drawn: nothing to repeat, a new trial takes its place
            study.enqueue_trial(trial.params, user_attrs={RUN_ATTR: trial.user_attrs.get(RUN_ATTR), RETRY_ATTR: trial.number})
            queued.append(trial.number)
    return queued


def next_trial(study: optuna.Study, seed: int) -> optuna.Trial:
    """The study's next trial (a queued retry first), its sampler seeded from `seed` and the trials done before it."""
    study.sampler = sampler(seed, len(done_trials(study)))
    return study.ask()


def pruning_callback(trial: optuna.Trial) -> Callable[[int, float], bool]:
    """The Trainer's `on_evaluation` for `trial`: each evaluation's dev F1 reported at its step; True when the
    study's pruner says to stop."""
    def on_evaluation(step: int, f1: float) -> bool:
        trial.report(f1, step)
        return trial.should_prune()

    return on_evaluation


def tell_summary(study: optuna.Study, trial: optuna.Trial, summary: Summary) -> TrialState:
    """Tell the study how the trial's run ended: pruned, complete with its best dev F1, or failed without one."""
    if summary.pruned:
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    if summary.best_f1 is None:
        trial.set_user_attr(ERROR_ATTR, "no dev F1 (the data has no dev set)")
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    study.tell(trial, summary.best_f1)
    return TrialState.COMPLETE


def abandon(study: optuna.Study, trial: optuna.Trial) -> None:
    """A trial stopped from outside (Ctrl-C, an error that ends the sweep) before its result was told: marked
    failed without an error, so `requeue_interrupted` tries it again."""
    if study.get_trials(deepcopy=False)[trial.number].state == TrialState.RUNNING:  # trials are listed by number
        study.tell(trial, state=TrialState.FAIL)


def tell_failure(study: optuna.Study, trial: optuna.Trial, error: str | None) -> None:
    """A trial whose run did not finish: with `error` (training failed) it counts as done; without, it is retried."""
    if error is not None:
        trial.set_user_attr(ERROR_ATTR, error)
    study.tell(trial, state=TrialState.FAIL)


# -- what a search found ---------------------------------------------------------------------------
@dataclass
class SearchOutcome:
    """One study's trials counted, and its best complete trial: run, dev F1 and sampled values."""

    name: str
    complete: int
    pruned: int
    failed: int
    best_run: str | None = None
    best_f1: float | None = None
    best_values: dict[str, Any] | None = None


def search_outcome(study: optuna.Study) -> SearchOutcome:
    trials = done_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    outcome = SearchOutcome(study.study_name, len(complete), sum(t.state == TrialState.PRUNED for t in trials),
                            sum(t.state == TrialState.FAIL for t in trials))
    if complete:
        best = max(complete, key=lambda t: (t.value, -t.number))  # the earliest of equals
        outcome.best_run, outcome.best_f1, outcome.best_values = best.user_attrs.get(RUN_ATTR), best.value, dict(best.params)
    return outcome


def trials_done(folder: str | Path, name: str) -> int:
    """How many trials of study `name` in `folder`'s study.db are done (0 when neither exists; nothing is created)."""
    if not (Path(folder) / STUDY_FILE).is_file():
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=study_storage(folder))
    except KeyError:  # no such study yet
        return 0
    return len(done_trials(study))
