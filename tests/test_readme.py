"""The README's commands do what it says: set-up installs what the test command needs, CI runs that command."""

from __future__ import annotations

import re
import shlex

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
    assert printed[0].startswith("tiny+crf ")  # variant and best dev F1
    assert (tmp_path / "runs" / "api" / "summary.json").exists()
    assert all(re.fullmatch(r"\d+ \d+ \w+", line) for line in printed[1:])  # start end label per entity


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
