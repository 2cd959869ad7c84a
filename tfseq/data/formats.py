"""Raw interaction logs -> Interaction records; errors cite file:line.

One parser per input format turns one raw line into Interactions or a
malformed-row reason. File-level problems (missing, empty, a header that does
not fit the format) raise ``DataError`` at once; row-level problems are counted
by ExampleGen, or raised with ``--strict``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence


class DataError(ValueError):
    """Input data that tfseq cannot use; the message names the file (and line)."""


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


class Malformed(NamedTuple):
    """A row that was skipped: a stable reason key and where it was."""

    reason: str
    path: str
    line: int
    detail: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


# Stable reason keys for malformed rows.
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_TIMESTAMP = "non_numeric_timestamp"
BAD_RATING = "non_numeric_rating"
EMPTY_ID = "empty_id"
BAD_ID = "id_with_control_characters"

_BAD_ID_CHARS = re.compile(r"[\t\n\r]")


@dataclass(frozen=True)
class Columns:
    """Positions of the fields in a delimited row (-1 = absent)."""

    user: int
    item: int
    timestamp: int = -1
    rating: int = -1
    count: int = 0  # fields a row must have


def _number(text: str) -> float:
    value = float(text)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(text)
    return value


def _check_id(raw: str) -> str | None:
    """The malformed reason for an ID, or None when it is usable."""
    if not raw:
        return EMPTY_ID
    if _BAD_ID_CHARS.search(raw):
        return BAD_ID
    return None


def row_to_interaction(
    fields: Sequence[str], columns: Columns, path: str, source: int, line: int
) -> Interaction | Malformed:
    """Validates one delimited row against ``columns``."""
    if len(fields) != columns.count:
        return Malformed(WRONG_FIELD_COUNT, path, line, f"{len(fields)} fields, expected {columns.count}")
    user, item = fields[columns.user].strip(), fields[columns.item].strip()
    for raw in (user, item):
        reason = _check_id(raw)
        if reason:
            return Malformed(reason, path, line, repr(raw))
    timestamp = float(line)
    if columns.timestamp >= 0:
        try:
            timestamp = _number(fields[columns.timestamp])
        except ValueError:
            return Malformed(BAD_TIMESTAMP, path, line, repr(fields[columns.timestamp]))
    rating = math.nan
    if columns.rating >= 0:
        try:
            rating = _number(fields[columns.rating])
        except ValueError:
            return Malformed(BAD_RATING, path, line, repr(fields[columns.rating]))
    return Interaction(user, item, timestamp, rating, source, line)


LineParser = Callable[[str, int], "list[Interaction] | Malformed | None"]


class Format:
    """How one format reads a file: ``parsers(path, first_line)`` checks the header."""

    name = ""
    has_header = False

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        raise NotImplementedError


class RecBoleFormat(Format):
    """RecBole atomic ``.inter`` files: tab-separated, ``name:type`` header, columns by name."""

    name = "recbole"
    has_header = True

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        names = [h.split(":", 1)[0].strip() for h in (header or "").rstrip("\r\n").split("\t")]
        if "user_id" not in names or "item_id" not in names:
            raise DataError(
                f"{path}:1: not a RecBole .inter header (needs user_id and item_id columns, "
                f"e.g. 'user_id:token<TAB>item_id:token<TAB>timestamp:float'), got {header!r:.80}"
            )
        columns = Columns(
            names.index("user_id"),
            names.index("item_id"),
            names.index("timestamp") if "timestamp" in names else -1,
            names.index("rating") if "rating" in names else -1,
            len(names),
        )

        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            if not text.strip():
                return None
            result = row_to_interaction(text.rstrip("\r\n").split("\t"), columns, path, source, line)
            return result if isinstance(result, Malformed) else [result]

        return parse


class MovieLensFormat(Format):
    """MovieLens ``u.data`` (tab-separated) and ``ratings.dat`` (``::``): user item rating time."""

    name = "movielens"

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        separator = "::" if header is not None and "::" in header else "\t"
        columns = Columns(0, 1, timestamp=3, rating=2, count=4)

        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            if not text.strip():
                return None
            result = row_to_interaction(text.rstrip("\r\n").split(separator), columns, path, source, line)
            return result if isinstance(result, Malformed) else [result]

        return parse


class SequenceFormat(Format):
    """One user per line, ``user item item ...`` in time order (the SASRec/S3-Rec files)."""

    name = "sequence"

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            if not text.strip():
                return None
            fields = text.split()
            if len(fields) < 2:
                return Malformed(WRONG_FIELD_COUNT, path, line, "a user with no items")
            user = fields[0]
            return [
                Interaction(user, item, float(position), math.nan, source, line, position)
                for position, item in enumerate(fields[1:])
            ]

        return parse


class PairsFormat(Format):
    """One ``user item`` pair per line, in time order."""

    name = "pairs"

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        columns = Columns(0, 1, count=2)

        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            if not text.strip():
                return None
            result = row_to_interaction(text.split(), columns, path, source, line)
            return result if isinstance(result, Malformed) else [result]

        return parse


@dataclass(frozen=True)
class CsvFormat(Format):
    """CSV with a header row; columns named by ``--user_col --item_col --time_col [--rating_col]``."""

    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    name = "csv"
    has_header = True

    def columns(self, names: list[str], path: str) -> Columns:
        wanted = {"--user_col": self.user_col, "--item_col": self.item_col, "--time_col": self.time_col}
        if self.rating_col:
            wanted["--rating_col"] = self.rating_col
        missing = [f"{flag} {col!r}" for flag, col in wanted.items() if col and col not in names]
        if missing:
            raise DataError(f"{path}:1: no column {', '.join(missing)}; columns are {names}")
        return Columns(
            names.index(self.user_col),
            names.index(self.item_col),
            names.index(self.time_col) if self.time_col else -1,
            names.index(self.rating_col) if self.rating_col else -1,
            len(names),
        )

    def line_parser(self, path: str, source: int, header: str | None) -> LineParser:
        names = [n.strip() for n in next(csv.reader([header or ""]), [])]
        columns = self.columns(names, path)

        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            if not text.strip():
                return None
            fields = next(csv.reader(io.StringIO(text)))
            result = row_to_interaction(fields, columns, path, source, line)
            return result if isinstance(result, Malformed) else [result]

        return parse


TEXT_FORMATS: dict[str, type[Format]] = {
    f.name: f for f in (RecBoleFormat, MovieLensFormat, SequenceFormat, PairsFormat, CsvFormat)
}
ALL_FORMATS = (*TEXT_FORMATS, "parquet", "tfds", "synthetic")


def text_format(name: str, user_col: str = "", item_col: str = "", time_col: str = "",
                rating_col: str = "") -> Format:
    if name == "csv":
        return CsvFormat(user_col, item_col, time_col, rating_col)
    if name not in TEXT_FORMATS:
        raise DataError(f"unknown input format {name!r}; known formats: {', '.join(ALL_FORMATS)}")
    return TEXT_FORMATS[name]()


def parse_lines(
    fmt: Format, path: str, source: int, lines: Iterator[str]
) -> Iterator[Interaction | Malformed]:
    """Every record of one text file, in order; raises DataError for a header that does not fit."""
    header = None
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: file is empty")
    if fmt.has_header:
        header = first
        parse = fmt.line_parser(path, source, header)
        start = 2
        remaining: Iterator[str] = lines
    else:
        parse = fmt.line_parser(path, source, first)
        start = 1
        remaining = _chain_first(first, lines)
    for line, text in enumerate(remaining, start=start):
        result = parse(text, line)
        if result is None:
            continue
        if isinstance(result, Malformed):
            yield result
        else:
            yield from result


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def parquet_records(
    path: str, source: int, data: bytes, user_col: str, item_col: str, time_col: str, rating_col: str
) -> Iterator[Interaction | Malformed]:
    """Rows of a parquet file (the row number, from 1, stands in for the line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a bad file)
        raise DataError(f"{path}: not a readable parquet file: {e}") from None
    names = table.column_names
    columns = CsvFormat(user_col, item_col, time_col, rating_col).columns(names, path)
    data_columns = [table.column(i).to_pylist() for i in range(len(names))]
    for row in range(table.num_rows):
        fields = ["" if col[row] is None else str(col[row]) for col in data_columns]
        result = row_to_interaction(fields, columns, path, source, row + 1)
        yield result


def tfds_interactions(name: str, split: str = "train") -> Iterator[Interaction]:
    """A tensorflow-datasets MovieLens-style dataset (needs network on first use)."""
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split)
    except Exception as e:  # noqa: BLE001  (download/registration errors vary by version)
        raise DataError(f"tfds:{name}: cannot load the dataset: {e}") from None
    for line, row in enumerate(tfds.as_numpy(dataset), start=1):
        user = row["user_id"].decode() if isinstance(row["user_id"], bytes) else str(row["user_id"])
        item = row["movie_id"].decode() if isinstance(row["movie_id"], bytes) else str(row["movie_id"])
        rating = float(row.get("user_rating", math.nan))
        yield Interaction(user, item, float(row["timestamp"]), rating, 0, line)
