"""The rich consoles every module prints through: results to stdout, messages to stderr."""

from rich.console import Console

out = Console()
err = Console(stderr=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def info(message: str) -> None:
    err.print(message, highlight=False)


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 entity`, `2 entities`: the count and the word in the form that fits it."""
    form = word if count == 1 else many or (word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s")
    return f"{count:,} {form}"
