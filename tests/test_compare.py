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
             per_type=None, **config):
    folder.mkdir(parents=True)
    settings = dict(data="data/processed", model="tiny", crf=crf, gru=gru, crf_lr_mult=crf_lr_mult, seed=seed,
                    epochs=2, lr=None, output=str(folder), log_every=20, **config)
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    variant = "bert" + ("+gru" if gru else "") + ("+crf" if crf else "+softmax")
    per_type = per_type or {"Disease": min(1.0, f1 + 0.05), "Drug": max(0.0, f1 - 0.05)}  # scores stay in [0, 1]
    summary = dict(
        format=1, variant=variant, encoder="tiny", alignment="char", crf=crf, gru=gru, crf_lr_mult=crf_lr_mult,
        head_lr_mult=1.0, lr=1e-3, seed=seed, epochs=2, steps=steps[-1], best_f1=f1, best_step=steps[-1],
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
    assert [(g.key["variant"], g.key["crf_lr_mult"], g.count) for g in c.groups] == [
        ("bert+crf", 100, 2), ("bert+softmax", 1.0, 2), ("bert+crf", 1, 1)]
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
    assert [cell.strip() for cell in row.split("│")[1:-1]] == ["bert+crf", "1", "0.6000", "-", "0.6000", "0.6000"]


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
    bad = fake_run(runs / "bad", f1=0.99)
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
