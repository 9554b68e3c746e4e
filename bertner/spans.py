"""The types every module speaks: character spans over a text.

Only `bertner.align` knows about tokens and only the heads know about tag ids; everything in
between passes `Span`s, so offsets stay exact by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """A labelled half-open character range `[start, end)` of some text."""

    start: int
    end: int
    label: str

    def shifted(self, delta: int) -> "Span":
        return Span(self.start + delta, self.end + delta, self.label)

    def overlaps(self, other: "Span") -> bool:
        return self.start < other.end and other.start < self.end

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Entity:
    """An annotated entity as written in the source, with every fragment kept.

    Discontinuous brat entities (`T7 Disease 10 14;15 20`) have several fragments; a
    `--discontinuous` policy later decides which `Span`s they become.
    """

    id: str
    label: str
    fragments: tuple[tuple[int, int], ...]
    line: int = 0  # line in the source file, for messages

    @property
    def start(self) -> int:
        return self.fragments[0][0]

    @property
    def end(self) -> int:
        return self.fragments[-1][1]

    @property
    def discontinuous(self) -> bool:
        return len(self.fragments) > 1


@dataclass
class Document:
    """One text and its gold annotations (empty for raw text)."""

    id: str
    text: str
    entities: list[Entity] = field(default_factory=list)
    source: str = ""  # the file it came from, for messages


@dataclass
class Window:
    """A piece of a document small enough for a model, with spans relative to its text.

    `offset` is where `text` starts in the document, so `span.shifted(offset)` is a document span.
    """

    id: str
    doc: str
    offset: int
    text: str
    spans: list[Span] = field(default_factory=list)
