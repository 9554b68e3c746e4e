"""`bertner compare`: hand-written run directories, so the expected means and standard deviations are exact."""

import json
import statistics

import pytest
import yaml
from typer.testing import CliRunner

from bertner.cli import app
from bertner.compare import compare_runs
from bertner.errors import BertnerError, RunError

runner = CliRunner()


def fake_run(folder, crf=False, gru=False, crf_lr_mult=1.0, seed=1, f1=0.5, steps=(10, 20), train_seconds=12.0,
             per_type=None, data="data/processed", train_sha=None, **config):
    """A finished run; with `train_sha` also a data_fingerprint.json saying which data it trained on."""
    folder.mkdir(parents=True)
    if train_sha is not None:
        (folder / "data_fingerprint.json").write_text(json.dumps({
            "train": {"file": f"{data}/train.jsonl", "sha256": train_sha, "documents": ["a"]},
            "dev": {"file": f"{data}/dev.jsonl", "sha256": "dev-" + train_sha, "documents": ["b"]}}))
    settings = {**dict(data=data, model="tiny", crf=crf, gru=gru, crf_lr_mult=crf_lr_mult, seed=seed,
                       epochs=2, lr=None, output=str(folder), log_every=20), **config}
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    variant = "bert" + ("+gru" if gru else "") + ("+crf" if crf else "+softmax")
    per_type = per_type or {"Disease": min(1.0, f1 + 0.05), "Drug": max(0.0, f1 - 0.05)}  # scores stay in [0, 1]
    summary = dict(
        format=1, variant=variant, encoder="tiny", alignment="char", crf=crf, gru=gru, crf_lr_mult=crf_lr_mult,
        head_lr_mult=1.0, lr=settings["lr"] or 1e-3, seed=seed, epochs=settings["epochs"], steps=steps[-1], best_f1=f1, best_step=steps[-1],
        best_precision=f1, best_recall=f1,
        best_per_type={k: {"precision": v, "recall": v, "f1": v, "support": 10} for k, v in per_type.items()},
        train_seconds=train_seconds, tokens_per_second=1234.5, parameters=1000, device="cpu", precision="fp32",
        train_windows=100, dev_windows=10, run_dir=str(folder),
    )
    (folder / "summary.json").write_text(json.dumps(summary))
    curve = [f1 * (i + 1) / len(steps) for i in range(len(steps))]
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "epoch": i + 1, "dev_loss": 1.0, "micro": {"precision": c, "recall": c, "f1": c, "support": 20},
                    "macro": {}, "per_type": {}, "is_best": True}) + "\n"
        for i, (s, c) in enumerate(zip(steps, curve))
    ))
    return folder


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    fake_run(root / "softmax-seed1", seed=1, f1=0.70)
    fake_run(root / "softmax-seed2", seed=2, f1=0.74)
    fake_run(root / "study" / "crf-x100-seed1", crf=True, crf_lr_mult=100, seed=1, f1=0.80)
    fake_run(root / "study" / "crf-x100-seed2", crf=True, crf_lr_mult=100, seed=2, f1=0.86)
    fake_run(root / "study" / "crf-x1-seed1", crf=True, crf_lr_mult=1, seed=1, f1=0.60)
    return root


def test_runs_are_found_recursively_sorted_and_grouped_by_everything_but_seed(runs):
    c = compare_runs(runs)
    assert [r.name for r in c.runs] == [
        "study/crf-x100-seed2", "study/crf-x100-seed1", "softmax-seed2", "softmax-seed1", "study/crf-x1-seed1"]
    assert c.by == ["variant", "crf_lr_mult"]
    # A softmax run's CRF multiplier means nothing: None, so it never splits a group.
    assert [(g.key["variant"], g.key["crf_lr_mult"], g.count) for g in c.groups] == [
        ("bert+crf", 100, 2), ("bert+softmax", None, 2), ("bert+crf", 1, 1)]
    assert [g.name for g in c.groups] == ["bert+crf, crf_lr_mult=x100", "bert+softmax", "bert+crf, crf_lr_mult=x1"]
    top = c.groups[0]
    assert top.mean_f1 == pytest.approx(0.83)
    assert top.std_f1 == pytest.approx(statistics.stdev([0.80, 0.86]))  # sample std, n-1
    assert top.std_f1 == pytest.approx(0.0424264, abs=1e-6)
    assert (top.min_f1, top.max_f1) == (0.80, 0.86)
    assert top.runs == ["study/crf-x100-seed2", "study/crf-x100-seed1"]
    assert top.per_type_mean_f1["Disease"] == pytest.approx(0.88)
    assert c.groups[-1].std_f1 is None and c.groups[-1].count == 1
    assert c.runs[0].curve == [(10, pytest.approx(0.43)), (20, pytest.approx(0.86))]


def test_by_chooses_the_grouping_and_unknown_columns_are_refused(runs):
    c = compare_runs(runs, by=["variant"])
    assert [(g.key, g.count) for g in c.groups] == [({"variant": "bert+crf"}, 3), ({"variant": "bert+softmax"}, 2)]
    assert c.groups[0].mean_f1 == pytest.approx((0.80 + 0.86 + 0.60) / 3)
    c = compare_runs(runs, by=["seed"])
    assert sorted(g.count for g in c.groups) == [2, 3]
    with pytest.raises(BertnerError, match="unknown --by column.*colour.*valid:.*crf_lr_mult.*variant"):
        compare_runs(runs, by=["variant", "colour"])


def test_cli_table_json_and_per_type(runs):
    result = runner.invoke(app, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert "0.8600" in result.stdout and "bert+crf" in result.stdout and "x100" in result.stdout
    assert "grouped by variant, crf_lr_mult" in result.stdout
    assert "0.0424" in result.stdout and "0.8300" in result.stdout  # std and mean of the crf x100 seeds

    result = runner.invoke(app, ["compare", str(runs), "--by", "variant", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["by"] == ["variant"]
    assert [r["best_f1"] for r in data["runs"]] == [0.86, 0.80, 0.74, 0.70, 0.60]
    assert [g["count"] for g in data["groups"]] == [3, 2]
    assert data["groups"][1]["std_f1"] == pytest.approx(statistics.stdev([0.70, 0.74]))
    assert data["incomplete"] == []

    result = runner.invoke(app, ["compare", str(runs), "--per-type"])
    assert result.exit_code == 0 and "Disease" in result.stdout and "0.9100" in result.stdout

    result = runner.invoke(app, ["compare", str(runs), "--by", "variant,shoe_size"])
    assert result.exit_code == 1 and "shoe_size" in result.output and "valid:" in result.output
    assert "Traceback" not in result.output


def test_single_runs_show_a_dash_for_std(tmp_path):
    fake_run(tmp_path / "a", f1=0.5)
    fake_run(tmp_path / "b", crf=True, f1=0.6)
    result = runner.invoke(app, ["compare", str(tmp_path), "--by", "variant"])
    assert result.exit_code == 0, result.output
    groups = result.stdout.split("grouped by variant")[1]
    row = next(line for line in groups.splitlines() if "bert+crf" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["data/processed", "bert+crf", "1", "0.6000", "-", "0.6000", "0.6000"]


def test_plot_writes_a_png(runs, tmp_path):
    png = tmp_path / "out" / "compare.png"
    result = runner.invoke(app, ["compare", str(runs), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(png.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_incomplete_runs_are_skipped_with_a_warning(runs):
    crashed = runs / "crashed"
    crashed.mkdir()
    (crashed / "config.yaml").write_text("crf: true\n")
    (crashed / "metrics.jsonl").write_text('{"step": 5, "micro": {"f1": 0.1')  # cut short
    interrupted = runs / "interrupted"
    (interrupted / "checkpoint").mkdir(parents=True)
    (interrupted / "config.yaml").write_text("crf: true\n")
    corrupt = fake_run(runs / "corrupt")
    (corrupt / "summary.json").write_text("{not json")

    c = compare_runs(runs)
    assert len(c.runs) == 5
    assert {i.name for i in c.incomplete} == {"crashed", "interrupted", "corrupt"}
    result = runner.invoke(app, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert "skipped crashed" in result.stderr and "--resume" in result.stderr and "corrupt" in result.stderr


def test_no_runs_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 1 and "no finished runs found" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["compare", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not a folder" in result.output
    with pytest.raises(RunError):
        compare_runs(tmp_path)


def test_a_run_directory_itself_can_be_compared(tmp_path):
    run = fake_run(tmp_path / "only", f1=0.9)
    c = compare_runs(run)
    assert [r.name for r in c.runs] == ["only"] and c.groups[0].count == 1


def test_missing_matplotlib_gives_the_install_hint(runs, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = runner.invoke(app, ["compare", str(runs), "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and 'pip install "bertner[plot]"' in result.output


def test_variants_name_the_encoder_type_also_for_old_runs(tmp_path):
    def with_encoder(folder, meta, config):
        (folder / "encoder").mkdir()
        (folder / "encoder" / "bertner_encoder.json").write_text(json.dumps(meta))
        (folder / "encoder" / "config.json").write_text(json.dumps(config))

    # Both summaries say bert+...: what bertner wrote for every transformer encoder before.
    with_encoder(fake_run(tmp_path / "albert", crf=True, f1=0.6), {"name": "models/albert-tiny"}, {"model_type": "albert"})
    with_encoder(fake_run(tmp_path / "tiny", f1=0.5), {"name": "tiny"}, {"model_type": "bert"})
    c = compare_runs(tmp_path)
    assert [r.variant for r in c.runs] == ["albert+crf", "tiny+softmax"]
    result = runner.invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 0 and "albert+crf" in result.stdout and "bert+crf" not in result.stdout.replace("albert+crf", "")


def test_plot_tells_seeds_apart_starts_bars_at_zero_and_says_where_it_went(runs, tmp_path):
    import matplotlib.pyplot as plt

    from bertner.compare import comparison_figure

    c = compare_runs(runs)
    fig = comparison_figure(c)
    try:
        curves, bars = fig.axes
        styles = [(line.get_color(), line.get_linestyle(), line.get_marker()) for line in curves.get_lines()]
        assert len(styles) == len(c.runs) == len(set(styles))  # the two seeds of a setting differ
        assert bars.get_xlim()[0] == 0
        labels = [t.get_text() for t in bars.get_yticklabels()]
        assert "bert+softmax" in labels  # alone: no "crf_lr_mult=-" for a softmax group
        assert not any("=-" in label for label in labels), labels
    finally:
        plt.close(fig)
    png = tmp_path / "plot.png"
    result = runner.invoke(app, ["compare", str(runs), "--plot", str(png)])
    assert result.exit_code == 0 and f"wrote the plot to {png}" in result.stderr


@pytest.mark.parametrize("file,field,value", [
    ("summary.json", "best_f1", "0.9"),
    ("summary.json", "best_f1", None),  # allowed: a run without a dev set
    ("summary.json", "best_step", "ten"),
    ("summary.json", "train_seconds", [12]),
    ("summary.json", "crf", "yes"),
    ("summary.json", "format", "1"),
    ("summary.json", "best_per_type", {"Drug": 0.5}),
    ("config.yaml", "max_length", "abc"),
    ("config.yaml", "dropout", -1),
])
def test_run_files_with_fields_of_the_wrong_type_are_skipped_with_a_warning(runs, file, field, value):
    bad = fake_run(runs / "bad", f1=0.94)  # per-type scores f1 +- 0.05 stay in [0, 1]
    if file == "summary.json":
        summary = json.loads((bad / file).read_text())
        (bad / file).write_text(json.dumps({**summary, field: value}))
    else:
        (bad / file).write_text(yaml.safe_dump({**yaml.safe_load((bad / file).read_text()), field: value}))
    result = runner.invoke(app, ["compare", str(runs)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    listed = [r.name for r in compare_runs(runs).runs]
    if value is None:  # a valid value: the run is listed
        assert "bad" in listed and "skipped bad" not in result.stderr
        return
    assert "bad" not in listed and len(listed) == 5
    warning = " ".join(result.stderr.split())
    assert f"skipped bad: {bad / file}" in warning and field in warning, warning


QUICK_SHA, RUIJIN_SHA = "1f" * 32, "a7" * 32  # two corpora preprocessed into the same folder, one after the other


@pytest.fixture
def two_corpora(tmp_path):
    """The quick start's toy runs and a Ruijin study, both trained from data/processed but on different files."""
    root = tmp_path / "runs"
    for seed in (1, 2):
        fake_run(root / "quickstart" / f"softmax-{seed}", seed=seed, f1=0.20 + 0.01 * seed, train_sha=QUICK_SHA,
                 epochs=60, batch_size=8)
        fake_run(root / "quickstart" / f"crf-{seed}", crf=True, seed=seed, f1=0.30, train_sha=QUICK_SHA, epochs=60,
                 batch_size=8)
        fake_run(root / "ruijin" / f"softmax-{seed}", seed=seed, f1=0.63 + 0.01 * seed, train_sha=RUIJIN_SHA,
                 time_budget=3.0, batch_size=16)
        fake_run(root / "ruijin" / f"crf-{seed}", crf=True, seed=seed, f1=0.65, train_sha=RUIJIN_SHA, time_budget=3.0,
                 batch_size=16)
    return root


def test_runs_on_different_data_are_listed_data_set_by_data_set_and_never_grouped_together(two_corpora):
    c = compare_runs(two_corpora)
    quick, ruijin = f"data/processed ({QUICK_SHA[:8]})", f"data/processed ({RUIJIN_SHA[:8]})"
    assert c.data_sets == [quick, ruijin]  # one folder, two data sets: told apart by their fingerprints
    assert [r.data for r in c.runs] == [quick] * 4 + [ruijin] * 4  # data first, then best F1
    assert [r.best_f1 for r in c.runs[:4]] == pytest.approx([0.30, 0.30, 0.22, 0.21])
    assert [(g.data, g.name, g.count) for g in c.groups] == [
        (quick, "bert+crf", 2), (quick, "bert+softmax", 2), (ruijin, "bert+crf", 2), (ruijin, "bert+softmax", 2)]
    # What differs only between the data sets (epochs, batch size, time budget) groups nothing and names nothing.
    assert c.by == ["variant", "crf_lr_mult"]

    result = runner.invoke(app, ["compare", str(two_corpora)])
    assert result.exit_code == 0, result.output
    runs_table, groups_table = result.stdout.split("grouped by variant, crf_lr_mult")
    assert "data" in runs_table.splitlines()[2] and runs_table.count(ruijin) == 4 and runs_table.count(quick) == 4
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in groups_table.splitlines() if "│" in line]
    assert [row[:3] for row in rows] == [
        [quick, "bert+crf", "2"], [quick, "bert+softmax", "2"], [ruijin, "bert+crf", "2"], [ruijin, "bert+softmax", "2"]]


def test_a_baseline_is_tested_within_each_data_set_only(two_corpora):
    from bertner.significance import compare_to_baseline

    c = compare_runs(two_corpora)
    result = compare_to_baseline(c, "bert+softmax", resamples=100)
    assert result.baselines == {data: "bert+softmax" for data in c.data_sets}
    assert [(d.data, d.group, d.baseline) for d in result.differences] == [(data, "bert+crf", "bert+softmax") for data in c.data_sets]
    # The toy CRF (0.30) is compared with the toy softmax (0.215), not with Ruijin's (0.645).
    assert result.differences[0].seeds.difference == pytest.approx(0.30 - 0.215)

    result = runner.invoke(app, ["compare", str(two_corpora), "--baseline", "bert+softmax", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["data_sets"] == c.data_sets and {run["data"] for run in data["runs"]} == set(c.data_sets)
    assert [d["data"] for d in data["significance"]["differences"]] == c.data_sets


def test_a_data_set_without_the_baseline_group_is_not_tested_and_says_so(two_corpora):
    import shutil

    for seed in (1, 2):
        shutil.rmtree(two_corpora / "quickstart" / f"softmax-{seed}")
    result = runner.invoke(app, ["compare", str(two_corpora), "--baseline", "bert+softmax", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    quick = f"data/processed ({QUICK_SHA[:8]})"
    assert f"{quick}: no group 'bert+softmax' to test against, so its groups are not tested" in result.stdout
    assert f"data/processed ({RUIJIN_SHA[:8]}): bert+crf vs bert+softmax:" in result.stdout


def test_a_group_is_named_by_its_variant_and_only_the_settings_that_tell_it_apart(tmp_path):
    # The recipe of each variant differs in many settings, but the variant alone tells the groups apart.
    for seed in (1, 2):
        fake_run(tmp_path / f"softmax-{seed}", seed=seed, f1=0.6, lr=0.004, batch_size=16, epochs=15, warmup_ratio=0.1)
        fake_run(tmp_path / f"crf-x1-{seed}", crf=True, seed=seed, f1=0.7, lr=5e-5, batch_size=32, epochs=3)
        fake_run(tmp_path / f"crf-x10-{seed}", crf=True, crf_lr_mult=10, seed=seed, f1=0.72, lr=5e-5, batch_size=32,
                 epochs=3)
    c = compare_runs(tmp_path)
    assert set(c.by) == {"variant", "crf_lr_mult", "lr", "epochs", "batch_size", "warmup_ratio"}
    assert [g.name for g in c.groups] == ["bert+crf, crf_lr_mult=x10", "bert+crf, crf_lr_mult=x1", "bert+softmax"]


@pytest.mark.parametrize("given,baseline", [
    ("bert+soft", "bert+softmax"),
    ("BERT+CRF, crf_lr_mult=x1", "bert+crf, crf_lr_mult=x1"),  # exact beats being the start of "...x10"
    ("bert+crf,crf_lr_mult=x10", "bert+crf, crf_lr_mult=x10"),
])
def test_baseline_takes_any_unambiguous_start_of_a_group_name(tmp_path, given, baseline):
    from bertner.significance import compare_to_baseline

    for seed in (1, 2):
        fake_run(tmp_path / f"softmax-{seed}", seed=seed, f1=0.6 + 0.01 * seed)
        fake_run(tmp_path / f"crf-x1-{seed}", crf=True, seed=seed, f1=0.7 + 0.01 * seed)
        fake_run(tmp_path / f"crf-x10-{seed}", crf=True, crf_lr_mult=10, seed=seed, f1=0.72 + 0.02 * seed)
    assert compare_to_baseline(compare_runs(tmp_path), given, resamples=100).baseline == baseline
    result = runner.invoke(app, ["compare", str(tmp_path), "--baseline", given, "--resamples", "100"])
    assert result.exit_code == 0, result.output
    assert f"vs {baseline}:" in result.stdout


def test_an_ambiguous_start_of_a_name_lists_the_groups_it_could_mean(tmp_path):
    fake_run(tmp_path / "a", f1=0.6)
    fake_run(tmp_path / "b", crf=True, f1=0.7)
    result = runner.invoke(app, ["compare", str(tmp_path), "--baseline", "bert+"])
    line = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert result.exit_code == 1 and "names more than one group: 'bert+crf'; 'bert+softmax'" in line


def test_plot_labels_never_squeeze_the_bars_cut_the_title_or_cover_the_values(tmp_path):
    """Long group names, a long data folder and many groups: the bars keep their room, the title and every name
    stay inside the figure, names do not overlap each other, and no value is written over an error bar."""
    import matplotlib.pyplot as plt

    from bertner.compare import comparison_figure

    data = "../shared/data/ruijin/processed-for-the-long-crf-learning-rate-study"
    for i, (mult, lr) in enumerate([(m, lr) for m in (1, 10, 100, 1000) for lr in (1e-3, 5e-5)]):
        f1 = 0.9 if lr == 1e-3 else 0.1
        for seed in (1, 2):  # a wide spread: long error bars next to short and long bars
            fake_run(tmp_path / f"run{i}-{seed}", crf=True, crf_lr_mult=mult, seed=seed, f1=f1 + 0.04 * seed, lr=lr,
                     data=data, train_sha=RUIJIN_SHA, warmup_ratio=0.1 if mult == 1000 else 0.0, gru=bool(i % 2))
    fake_run(tmp_path / "quick", f1=0.2, train_sha=QUICK_SHA)
    c = compare_runs(tmp_path)
    assert len(c.groups) == 9 and len(c.data_sets) == 2
    fig = comparison_figure(c)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        page = fig.bbox
        curves, bars = fig.axes
        assert bars.bbox.width > 0.3 * page.width and curves.bbox.width > 0.3 * page.width  # no panel squeezed
        title = bars.title.get_window_extent(renderer)
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1  # the title whole
        names = sorted((t.get_window_extent(renderer) for t in bars.get_yticklabels()), key=lambda b: b.y0)
        assert all(page.x0 <= b.x0 for b in names)  # every name whole
        assert all(low.y1 <= high.y0 for low, high in zip(names, names[1:]))  # and apart
        values = [t for t in bars.texts if "(n=" in t.get_text()]
        assert len(values) == len(c.groups)
        for text, g in zip(values, c.groups):
            box = text.get_window_extent(renderer)
            low, high = ((g.mean_f1 or 0) - (g.std_f1 or 0), (g.mean_f1 or 0) + (g.std_f1 or 0))
            (x_low, _), (x_high, _) = bars.transData.transform([(low, 0), (high, 0)])
            assert box.x1 <= x_low or box.x0 >= x_high, (text.get_text(), g.name)  # beside the error bar, not on it
            assert bars.bbox.x0 <= box.x0 and box.x1 <= bars.bbox.x1  # inside the panel
    finally:
        plt.close(fig)
