"""HTML pages: `predict --format html` and `bertner report`, checked as text (the browser check is test_browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from study_runs import dev_windows, hits_per_document, study_run

from bertner import writers
from bertner.cli import app
from bertner.compare import compare_runs
from bertner.html_spans import highlight, label_colours
from bertner.predict import Prediction
from bertner.report_html import build_report, default_baseline, heat
from bertner.spans import Span

runner = CliRunner()


class TextOf(HTMLParser):
    """The visible text inside every element of one class, and the title of each <mark> there."""

    def __init__(self, css_class: str):
        super().__init__(convert_charrefs=True)
        self.css_class, self.depth, self.texts, self.titles = css_class, 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.depth += 1
            if tag == "mark":
                self.titles.append(attrs.get("title"))
        elif self.css_class in (attrs.get("class") or "").split():
            self.depth = 1
            self.texts.append("")

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data


def visible(page: str, css_class: str = "text") -> TextOf:
    parser = TextOf(css_class)
    parser.feed(page)
    return parser


NASTY = '<script>alert("x")</script> 患者有2型糖尿病 & "高血压"\r\n\t服用 <b>二甲双胍</b>\n'


def nasty_prediction() -> Prediction:
    start = NASTY.index("2型糖尿病")
    drug = NASTY.index("二甲双胍")
    spans = [Span(0, 8, "Drug"), Span(start, start + 5, "Disease"), Span(drug, drug + 4, "Drug")]
    return Prediction("note<1>", NASTY, spans, [0.5, 0.987, 0.75])


def test_predict_html_escapes_the_text_and_keeps_offsets_exact():
    labels = ["Disease", "Drug", "Test"]
    page = writers.html_head(labels) + writers.html_document(nasty_prediction(), labels) + writers.html_tail()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>" not in page
    assert "note&lt;1&gt;" in page  # the document id too
    shown = visible(page)
    assert shown.texts == [NASTY]  # the page's visible text is the input, character for character
    assert shown.titles == ["Drug 0.50", "Disease 0.99", "Drug 0.75"]
    assert visible(page, "legend").texts == ["DiseaseDrugTest"]  # every label of the run, in a stable order
    marks = re.findall(r'<mark class="ent" style="background:(#[0-9a-f]{6})"[^>]*data-label="(\w+)"', page)
    assert {label: colour for colour, label in marks} == {k: v for k, v in label_colours(labels).items() if k != "Test"}
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_highlight_skips_an_overlapping_span_and_keeps_the_text():
    text = "abcdef"
    marked = highlight(text, [Span(0, 3, "A"), Span(2, 5, "B"), Span(5, 6, "A")], label_colours(["A", "B"]))
    assert marked.count("<mark") == 2
    assert visible(f'<div class="text">{marked}</div>').texts == [text]


@pytest.fixture
def study(tmp_path):
    root, windows, hits = tmp_path / "runs", dev_windows(12), hits_per_document(12)
    for seed in (1, 2):
        study_run(root / f"softmax-seed{seed}", windows, hits, f1=0.6 + 0.01 * seed, seed=seed)
        study_run(root / f"crf-seed{seed}", windows, [k + 1 for k in hits], f1=0.7 + 0.02 * seed, crf=True, seed=seed)
    return root


def test_report_page_holds_every_section_and_is_self_contained(study):
    page = build_report(compare_runs(study), resamples=300, documents=3)
    for heading in ("Comparison", "Learning curves", "F1 per type", "Error kinds", "Dev documents"):
        assert f"<h2>{heading}</h2>" in page
    assert "bert+crf vs bert+softmax: better; +" in page  # the softmax group is the default baseline
    assert page.count('src="data:image/png;base64,') == 1
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch
    assert "<script" not in page and "&lt;b&gt;" in page  # the dev text's markup stays text
    # Three windows, gold beside predicted; their visible text is the window text exactly.
    texts = visible(page).texts
    assert len(texts) == 6 and texts[0] == texts[1] and texts[0] in {w.text for w in dev_windows(12)}
    assert "<td class=name>missed</td>" in page


def test_report_cli_writes_the_file_refuses_to_overwrite_and_rejects_an_unknown_baseline(study, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(study), "-o", str(out), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    result = runner.invoke(app, ["report", str(study), "-o", str(out)])
    assert result.exit_code == 1 and "already exists; pass --force" in result.output
    result = runner.invoke(app, ["report", str(study), "-o", str(out), "--force", "--baseline", "nope"])
    assert result.exit_code == 1 and "--baseline 'nope' is not a group" in result.output


def test_report_without_dev_predictions_says_so(tmp_path):
    windows = dev_windows(3)
    study_run(tmp_path / "softmax", windows, None, f1=0.6)
    study_run(tmp_path / "crf", windows, None, f1=0.7, crf=True)
    page = build_report(compare_runs(tmp_path), resamples=100)
    assert "No run here has dev_predictions.jsonl" in page
    assert "no dev_predictions.jsonl" in page  # in the comparison's sentence as well


def test_default_baseline_and_heat_colours(study):
    groups = compare_runs(study).groups
    assert default_baseline(groups).name == "bert+softmax"
    assert (heat(0.0), heat(1.0), heat(None)) == ("#ffffff", "#2ea043", "#ffffff")


def test_report_tests_each_data_set_against_its_own_baseline(tmp_path):
    """A toy run and a corpus study in one folder: the default baseline is chosen within each data set, and no
    group is ever tested against a group of other data."""
    root = tmp_path / "runs"
    corpus, toy = dev_windows(12), dev_windows(12, seed=7)
    hits, toy_hits = hits_per_document(12), hits_per_document(12, seed=7)
    for seed in (1, 2):
        study_run(root / "ruijin" / f"softmax-{seed}", corpus, hits, f1=0.62 + 0.01 * seed, seed=seed, train_sha="a7" * 32)
        study_run(root / "ruijin" / f"crf-{seed}", corpus, [k + 1 for k in hits], f1=0.70 + 0.01 * seed, crf=True,
                  seed=seed, train_sha="a7" * 32)
    # The toy study has no plain softmax group: its weakest group is its baseline (never Ruijin's softmax).
    study_run(root / "toy" / "crf", toy, toy_hits, f1=0.21, crf=True, train_sha="1f" * 32, epochs=60)
    study_run(root / "toy" / "gru", toy, toy_hits, f1=0.20, gru=True, train_sha="1f" * 32, epochs=60)
    comparison = compare_runs(root)
    ruijin, toy_data = f"data/processed ({'a7' * 4})", f"data/processed ({'1f' * 4})"
    assert comparison.data_sets == [toy_data, ruijin]

    from bertner.report_html import baselines

    assert {data: g.name for data, g in baselines(comparison, None).items()} == {
        ruijin: "bert+softmax", toy_data: "bert+gru+softmax"}
    page = build_report(comparison, resamples=200, documents=1)
    assert f"<h3>{ruijin}: baseline <b>bert+softmax</b></h3>" in page
    assert f"<h3>{toy_data}: baseline <b>bert+gru+softmax</b></h3>" in page
    sentences = re.findall(r"<li>([^<]*) vs ([^:]*):", page)
    assert sorted(sentences) == [("bert+crf", "bert+gru+softmax"), ("bert+crf", "bert+softmax")]
    assert "trained on 2 different data sets" in page
