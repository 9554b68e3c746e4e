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
    page = writers.html_head(labels, "runs/x") + writers.html_document(nasty_prediction(), labels) + writers.html_tail()
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
    # --baseline takes the start of a name too; the toy data set has no such group, so nothing there is tested.
    page = build_report(comparison, baseline="bert+s", resamples=200, documents=1)
    assert f"<h3>{ruijin}: baseline <b>bert+softmax</b></h3>" in page
    assert f"<h3>{toy_data}: no baseline group: nothing is tested</h3>" in page
    # The documents and error examples come from the best run of all, not from the data set listed first.
    assert "From ruijin/crf-2 (best dev F1, on" in page and "Examples from ruijin/crf-2 (best dev F1)" in page


# -- colours that stay apart: CIEDE2000 (Sharma, Wu and Dalal 2005), in plain numpy -------------------------------
def lab(hex_colour: str):
    import numpy as np

    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                    [0.0193339, 0.1191920, 0.9503041]]) @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def ciede2000(first: str, second: str) -> float:
    return ciede2000_lab(lab(first), lab(second))


def ciede2000_lab(first, second) -> float:
    import math

    (l1, a1, b1), (l2, a2, b2) = first, second
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean**7 / (c_mean**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1, h2 = math.degrees(math.atan2(b1, a1)) % 360, math.degrees(math.atan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    dl, dc, d_hue = l2 - l1, c2 - c1, 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh) / 2)
    l_mean, c_mean = (l1 + l2) / 2, (c1 + c2) / 2
    h_mean = h1 + h2 if c1 * c2 == 0 else (h1 + h2) / 2 + (180 if abs(h1 - h2) > 180 else 0)
    t = (1 - 0.17 * math.cos(math.radians(h_mean - 30)) + 0.24 * math.cos(math.radians(2 * h_mean))
         + 0.32 * math.cos(math.radians(3 * h_mean + 6)) - 0.20 * math.cos(math.radians(4 * h_mean - 63)))
    sl = 1 + 0.015 * (l_mean - 50) ** 2 / math.sqrt(20 + (l_mean - 50) ** 2)
    sc, sh = 1 + 0.045 * c_mean, 1 + 0.015 * c_mean * t
    rt = (-2 * math.sqrt(c_mean**7 / (c_mean**7 + 25**7))
          * math.sin(math.radians(60 * math.exp(-(((h_mean % 360) - 275) / 25) ** 2))))
    return math.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (d_hue / sh) ** 2 + rt * (dc / sc) * (d_hue / sh))


def contrast_with_black(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return (0.2126 * r + 0.7152 * g + 0.0722 * b + 0.05) / 0.05


RUIJIN_TYPES = ["Amount", "Anatomy", "Disease", "Drug", "Duration", "Frequency", "Level", "Method", "Operation",
                "Reason", "SideEff", "Symptom", "Test", "Test_Value", "Treatment"]


@pytest.mark.parametrize("first,second,expected", [  # pairs 1, 7, 17 and 25 of Sharma, Wu and Dalal's test data
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
    ((50, 0, 0), (50, -1, 2), 2.3669),
    ((50, 2.5, 0), (73, 25, -18), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
])
def test_ciede2000_matches_the_published_test_data(first, second, expected):
    assert ciede2000_lab(first, second) == pytest.approx(expected, abs=1e-4)
    assert 4 < ciede2000("#b8e986", "#d9f2a3") < 7  # the Disease and Symptom greens: hard to tell apart


def test_the_palette_keeps_15_and_more_types_apart_and_black_text_readable():
    from bertner.html_spans import PALETTE

    colours = label_colours(RUIJIN_TYPES + [f"Extra{i}" for i in range(5)])
    assert len(set(colours.values())) == 20  # 20 types, 20 colours
    closest = min(ciede2000(a, b) for i, a in enumerate(PALETTE) for b in PALETTE[i + 1 :])
    assert closest >= 12, closest  # clearly different at a glance (the old palette: 5.1)
    assert min(ciede2000(c, "#ffffff") for c in PALETTE) >= 12  # and from the white page
    assert min(contrast_with_black(c) for c in PALETTE) >= 7  # black text stays readable (WCAG AAA)


def test_the_predict_page_names_its_run_and_shows_labels_with_a_toggle(tmp_path):
    from test_old_run import TEXT, old_run

    run = old_run(tmp_path)
    (tmp_path / "note.txt").write_text(TEXT, encoding="utf-8")
    page_file = tmp_path / "note.html"
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "note.txt"), "-f", "html", "-o", str(page_file)])
    assert result.exit_code == 0, result.output
    page = page_file.read_text(encoding="utf-8")
    assert f"<title>bertner predictions by {run}</title>" in page
    assert f"Tagged by the run <code>{run}</code>" in page
    # The toggle: a checkbox (checked) before the documents in the same parent, and the CSS that shows each label.
    main = page[page.index("<main>") :]
    assert main.index('<input type="checkbox" class="show-labels" id="show-labels" checked>') < main.index('<section class="document">')
    assert ".show-labels:checked ~ * mark.ent[data-label]::after" in page and "content: attr(data-label)" in page
    assert visible(page).texts == [TEXT]  # a shown label is CSS, never part of the text


def test_the_report_shares_the_toggle_and_the_palette(study):
    page = build_report(compare_runs(study), resamples=100, documents=2)
    documents = page[page.index("<h2>Dev documents</h2>") :]
    assert documents.index('class="show-labels"') < documents.index('<div class="side">')
    colours = label_colours(["Disease", "Drug"])
    assert f'background:{colours["Disease"]}' in documents and colours["Disease"] != colours["Drug"]
