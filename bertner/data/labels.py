"""The one rule for entity labels, which every reader (brat, CoNLL, JSONL) applies as it reads.

A label becomes a tag (`B-<label>`), a field of a brat `.ann` line and an entry of labels.json, so
it must be a non-empty string without whitespace or control characters: an empty label makes tags
that read back as O, and a tab or line end in one writes a broken `.ann`. Nor may it start or end
with `-`: the scorer reads `B-Drug-` as type Drug, so `Drug-` and `Drug` would be scored as one.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from bertner.errors import DataError, shown

# Control, invisible format (zero-width, BOM) and lone surrogate characters; whitespace is tested apart.
FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Cs")


def label_problem(label: object) -> str | None:
    """Why `label` is not a usable entity label, or None when it is."""
    if not isinstance(label, str):
        written = json.dumps(label, ensure_ascii=True, default=str)
        return f"{written if len(written) <= 80 else shown(label)} is not a string"
    if not label:
        return "'' is empty"
    if label.startswith("-") or label.endswith("-"):
        # Scoring reads the type of B-Drug- as Drug (seqeval strips dashes), so Drug- and Drug would be one type.
        return f"{label!r} starts or ends with '-', which the tag B-{label} cannot carry"
    for char in label:
        category = unicodedata.category(char)
        if char.isspace() or category in FORBIDDEN_CATEGORIES:
            name = unicodedata.name(char, "a lone surrogate" if category == "Cs" else "a control character")
            return f"{shown(label)} holds U+{ord(char):04X} ({name.lower()})"
    return None


def check_label(label: object, path: Path | str | None = None, line: int | None = None) -> str:
    """`label` itself if it is a usable entity label; DataError naming path:line otherwise."""
    problem = label_problem(label)
    if problem is not None:
        raise DataError(f"label {problem}: a label is a non-empty string without spaces, tabs, line ends or control "
                        "characters, not starting or ending with '-'", path, line)
    return label
