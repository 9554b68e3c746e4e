"""`--help` of every command reads well at 80 columns and in a pipe; `--version` answers."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from bertner import __version__
from bertner.cli import app

runner = CliRunner()
COMMANDS = sorted(typer.main.get_command(app).commands)


def help_page(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], prog_name="bertner", terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_listed_whole():
    page = help_page()
    assert {"preprocess", "train", "evaluate", "predict", "compare", "sweep", "export"} <= set(COMMANDS)
    listed = page.split("Commands:", 1)[1]
    for name in COMMANDS:
        line = next(line for line in listed.splitlines() if line.strip().startswith(name + " "))
        assert not line.rstrip().endswith(("...", "…")), line  # short help cut off


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns(command):
    page = help_page(command)
    assert "…" not in page and "<bool>" not in page
    assert all(len(line) <= 80 for line in page.splitlines()), page
    usage = page.splitlines()[0]
    assert usage.startswith(f"Usage: bertner {command} ") and "{" not in usage and "<" not in usage
    params = typer.main.get_command(app).commands[command].params
    for param in params:
        if getattr(param, "hidden", False):  # internal (sweep --worker K: how a sweep starts its worker processes)
            continue
        for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if name.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(name)}($|[\s,])", page, re.M), f"{name} missing or cut"
    # Study results (F1 differences, percentages) belong in the README, not in --help.
    assert not re.search(r"F1 [-+]?\d|\d%", page), page


def test_boolean_flags_take_no_value():
    page = help_page("preprocess")
    assert re.search(r"^\s+--strict\s{2,}\S", page, re.M)  # no metavar after a flag
    result = runner.invoke(app, ["preprocess", "x", "--strict", "true"])
    assert result.exit_code != 0


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"bertner {__version__}"
    import tomllib
    from conftest import ROOT

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__
