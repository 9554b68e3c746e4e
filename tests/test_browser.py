"""The pages in a real browser: headless Chromium renders report.html and a predict page.

Checks: the screenshot is not blank, the console is silent (the pages run no script and load
nothing, so any console line is a fault: a blocked load, a script error), and the text the browser
parsed is the input exactly. Skips cleanly without a chromium binary (Debian: apt-get install chromium).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from study_runs import dev_windows, hits_per_document, study_run
from test_html import NASTY, nasty_prediction, visible

from bertner import writers
from bertner.compare import compare_runs
from bertner.report_html import write_report

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def render(page: Path, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Chromium's stdout and stderr, decoded without newline translation (a CR in the DOM stays a CR)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *extra, page.as_uri()]
    result = subprocess.run(command, capture_output=True, timeout=120, cwd=tmp_path)
    return result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def screenshot(page: Path, tmp_path: Path) -> tuple[np.ndarray, list[str]]:
    import matplotlib.image

    shot = tmp_path / f"{page.stem}.png"
    _, stderr = render(page, tmp_path, f"--screenshot={shot}")
    assert shot.exists(), stderr[-2000:]
    return matplotlib.image.imread(shot), console_lines(stderr)


def assert_not_blank(pixels: np.ndarray) -> None:
    grey = pixels[..., :3].mean(axis=2)
    assert grey.std() > 0.01  # a blank page is one flat colour (std 0); a short page of text is about 0.04
    assert (grey < 0.5).mean() > 0.001  # some dark ink


def test_the_console_check_catches_a_fault(tmp_path):
    page = tmp_path / "faulty.html"
    page.write_text(writers.html_head([], "runs/x") + "<script>undefinedFunction()</script>" + writers.html_tail(), encoding="utf-8")
    _, console = screenshot(page, tmp_path)
    assert console and "Content Security Policy" in console[0]  # our pages' policy blocks any script


def test_report_renders_with_a_silent_console(tmp_path):
    windows, hits = dev_windows(12), hits_per_document(12)
    for seed in (1, 2):
        study_run(tmp_path / "runs" / f"softmax-seed{seed}", windows, hits, f1=0.6 + 0.01 * seed, seed=seed)
        study_run(tmp_path / "runs" / f"crf-seed{seed}", windows, [k + 1 for k in hits], f1=0.7, crf=True, seed=seed)
    page = write_report(compare_runs(tmp_path / "runs"), tmp_path / "report.html", resamples=200)
    pixels, console = screenshot(page, tmp_path)
    assert console == []
    assert_not_blank(pixels)


def test_predict_page_renders_and_the_browser_reads_the_input_exactly(tmp_path):
    labels = ["Disease", "Drug"]
    page = tmp_path / "predict.html"
    page.write_text(writers.html_head(labels, "runs/x") + writers.html_document(nasty_prediction(), labels) + writers.html_tail(),
                    encoding="utf-8")
    pixels, console = screenshot(page, tmp_path)
    assert console == []  # the <script> in the text stayed text: nothing ran, nothing was blocked
    assert_not_blank(pixels)
    dom, _ = render(page, tmp_path, "--dump-dom")
    assert visible(dom).texts == [NASTY]


def test_the_label_toggle_shows_labels_in_the_browser_and_unchecked_hides_them(tmp_path):
    labels = ["Disease", "Drug"]
    page = writers.html_head(labels, "runs/x") + writers.html_document(nasty_prediction(), labels) + writers.html_tail()
    shown, hidden = tmp_path / "shown.html", tmp_path / "hidden.html"
    shown.write_text(page, encoding="utf-8")
    hidden.write_text(page.replace(" checked>", ">"), encoding="utf-8")
    with_labels, console = screenshot(shown, tmp_path)
    without_labels, _ = screenshot(hidden, tmp_path)
    assert console == []
    # Only the document's text box changes: the labels written after the entities take room and ink.
    assert with_labels.shape == without_labels.shape and not np.array_equal(with_labels, without_labels)
    assert (with_labels[..., :3].mean(axis=2) < 0.5).sum() > (without_labels[..., :3].mean(axis=2) < 0.5).sum()
