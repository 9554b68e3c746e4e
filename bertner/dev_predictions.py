"""The best checkpoint's dev predictions, kept in the run directory as `dev_predictions.jsonl`.

One line per dev window: its id, document, offset in the document, text, gold spans and predicted
spans (window offsets). The run directory (`bertner.runs.RunDir`) reads and writes the file. With
them `compare --baseline` tests differences document by document and `report` shows gold beside
predicted, both without the model or the original data.

    {"id": "doc1#0", "doc": "doc1", "offset": 0, "text": "...", "gold": [...], "spans": [{"start": 3, "end": 7, "label": "Disease"}]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bertner.errors import RunError
from bertner.fileio import parse_json
from bertner.spans import Span, Window

DEV_PREDICTIONS = "dev_predictions.jsonl"


@dataclass
class DevPrediction:
    """One dev window as the best checkpoint tagged it."""

    id: str
    doc: str
    offset: int
    text: str
    gold: list[Span]
    spans: list[Span]  # predicted


def _span_dicts(spans: Sequence[Span]) -> list[dict]:
    return [{"start": s.start, "end": s.end, "label": s.label} for s in spans]


def dev_prediction_rows(windows: Sequence[Window], predicted: Sequence[Sequence[Span]]) -> list[dict]:
    """The file's lines as objects (`RunDir.write_dev_predictions` writes them atomically)."""
    if len(windows) != len(predicted):
        raise ValueError(f"{len(windows)} dev windows but {len(predicted)} predictions")
    return [
        {"id": w.id, "doc": w.doc, "offset": w.offset, "text": w.text, "gold": _span_dicts(w.spans),
         "spans": _span_dicts(sorted(spans))}
        for w, spans in zip(windows, predicted)
    ]


def _spans(values: object, text_length: int) -> list[Span]:
    if not isinstance(values, list):
        raise ValueError("spans must be a list")
    spans = [Span(int(v["start"]), int(v["end"]), str(v["label"])) for v in values]
    if any(not 0 <= s.start < s.end <= text_length for s in spans):
        raise ValueError("a span lies outside its text")
    return spans


def read_dev_predictions(path: Path) -> list[DevPrediction] | None:
    """A dev_predictions.jsonl (`RunDir.read_dev_predictions`); None when there is none (a run written
    before they were kept). RunError if the file is broken."""
    if not path.is_file():
        return None
    rows = []
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = parse_json(line)
            text = str(row["text"])
            rows.append(DevPrediction(str(row["id"]), str(row["doc"]), int(row["offset"]), text,
                                      _spans(row["gold"], len(text)), _spans(row["spans"], len(text))))
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path} cannot be read ({e})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}:{number}: corrupt ({e})") from None
    return rows
