"""Words in messages: counts with the word in the form that fits."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 entity`, `2 entities`: the count and the word in the form that fits it."""
    form = word if count == 1 else many or (word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s")
    return f"{count:,} {form}"
