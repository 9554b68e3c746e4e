"""Issue 22's attack, families 11-14: outputs that would destroy inputs or runs, code a run brings,
YAML alias bombs, terminal escapes in text.

Each case ends in one `error:` line with nothing written or lost, or in a correct result whose
human-readable text holds no raw control character.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from synthetic import write_synthetic

from bertner.config import TrainConfig
from bertner.engine import tracking
from bertner.engine.trainer import train
from cli_helpers import assert_one_line_error, invoke, signalling_step

TINY_MODEL = ["--tiny-layers", "1", "--tiny-hidden", "32", "--tiny-heads", "2", "--num-threads", "1", "--device", "cpu"]
TINY = [*TINY_MODEL, "--max-steps", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run, data): one tiny finished run."""
    base = tmp_path_factory.mktemp("attack")
    data = write_synthetic(base / "data", n_train=32, n_dev=8, seed=2)
    run = base / "run"
    train(TrainConfig(data=str(data), output=str(run), model="tiny", epochs=1, batch_size=16, tiny_layers=1,
                      tiny_hidden=32, tiny_heads=2, log_every=100, seed=1, num_threads=1, device="cpu"))
    return run, data


@pytest.fixture
def workspace(trained, tmp_path, monkeypatch):
    """A folder with a run, a folder of runs, preprocessed data, a brat gold folder, notes and a grid; the cwd."""
    run, data = trained
    shutil.copytree(run, tmp_path / "run")
    shutil.copytree(run, tmp_path / "runs" / "a")
    shutil.copytree(data, tmp_path / "data")
    (tmp_path / "gold").mkdir()
    (tmp_path / "gold" / "g.txt").write_text("患者有高血压。", encoding="utf-8")
    (tmp_path / "gold" / "g.ann").write_text("T1\tDisease 3 6\t高血压\n", encoding="utf-8")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n.txt").write_text("服用阿司匹林。", encoding="utf-8")
    (tmp_path / "x.txt").write_text("患者有糖尿病。", encoding="utf-8")
    (tmp_path / "grid.yaml").write_text(
        "data: data\nmodel: tiny\ntiny_layers: 1\ntiny_hidden: 32\ntiny_heads: 2\nmax_steps: 1\nnum_threads: 1\n"
        "device: cpu\ngrid:\n  seed: [1]\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and link under `folder` with a hash of what it holds: equal before and after = nothing written or lost."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(root) / name
            key = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[key] = "folder"
    return found


# ----------------------------------------------------------------------------- 11: data loss

def _link(target: str, name: str):
    return lambda: os.symlink(target, name)


def _hard_link(target: str, name: str):
    return lambda: os.link(target, name)


OUTPUT_ON_INPUT = {
    "export-onto-its-run": (["export", "run", "run", "--force"], None),
    "export-into-its-run": (["export", "run", "run/encoder", "--force"], None),
    "export-onto-a-link-to-its-run": (["export", "run", "runlink", "--force"], _link("run", "runlink")),
    "export-onto-a-folder-of-runs": (["export", "run", "runs", "--force"], None),
    "export-into-another-run": (["export", "run", "runs/a/hf"], None),
    "predict-brat-onto-gold": (["predict", "run", "gold", "-f", "brat", "-o", "gold", "--force"], None),
    "predict-brat-into-its-input": (["predict", "run", "gold", "-f", "brat", "-o", "gold/pred"], None),
    "predict-brat-onto-a-folder-holding-its-input": (["predict", "run", "notes/n.txt", "-f", "brat", "-o", ".", "--force"], None),
    "predict-onto-its-input": (["predict", "run", "x.txt", "-o", "x.txt", "--force"], None),
    "predict-onto-its-input-through-dotdot": (["predict", "run", "x.txt", "-o", "notes/../x.txt", "--force"], None),
    "predict-onto-a-hard-link-of-its-input": (["predict", "run", "x.txt", "-o", "y.txt", "--force"], _hard_link("x.txt", "y.txt")),
    "predict-conll-into-its-input": (["predict", "run", "notes", "-f", "conll", "-o", "notes/out.conll"], None),
    "predict-html-into-its-run": (["predict", "run", "x.txt", "-f", "html", "-o", "run/page.html"], None),
    "predict-jsonl-into-another-run": (["predict", "run", "x.txt", "-o", "runs/a/encoder/p.jsonl"], None),
    "preprocess-onto-its-input": (["preprocess", "data", "-o", "data", "--force"], None),
    "preprocess-into-a-run": (["preprocess", "data", "-o", "run", "--force"], None),
    "preprocess-into-its-input": (["preprocess", "gold", "-o", "gold/processed"], None),
    "train-into-its-data": (["train", "data", "-o", "data/run", *TINY], None),
    "train-onto-its-data-through-a-link": (["train", "data", "-o", "datalink", "--force", *TINY], _link("data", "datalink")),
    "train-into-a-run": (["train", "data", "-o", "run/encoder", "--force", *TINY], None),
    "train-onto-a-folder-of-runs": (["train", "data", "-o", "runs", "--force", *TINY], None),
    "train-onto-its-config": (["train", "data", "--config", "c.yaml", "-o", ".", "--force", *TINY],
                              lambda: Path("c.yaml").write_text("seed: 1\n")),
    "report-into-its-run": (["report", "run", "-o", "run/report.html", "--force", "--resamples", "100"], None),
    "compare-plot-into-a-run": (["compare", "runs", "--plot", "runs/a/plot.png"], None),
    "sweep-into-a-run": (["sweep", "grid.yaml", "-o", "run"], None),
    "sweep-onto-its-data": (["sweep", "grid.yaml", "-o", "data"], None),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_ON_INPUT))
def test_an_output_never_is_holds_or_lies_inside_an_input_or_a_run(workspace, case):
    args, prepare = OUTPUT_ON_INPUT[case]
    if prepare is not None:
        prepare()
    before = snapshot(workspace)
    result = invoke(*args)
    assert_one_line_error(result, "cannot write")
    assert snapshot(workspace) == before  # nothing written, nothing lost


def test_outputs_beside_the_inputs_are_still_written(workspace):
    """The check refuses overlaps only: the usual places work, --force over an earlier output too."""
    assert invoke("predict", "run", "gold", "-f", "brat", "-o", "pred").exit_code == 0
    assert invoke("predict", "run", "gold", "-f", "brat", "-o", "pred", "--force").exit_code == 0
    assert invoke("export", "run", "hf").exit_code == 0
    assert invoke("export", "run", "hf", "--force").exit_code == 0  # an export folder is no run
    result = invoke("train", "data", "-o", "run", "--force", *TINY)  # train replaces its own run
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- 12: code a run brings

EVIL = """open({marker!r}, "w").write("imported")
from transformers import BertConfig, BertModel


class EvilConfig(BertConfig):
    pass


class EvilModel(BertModel):
    config_class = EvilConfig
"""


def plant_code(folder: Path, marker: Path) -> None:
    """An auto_map in `folder`'s config.json pointing at a .py beside it that leaves `marker` when imported."""
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def trusting_config(run: Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "trust_remote_code": True}), encoding="utf-8")


@pytest.fixture
def interrupted_run(trained, tmp_path, monkeypatch):
    """A run stopped after its first step, with a checkpoint to resume."""
    run = tmp_path / "stopped"
    with monkeypatch.context() as m:
        m.setattr(tracking.Tracker, "step", signalling_step(1))
        stopped = invoke("train", trained[1], "-o", run, *TINY_MODEL, "--max-steps", "3")
    assert stopped.exit_code == 1 and (run / "checkpoint").is_dir(), stopped.output
    return run


def test_resume_never_runs_code_the_run_brings(interrupted_run, tmp_path):
    marker = tmp_path / "imported"
    plant_code(interrupted_run / "encoder", marker)
    trusting_config(interrupted_run)
    result = invoke("train", "-o", interrupted_run, "--resume")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    assert (interrupted_run / "summary.json").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_loading_a_run_never_runs_code_it_brings(trained, tmp_path, command):
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    marker = tmp_path / "imported"
    plant_code(run / "encoder", marker)
    trusting_config(run)
    (tmp_path / "x.txt").write_text("患者有糖尿病。", encoding="utf-8")
    target = {"evaluate": trained[1] / "dev.jsonl", "predict": tmp_path / "x.txt", "export": tmp_path / "hf"}[command]
    result = invoke(command, run, target)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_a_file_cannot_turn_on_remote_code(trained, tmp_path):
    """Only the user's own flag may: not a --config file (a run's config.yaml reused), not a sweep grid."""
    model = tmp_path / "model"
    shutil.copytree(trained[0] / "encoder", model)
    (model / "model.safetensors").write_bytes(b"")
    marker = tmp_path / "imported"
    plant_code(model, marker)
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {model}\ntrust_remote_code: true\n", encoding="utf-8")
    result = invoke("train", trained[1], "--config", config, "-o", tmp_path / "out", *TINY)
    assert_one_line_error(result, "trust_remote_code", "--trust-remote-code")
    assert not marker.exists() and not (tmp_path / "out").exists()
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"data: {trained[1]}\nmodel: {model}\ntrust_remote_code: true\ngrid:\n  seed: [1, 2]\n", encoding="utf-8")
    assert_one_line_error(invoke("sweep", grid, "--dry-run"), "trust_remote_code", "--trust-remote-code")
    assert not marker.exists()


# ----------------------------------------------------------------------------- 13: YAML alias bombs

def alias_bomb(levels: int = 7) -> str:
    """`levels` lists of 9 aliases to the one below: 9**levels values in a few hundred bytes."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def short_error(result) -> str:
    line = assert_one_line_error(result)
    assert len(line) < 400, f"{len(line)} characters: {line[:200]}..."
    return line


@pytest.mark.parametrize("key", ["seed", "model", "lr"])
def test_alias_bomb_in_a_config_file_is_one_short_line(trained, tmp_path, key):
    config = tmp_path / "bomb.yaml"
    # A bomb under a key the settings do not know is expanded too: the bound is on what YAML builds.
    config.write_text(alias_bomb() + f"{key}: *l6\n", encoding="utf-8")
    started = time.monotonic()
    line = short_error(invoke("train", trained[1], "--config", config, "-o", tmp_path / "out", *TINY))
    assert "100,000 values" in line and time.monotonic() - started < 20
    assert not (tmp_path / "out").exists()


def test_alias_bomb_in_a_sweep_grid_is_one_short_line(trained, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(alias_bomb() + f"data: {trained[1]}\ngrid:\n  seed: *l6\n", encoding="utf-8")
    assert "100,000 values" in short_error(invoke("sweep", grid, "--dry-run"))


def test_alias_bomb_in_a_runs_config_is_refused_by_every_reader(trained, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained[0], runs / "good")
    bombed = runs / "bombed"
    shutil.copytree(trained[0], bombed)
    with open(bombed / "config.yaml", "a", encoding="utf-8") as handle:
        handle.write(alias_bomb())  # keys no setting has: ignored once read, but YAML builds them first
    line = short_error(invoke("evaluate", bombed, trained[1] / "dev.jsonl"))
    assert "config.yaml is corrupt" in line and "100,000 values" in line
    result = invoke("compare", runs)
    assert result.exit_code == 0, result.output
    assert "skipped bombed" in result.stderr and "good" in result.stdout


@pytest.mark.parametrize("value", ["x" * 100_000, list(range(50_000))], ids=["long-string", "long-list"])
def test_a_long_value_is_shortened_in_the_message(trained, tmp_path, value):
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump({"seed": value}, width=10**9), encoding="utf-8")
    line = short_error(invoke("train", trained[1], "--config", config, "-o", tmp_path / "out", *TINY))
    assert "seed must be" in line and "..." in line


def test_an_alias_inside_itself_is_one_line(trained, tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text("seed: &a [1, *a]\n", encoding="utf-8")
    assert "refers to a value it is inside" in short_error(invoke("train", trained[1], "--config", config, *TINY))


def test_deeply_nested_yaml_is_one_line(trained, tmp_path):
    config = tmp_path / "deep.yaml"
    config.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert "nested too deeply" in short_error(invoke("train", trained[1], "--config", config, *TINY))


# ----------------------------------------------------------------------------- 14: terminal escapes

HOSTILE = "患者\x1b]0;owned\x07有\x1b[2J高血压\x1b]52;c;ZXZpbA==\x07，\x9b31m服用\u202e阿司匹林\r。"
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def assert_no_raw_control(text: str) -> None:
    found = RAW_CONTROL.search(text)
    assert found is None, f"raw U+{ord(found[0]):04X} in {text[max(0, found.start() - 40):found.end() + 40]!r}"


def test_pretty_predictions_show_control_characters_escaped(trained, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text(HOSTILE, encoding="utf-8", newline="")
    result = invoke("predict", trained[0], note, "-f", "pretty")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.output)
    assert "\\u001b]0;owned\\u0007有\\u001b[2J高血压" in result.output
    assert "\\u009b31m" in result.output and "\\u202e" in result.output and "\\u000d" in result.output


def test_machine_formats_keep_the_text_exact(trained, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text(HOSTILE, encoding="utf-8", newline="")
    result = invoke("predict", trained[0], note, "-f", "jsonl")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert all(HOSTILE[e["start"]:e["end"]] == e["text"] for e in row["entities"])
    assert invoke("predict", trained[0], note, "-f", "brat", "-o", tmp_path / "pred").exit_code == 0
    assert (tmp_path / "pred" / "note.txt").read_bytes() == HOSTILE.encode("utf-8")


def test_errors_warnings_and_tables_show_control_characters_escaped(trained, tmp_path):
    name = "n\x1b]0;owned\x07\x9b2J"
    result = invoke("predict", trained[0], tmp_path / f"{name}.txt")  # an error naming the file
    assert_one_line_error(result, "\\u001b]0;owned\\u0007\\u009b2J.txt")
    assert_no_raw_control(result.output)

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"d{i}.txt").write_text("患者有高血压。", encoding="utf-8")
        (corpus / f"d{i}.ann").write_text("T1\tDisease 3 6\t高血压\n", encoding="utf-8")
    (corpus / f"{name}.txt").write_text("患者。", encoding="utf-8")  # no .ann beside it: a warning names it
    result = invoke("preprocess", corpus, "-o", tmp_path / "data")
    assert result.exit_code == 0, result.output
    assert "\\u001b]0;owned" in result.stderr
    assert_no_raw_control(result.output)

    runs = tmp_path / "runs"
    shutil.copytree(trained[0], runs / name)
    result = invoke("compare", runs)  # a table with the run's folder name
    assert result.exit_code == 0, result.output
    assert "\\u001b]0;owned" in result.stdout
    assert_no_raw_control(result.output)
    result = invoke("compare", runs, "--json")  # JSON: the same name when read back
    assert [run["name"] for run in json.loads(result.stdout)["runs"]] == [name]
