"""`bertner sweep` with a `search:` section: ranges read and checked, Optuna's TPE sampler repeatable by seed (also
across an interruption), a real search end to end, and pruning a bad setting before its last evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml
from cli_helpers import assert_one_line_error, invoke, signalling_step
from synthetic import write_synthetic

from bertner.compare import compare_runs
from bertner.config import TrainConfig
from bertner.engine import tracking
from bertner.engine.trainer import Trainer
from bertner.errors import BertnerError
from bertner.runs import RunDir
from bertner.search import (
    RUN_ATTR,
    Choices,
    Range,
    done_trials,
    next_trial,
    open_study,
    parse_search,
    pruner,
    pruning_callback,
    requeue_interrupted,
    sampler,
    study_storage,
    tell_summary,
)
from bertner.sweep import load_sweep, run_sweep

# A one-layer tiny model: a run of a few steps takes well under a second.
TINY = dict(model="tiny", tiny_layers=1, tiny_hidden=32, tiny_heads=2, batch_size=16, num_threads=1, device="cpu",
            log_every=1)


def write_sweep(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# -- reading ---------------------------------------------------------------------------------------
def test_a_search_section_is_read_with_each_settings_type(tmp_path):
    spec = write_sweep(tmp_path / "s.yaml", data="d", search={
        "lr": {"low": "1e-5", "high": 1e-3, "log": True},  # YAML 1.1 reads 1e-5 as a string: coerced
        "crf-lr-mult": {"choices": [1, 10, 100]},
        "gru_layers": {"low": 1, "high": 3},
        "dropout": {"low": 0.0, "high": 0.3, "step": 0.05},
    }, grid={"crf": [False, True], "gru": [True]}, sampler_seed=7)
    sweep = load_sweep(spec)
    assert sweep.sampler_seed == 7 and not sweep.runs  # every combination is searched
    space = sweep.space.params
    assert space["lr"] == Range(1e-5, 1e-3, log=True)
    assert space["crf_lr_mult"] == Choices((1.0, 10.0, 100.0))
    assert space["gru_layers"] == Range(1, 3, whole=True) and space["dropout"] == Range(0.0, 0.3, step=0.05)
    # Each combination is searched on its own; crf_lr_mult has no effect without a CRF, so it is not sampled there.
    assert [(c.name, list(c.space)) for c in sweep.searches] == [
        ("tiny-gru-softmax", ["lr", "gru_layers", "dropout"]),
        ("tiny-gru-crf", ["lr", "crf_lr_mult", "gru_layers", "dropout"]),
    ]
    assert sweep.searches[1].settings["crf"] is True and "output" not in sweep.searches[1].settings


def test_without_a_grid_one_combination_is_searched_and_a_combination_with_nothing_to_search_is_a_grid_run(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", search={"lr": {"low": 1e-4, "high": 1e-2}}))
    assert [c.name for c in sweep.searches] == ["tiny-softmax"] and not sweep.runs
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", search={"crf_lr_mult": {"choices": [1, 10]}},
                                   grid={"crf": [False, True]}))
    assert [r.name for r in sweep.runs] == ["tiny-softmax"] and [c.name for c in sweep.searches] == ["tiny-crf"]


@pytest.mark.parametrize("search,extra,message", [
    ({"colour": {"choices": [1]}}, {}, "search: unknown setting(s): colour"),
    ({"lr": {"low": 1e-3, "high": 1e-5}}, {}, "search.lr: low must be less than high, got low 0.001 and high 1e-05"),
    ({"lr": {"low": 1e-3, "high": 1e-3}}, {}, "search.lr: low must be less than high"),
    ({"dropout": {"low": 0.0, "high": 0.5, "log": True}}, {}, "search.dropout: log needs low > 0, got 0"),
    ({"crf_lr_mult": {"choices": []}}, {}, "search.crf_lr_mult.choices must be a non-empty list"),
    ({"crf_lr_mult": {"choices": [1, 1.0]}}, {}, "search.crf_lr_mult.choices lists a value twice"),
    ({"dropout": {"low": 0.0, "high": 1.0}}, {}, "search.dropout.high: dropout must be in [0, 1), got 1.0"),
    ({"epochs": {"low": 0, "high": 3}}, {}, "search.epochs.low: epochs must be at least 1, got 0"),
    ({"epochs": {"low": 1.5, "high": 3}}, {}, "search.epochs.low: epochs must be a whole number, got 1.5"),
    ({"lr": {"low": -1, "high": 1e-3}}, {}, "search.lr.low: lr must be positive, got -1"),
    ({"lr": {"low": 1e-5, "high": 1e-3}}, {"lr": 1e-4}, "search: lr also set at the top level or in grid"),
    ({"lr": {"low": 1e-5, "high": 1e-3}}, {"grid": {"lr": [1e-4]}}, "search: lr also set at the top level or in grid"),
    ({"lr": [1e-5, 1e-3]}, {}, "search.lr must be a mapping: {low: ..., high: ...} or {choices: [...]}"),
    ({"lr": {"low": 1e-5}}, {}, "search.lr needs high"),
    ({"lr": {"low": 1e-5, "high": 1e-3, "scale": "log"}}, {}, "search.lr: unknown key(s) scale"),
    ({"lr": {"low": 1e-5, "high": 1e-3, "log": "yes"}}, {}, "search.lr.log must be true or false"),
    ({"lr": {"low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}}, {}, "search.lr: log and step cannot be combined"),
    ({"dropout": {"low": 0.0, "high": 0.3, "step": 0.07}}, {}, "high - low (0.3) must be a multiple of step (0.07)"),
    ({"gru_layers": {"low": 1, "high": 3, "step": 0.5}}, {}, "search.gru_layers.step must be a whole number"),
    ({"crf_lr_mult": {"choices": [1], "low": 1}}, {}, "search.crf_lr_mult: choices cannot be combined with low"),
    ({"alignment": {"low": 1, "high": 2}}, {}, "search.alignment: alignment is not a number, so it has no range"),
    ({"alignment": {"choices": ["char", "words"]}}, {}, "alignment must be one of auto, char, subword, got 'words'"),
    ({"seed": {"low": 1, "high": 9}}, {}, "search: seed cannot be searched (the seed that scores best is luck"),
    ({"crf": {"choices": [False, True]}}, {}, "search: crf cannot be searched (it decides which other settings"),
    ({"lexicon": {"choices": ["jieba"]}}, {}, "search.lexicon: lexicon takes a list of values"),
    ({"trust_remote_code": {"choices": [False, True]}}, {}, "trust_remote_code: true is not taken from a file"),
    ([], {}, "search must map settings to ranges"),
    ({"lr": {"low": 1e-5, "high": 1e-3}}, {"sampler_seed": -1}, "sampler_seed must be a whole number of at least 0"),
    (None, {"sampler_seed": 1, "grid": {"seed": [1]}}, "sampler_seed is the seed of a search"),
])
def test_bad_search_sections_are_one_line_errors_naming_file_and_key(tmp_path, search, extra, message):
    values = {**extra, **({"search": search} if search is not None else {})}
    spec = write_sweep(tmp_path / "bad.yaml", **values)
    with pytest.raises(BertnerError) as error:
        load_sweep(spec)
    text = str(error.value)
    assert message in text and str(spec) in text and "\n" not in text, text


@pytest.mark.parametrize("args,message", [
    (["--trials", "2"], "--trials is for a sweep with a `search:` section"),
    (["--prune"], "--prune is for a sweep with a `search:` section"),
])
def test_search_flags_on_a_grid_are_refused(tmp_path, args, message):
    spec = write_sweep(tmp_path / "grid.yaml", grid={"seed": [1]})
    assert_one_line_error(invoke("sweep", spec, "--dry-run", *args), message)


@pytest.mark.parametrize("args,message", [
    ([], "has a `search:` section: say how many trials to run with --trials N"),
    (["--trials", "0"], "--trials must be at least 1"),
])
def test_a_search_needs_a_number_of_trials(tmp_path, args, message):
    spec = write_sweep(tmp_path / "search.yaml", search={"lr": {"low": 1e-4, "high": 1e-2}})
    assert_one_line_error(invoke("sweep", spec, "--dry-run", *args), message)


def test_a_search_checks_its_data_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_synthetic(tmp_path / "data", n_train=8, n_dev=2)
    search = {"lr": {"low": 1e-4, "high": 1e-2}}
    inside = write_sweep(tmp_path / "inside.yaml", data="data", output="data/runs", search=search)
    assert_one_line_error(invoke("sweep", inside, "--trials", "1"), "it lies inside the input data")
    (tmp_path / "data" / "dev.jsonl").unlink()
    no_dev = write_sweep(tmp_path / "no-dev.yaml", data="data", output="out", search=search)
    assert_one_line_error(invoke("sweep", no_dev, "--trials", "1"), "a search maximises dev F1, but data has no dev.jsonl")
    assert not (tmp_path / "out").exists() and not (tmp_path / "data" / "runs").exists()


# -- sampling: the same seed, the same trials --------------------------------------------------------
SPACE = parse_search("s.yaml", {"lr": {"low": 1e-5, "high": 1e-2, "log": True}}, fixed=set())


def sampled_lrs(folder: Path, name: str, seed: int, count: int) -> list[float]:
    """`count` more trials of study `name` in `folder`'s study.db, each scored by a fixed function of lr (best at
    3e-4), sampled as a sweep samples them; the lr of every trial of the study."""
    study = open_study(study_storage(folder), name, sampler(seed), pruner(False))
    for _ in range(count):
        trial = next_trial(study, seed)
        values = SPACE.suggest(trial)
        study.tell(trial, -abs(math.log10(values["lr"]) - math.log10(3e-4)))
    return [t.params["lr"] for t in study.get_trials()]


def test_the_same_seed_gives_the_same_trials_also_after_an_interruption(tmp_path):
    first = sampled_lrs(tmp_path, "first", seed=5, count=12)
    assert len(set(first)) == 12 and all(1e-5 <= lr <= 1e-2 for lr in first)
    # The same seed in another study: the same trials (6, then 12: past TPE's 10 random start-up trials), also when
    # it is stopped after 6 trials and started again (a new study object and sampler, as a new process has them;
    # a sampler seeded once would draw its first values again).
    again = sampled_lrs(tmp_path, "again", seed=5, count=6)
    assert again == first[:6]
    assert sampled_lrs(tmp_path, "again", seed=5, count=6) == first
    assert sampled_lrs(tmp_path, "other", seed=6, count=2) != first[:2]  # another seed, other trials


def test_an_interrupted_trial_is_tried_again_with_its_values_and_name(tmp_path):
    storage = study_storage(tmp_path)
    sampled_lrs(tmp_path, "s", seed=0, count=2)
    study = open_study(storage, "s", sampler(0), pruner(False))
    cut = next_trial(study, 0)
    values = SPACE.suggest(cut)
    cut.set_user_attr(RUN_ATTR, "tiny-softmax-trial002-x")  # the process dies here: the trial stays "running"

    study = open_study(storage, "s", sampler(0), pruner(False))
    assert requeue_interrupted(study) == [2] and requeue_interrupted(study) == []  # queued once
    assert len(done_trials(study)) == 2  # the cut trial does not count
    retry = next_trial(study, 0)
    assert SPACE.suggest(retry) == values and retry.user_attrs[RUN_ATTR] == "tiny-softmax-trial002-x"


# -- a search end to end ---------------------------------------------------------------------------
def test_a_search_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    data = write_synthetic(tmp_path / "data", n_train=48, n_dev=8)
    spec = write_sweep(tmp_path / "s.yaml", data="data", **TINY, epochs=1, max_steps=2, output="out",
                       search={"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, sampler_seed=3)
    monkeypatch.chdir(tmp_path)
    done = invoke("sweep", spec, "--trials", "2")
    assert done.exit_code == 0, done.output
    out = tmp_path / "out"
    study = optuna.load_study(study_name="tiny-softmax", storage=study_storage(out))
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [t.user_attrs[RUN_ATTR] for t in trials]
    assert names[0].startswith("tiny-softmax-trial000-lr") and names[1].startswith("tiny-softmax-trial001-lr")
    for trial in trials:  # each run trained with its trial's value, and its best dev F1 is the trial's value
        run = RunDir(out / trial.user_attrs[RUN_ATTR])
        assert run.load_config().lr == trial.params["lr"] and run.read_summary().best_f1 == trial.value
        assert run.read_summary().pruned is False
    assert "search tiny-softmax: best" in done.stderr and "dev F1" in done.stdout  # the compare table at the end
    assert not data.joinpath("study.db").exists()

    listed = invoke("sweep", spec, "--trials", "3", "--dry-run")
    assert listed.exit_code == 0 and "2 of 3 done  tiny-softmax" in listed.stdout, listed.output
    more = run_sweep(spec, trials=3)  # 2 done: one more is sampled and trained
    assert more.trained == [t.user_attrs[RUN_ATTR] for t in study.get_trials()][2:] and len(study.get_trials()) == 3
    assert more.searches[0].complete == 3 and more.searches[0].best_run in names + more.trained


def test_a_search_stopped_by_a_signal_trains_the_cut_trial_again_under_its_name(tmp_path, monkeypatch):
    write_synthetic(tmp_path / "data", n_train=48, n_dev=8)
    spec = write_sweep(tmp_path / "s.yaml", data="data", **TINY, epochs=1, max_steps=3, output="out",
                       search={"lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(tracking.Tracker, "step", signalling_step(2))  # the first trial is stopped after step 2
        stopped = invoke("sweep", spec, "--trials", "2")
    assert_one_line_error(stopped, "sweep stopped during tiny-softmax-trial000-lr")
    (first,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert not RunDir(first).is_complete()
    resumed = run_sweep(spec, trials=2)
    assert resumed.trained[0] == first.name and len(resumed.trained) == 2  # the cut trial again, then the second
    study = optuna.load_study(study_name="tiny-softmax", storage=study_storage(tmp_path / "out"))
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]  # the cut trial, its retry, the second trial
    assert study.get_trials()[1].params == study.get_trials()[0].params


# -- pruning ---------------------------------------------------------------------------------------
def test_pruning_stops_a_bad_setting_and_compare_leaves_it_out(tmp_path):
    data = write_synthetic(tmp_path / "data", n_train=120, n_dev=16)
    runs = tmp_path / "runs"
    study = open_study(study_storage(tmp_path), "prune", sampler(0), pruner(True))
    # Three good runs (lr 5e-3, three seeds), then one that learns nothing (lr 1e-7); evaluations at steps 4..16.
    for name, lr, seed in (("good1", 5e-3, 1), ("good2", 5e-3, 2), ("good3", 5e-3, 3), ("bad", 1e-7, 1)):
        config = TrainConfig(data=str(data), output=str(runs / name), **{**TINY, "tiny_hidden": 64}, epochs=2,
                             eval_every=4, warmup_ratio=0.05, lr=lr, seed=seed)
        trial = study.ask()
        summary = Trainer(config, on_evaluation=pruning_callback(trial)).fit()
        tell_summary(study, trial, summary)
        assert summary.pruned is (name == "bad"), (name, summary)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3 + ["PRUNED"]

    bad = RunDir(runs / "bad")
    saved = json.loads(bad.summary_file.read_text())
    assert saved["pruned"] is True and saved["stopped_by"] == "pruned" and saved["steps"] == 4
    assert [step for step, _ in bad.read_curve()] == [4]  # stopped at its first evaluation, before its last (16)
    assert [step for step, _ in RunDir(runs / "good1").read_curve()] == [4, 8, 12, 16]
    assert bad.is_complete() and bad.has_weights() and not bad.checkpoint_dir.exists()  # finished, best weights kept

    by_variant = compare_runs(runs, by=["variant"])
    (group,) = by_variant.groups
    good = [r.best_f1 for r in by_variant.runs if not r.pruned]
    assert group.count == 3 and group.pruned == ["bad"] and "bad" not in group.runs
    assert group.mean_f1 == pytest.approx(sum(good) / 3) and group.min_f1 == min(good)
    assert [r.name for r in by_variant.runs if r.pruned] == ["bad"]
    default = compare_runs(runs)  # grouped by lr: the pruned run's settings make no group
    assert sorted(g.name for g in default.groups) == ["tiny+softmax"] and default.groups[0].count == 3

    table = invoke("compare", runs)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "│ bad" in line)
    assert "pruned" in row and "1 run pruned" in table.stdout
    as_json = json.loads(invoke("compare", runs, "--json").stdout)
    assert {r["name"]: r["pruned"] for r in as_json["runs"]} == {"bad": True, "good1": False, "good2": False, "good3": False}
    scored = invoke("evaluate", runs / "bad", data / "dev.jsonl", "--json")  # a pruned run is a run like any other
    assert scored.exit_code == 0 and json.loads(scored.stdout)["micro"]["f1"] == pytest.approx(saved["best_f1"])
    page = invoke("report", runs, "-o", tmp_path / "report.html")
    assert page.exit_code == 0, page.output
    assert "1 pruned (in no group)" in (tmp_path / "report.html").read_text()
