"""The README's commands do what it says: set-up installs what the test command needs, CI runs that command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import tomllib
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README text under `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"no '## {title}' section in README.md"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """Shell commands of a block, comments removed, `a && b` as two commands."""
    found = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        found += [part.strip() for part in line.split("&&") if part.strip()]
    return found


def installed_extras(command: str) -> set[str] | None:
    """The extras of `pip install -e ".[a,b]"` (empty for `-e .`); None if it does not install the project."""
    words = shlex.split(command)
    if "install" not in words or "-e" not in words:
        return None
    target = words[words.index("-e") + 1]
    match = re.fullmatch(r"\.(?:\[(.*)\])?", target)
    return {e.strip() for e in (match.group(1) or "").split(",") if e.strip()} if match else None


def test_set_up_installs_what_the_test_command_needs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    set_up = commands(code_blocks(section("Set up"), "sh")[0])
    extras = next(e for e in map(installed_extras, set_up) if e is not None)
    requirements = list(pyproject["dependencies"]) + [r for e in extras for r in pyproject["optional-dependencies"][e]]
    installed = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    (test_command,) = commands(code_blocks(section("Tests"), "sh")[0])
    module = re.fullmatch(r"python -m (\w+) tests", test_command)
    assert module, test_command
    assert module.group(1) in installed, f"the README's set-up does not install {module.group(1)}"


def test_ci_runs_the_readme_test_command_after_the_same_install():
    (test_command,) = commands(code_blocks(section("Tests"), "sh")[0])
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in ci, ".ci/run must run the README's test command word for word"
    set_up = commands(code_blocks(section("Set up"), "sh")[0])
    readme_extras = next(e for e in map(installed_extras, set_up) if e is not None)
    ci_extras = [e for e in (installed_extras(line) for line in ci if "pip install" in line) if e is not None]
    assert ci_extras == [readme_extras]


def test_the_main_job_leaves_nothing_for_git():
    # The quick start writes data/processed/ and runs/quickstart/ in the folder it runs from.
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "/data/" in ignored and "/runs/" in ignored


def test_the_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    from synthetic import write_synthetic

    (example,) = code_blocks(section("From Python"), "python")
    monkeypatch.chdir(tmp_path)
    write_synthetic(tmp_path / "data" / "processed", n_train=48, n_dev=8)  # what `bertner preprocess` leaves
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    variant, f1 = printed[0].split()
    assert variant == "tiny+crf" and float(f1) > 0.5  # settings that learn: the synthetic task is easy
    assert (tmp_path / "runs" / "api" / "summary.json").exists()
    text = re.search(r'predict_text\("(.*?)"\)', example).group(1)
    assert printed[1:], "the example prints the entities it finds"
    for line in printed[1:]:  # start, end, label, the entity's text and its score
        start, end, label, found, score = line.split(" ")
        assert found == text[int(start) : int(end)] and label and 0 <= float(score) <= 1, line


# ----------------------------------------------------------------------------- issue 22: what a newcomer runs

def quickstart_commands() -> list[list[str]]:
    """examples/quickstart.sh's bertner commands as argument lists, `$here` resolved to examples/."""
    script = (ROOT / "examples" / "quickstart.sh").read_text(encoding="utf-8")
    found = []
    for line in script.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("bertner "):
            found.append([word.replace("$here", str(ROOT / "examples")) for word in shlex.split(line)[1:]])
    return found


def test_the_quick_start_scores_and_tags_notes_the_run_never_trained_on(tmp_path, monkeypatch):
    import json

    from cli_helpers import invoke

    commands = {args[0]: args[1:] for args in quickstart_commands()}
    monkeypatch.chdir(tmp_path)
    assert invoke("preprocess", *commands["preprocess"]).exit_code == 0  # the split the quick start makes
    docs = {split: {json.loads(line)["doc"] for line in (tmp_path / "data" / "processed" / f"{split}.jsonl").open()}
            for split in ("train", "dev")}
    tagged = [Path(arg).stem for arg in commands["predict"] if arg.endswith(".txt")]
    assert tagged and all(doc in docs["dev"] and doc not in docs["train"] for doc in tagged), (tagged, docs)
    assert "--held-out" in commands["evaluate"]  # and it prints the run's score on those notes


def output_paths(command: list[str]) -> list[str]:
    """The paths a bertner command line writes (its -o/--output, --plot; export's OUT)."""
    paths = [command[i + 1] for i, word in enumerate(command[:-1]) if word in ("-o", "--output", "--plot")]
    if command[:1] == ["export"]:
        paths.append([word for word in command[1:] if not word.startswith("-")][1])
    return paths


def test_readme_commands_write_only_where_git_ignores():
    ignored = {line.strip("/") for line in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
               if line.startswith("/") and line.endswith("/")}
    written = []
    for block in code_blocks(README, "sh") + code_blocks(README, "console"):
        for command in commands(block.replace("$ ", "")):
            words = shlex.split(command)
            if words[:1] in (["bertner"], ["torchrun"]):
                written += output_paths(words[words.index("bertner") + 1:] if "bertner" in words else words)
            if words[:2] == ["hf", "download"]:
                written.append(words[words.index("--local-dir") + 1])
    assert len(written) >= 8, written
    outside = [path for path in written if Path(path).parts[0] not in ignored]
    assert not outside, f"README commands write where git sees it: {outside}"


def test_readme_predict_then_evaluate_scores_the_documents_it_predicted():
    pairs = [command for block in code_blocks(README, "sh") for command in commands(block)]
    for index, command in enumerate(pairs[:-1]):
        words = shlex.split(command)
        if words[:2] == ["bertner", "predict"] and ("brat" in words):
            evaluate = shlex.split(pairs[index + 1])
            assert evaluate[:2] == ["bertner", "evaluate"], pairs[index + 1]
            predicted_from, written_to = words[3], output_paths(words[1:])[0]
            assert evaluate[2] == written_to and evaluate[3] == predicted_from, (command, pairs[index + 1])
            assert "--held-out" in evaluate  # a run's own training documents would flatter it
            return
    raise AssertionError("no `bertner predict -f brat` followed by `bertner evaluate` in the README")


def test_set_up_names_a_command_for_each_torch_build():
    block = code_blocks(section("Set up"), "sh")[0]
    cpu = [c for c in commands(block) if "torch==" in c]
    assert cpu and "download.pytorch.org/whl/cpu" in cpu[0]
    assert re.search(r"`pip install torch==[\d.]+( --index-url \S+)?`[^.]*CUDA", section("Set up"))


def test_public_classes_say_what_they_are():
    import importlib
    import inspect
    import pkgutil

    import bertner

    # The corpus readers' record types are left to their owners (bertner/data/brat.py, conll.py, jsonl.py).
    readers = {"bertner.data.brat", "bertner.data.conll", "bertner.data.jsonl"}
    undocumented = []
    for info in pkgutil.walk_packages(bertner.__path__, "bertner."):
        if info.name.endswith("__main__") or info.name in readers:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                doc = obj.__dict__.get("__doc__") or ""
                if not doc.strip() or doc.startswith(f"{name}("):  # a dataclass's generated signature is no docstring
                    undocumented.append(f"{module.__name__}.{name}")
    assert not undocumented
