"""Raw interaction logs -> Interaction records; errors cite file:line.

(Format parsers are added below the Interaction contract.)
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Interaction(NamedTuple):
    """One validated user-item event.

    ``(source, line, position)`` is the event's place in the input (file index,
    1-based line, position within a ``sequence`` line) and breaks timestamp ties
    so the order of equal-time events is the input order, on every runner.
    """

    user: str
    item: str
    timestamp: float
    rating: float = math.nan
    source: int = 0
    line: int = 0
    position: int = 0

    def sort_key(self) -> tuple[float, int, int, int]:
        return (self.timestamp, self.source, self.line, self.position)

    def to_tsv(self) -> str:
        """One line of ExampleGen's output (IDs never contain tabs or newlines)."""
        return (
            f"{self.user}\t{self.item}\t{self.timestamp!r}\t{self.rating!r}\t"
            f"{self.source}\t{self.line}\t{self.position}"
        )

    @classmethod
    def from_tsv(cls, text: str) -> "Interaction":
        user, item, ts, rating, source, line, position = text.split("\t")
        return cls(user, item, float(ts), float(rating), int(source), int(line), int(position))
