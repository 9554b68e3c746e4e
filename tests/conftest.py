"""Shared test helpers: where ../shared is, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

# As bertner/__init__.py does, before any test module imports torch (some import it before
# bertner): idle OpenMP threads sleep. With spinning threads the suite took ~38 minutes instead of
# ~5 on a 2-core machine where another process held a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RUIJIN_TRAIN = SHARED / "data" / "ruijin" / "train"
RUIJIN_UNLABELED = SHARED / "data" / "ruijin" / "unlabeled"
MSRA = SHARED / "data" / "msra"
BERT_TOKENIZER = SHARED / "models" / "bert-base-chinese-tokenizer"
ALBERT_TINY = SHARED / "models" / "albert-tiny-chinese"


def need(path: Path) -> Path:
    """Skip the calling test when a shared data set or model is not here."""
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    return path


@pytest.fixture(autouse=True)
def wide_console():
    """No line wrapping in captured messages, so `file:line: message` stays on one line."""
    from bertner.cli import _console as console

    saved = console.err._width, console.out._width
    console.err._width = console.out._width = 400
    yield
    console.err._width, console.out._width = saved
