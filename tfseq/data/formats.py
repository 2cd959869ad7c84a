"""Raw interaction logs -> Interaction records; errors cite file:line.

Formats (``--input_format``):

* ``recbole``: RecBole atomic ``.inter`` files: tab-separated, a ``name:type``
  header (``user_id:token  item_id:token  rating:float  timestamp:float``),
  columns found by name in any order; rating and timestamp are optional.
* ``movielens``: ``u.data`` (tab) or ``ratings.dat`` (``::``), detected per file:
  ``user item rating timestamp``.
* ``sequence``: one user per line, ``user item item ...`` in time order (the
  SASRec/S3-Rec ``Beauty.txt``).
* ``pairs``: one ``user item`` pair per line (whitespace-separated), in time order.
* ``csv`` / ``parquet``: a header row (parquet: the schema) with the columns
  named by ``user_col``, ``item_col``, ``time_col`` and optionally ``rating_col``;
  the parquet row number (from 1) stands in for the line.
* ``tfds``: a tensorflow-datasets MovieLens name such as ``movielens/100k-ratings``
  (fields ``user_id``, ``movie_id``, ``timestamp``, ``user_rating``).
* ``synthetic``: :mod:`tfseq.data.synthetic`, no input file.

Timestamps (``recbole``, ``movielens``, ``csv``, ``parquet``) are numbers or,
automatically, ISO 8601 date/time text (``1997-12-04 15:55:49``,
``2020-01-01T10:00:00Z``; without a time zone: UTC), read as Unix seconds;
``time_format`` (a ``strptime`` format such as ``%d/%m/%Y %H:%M``) reads any
other spelling, and then only that one.

Where a format has no timestamp the input order is the time: the line number
(``pairs``, ``recbole`` without a timestamp column, ``csv`` with an empty
``time_col``) or the position within the line (``sequence``).

A parser turns one raw line into Interactions or a :class:`Malformed` row with
a stable reason key (``REASONS``). A file that does not fit its format at all
(a header without the needed columns, an unreadable parquet file, a RecBole
header, a header row or a ratings log read as ``sequence``/``pairs``: see
:func:`check_not_misread`) raises
:class:`DataError` naming the file and line. Compressed text (Beam's
compression names, ``COMPRESSIONS``) is read through :func:`decompressed`,
which checks every stream reaches its end marker: a cut-off or corrupt file is
a DataError, never a silently shorter log. This module does no file system
I/O of its own: callers hand it lines (bytes) or an open file, so the same code
runs on the driver and inside Beam workers.
"""

from __future__ import annotations

import bz2
import csv
import datetime
import io
import itertools
import lzma
import math
import re
import zlib
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator, NamedTuple, Sequence


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
    """A skipped row: a stable reason key (``REASONS``), where it was, and what was wrong."""

    reason: str
    path: str
    line: int
    detail: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def describe(self) -> str:
        """``file:line: reason (detail)``, the form errors quote."""
        return f"{self.where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


# Stable reason keys for malformed rows (stats.json counts rows by these).
WRONG_FIELD_COUNT = "wrong_field_count"
BAD_TIMESTAMP = "non_numeric_timestamp"
BAD_RATING = "non_numeric_rating"
EMPTY_ID = "empty_id"
BAD_ID = "id_with_tab_or_newline"
NOT_UTF8 = "not_utf8"
REASONS = (WRONG_FIELD_COUNT, BAD_TIMESTAMP, BAD_RATING, EMPTY_ID, BAD_ID, NOT_UTF8)

TEXT_FORMATS = ("recbole", "movielens", "sequence", "pairs", "csv")
ALL_FORMATS = (*TEXT_FORMATS, "parquet", "tfds", "synthetic")

_BAD_ID_CHARS = re.compile(r"[\t\n\r]")
# A RecBole atomic-file header field: name:type (RecBole's four field types).
_RECBOLE_FIELD = re.compile(r"[^:\s]+:(token|token_seq|float|float_seq)")
_NUMBER = re.compile(r"\d+(\.\d*)?")
_UNIX_SECONDS = re.compile(r"\d{9,10}(\.0*)?")  # 1973-03-03 .. 2286-11-20
_DECIMAL = re.compile(r"[+-]?\d+\.\d+")  # a rating such as 4.0 or 3.5 (an ID almost never is)
_LONG_NUMBER = re.compile(r"(\d{9,})(\.\d*)?")  # a Unix time in seconds or milliseconds
_DATE_OR_CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}([T ].*)?|\d{1,2}:\d{2}(:\d{2}(\.\d*)?)?")
MISREAD_MIN_LINES = 3  # lines that must all look like a ratings log before a file is refused
CONSTANT_COUNT_MIN_LINES = 50  # lines that must all have 4 fields before a sequence file is refused
MISREAD_MAX_LINES = 200  # the first lines looked at (a stray bad row further on does not hide the pattern)
TIMESTAMP_EXTRA_DIGITS = 3  # a timestamp is this many digits longer than the IDs on its line, or more
# Column names of interaction logs (lower case, '_'/'-' kept): two of them on line 1 make it a header row.
HEADER_WORDS = frozenset({
    "user", "users", "user_id", "userid", "uid", "user-id", "reviewerid", "customer_id", "session",
    "session_id", "sessionid", "item", "items", "item_id", "itemid", "iid", "item-id", "movie", "movie_id",
    "movieid", "product", "product_id", "productid", "asin", "rating", "ratings", "score", "stars",
    "timestamp", "time", "ts", "date", "datetime", "unixreviewtime", "event_time", "history", "sequence",
})


def check_format_name(name: str) -> None:
    """Raises DataError listing the known formats when ``name`` is not one."""
    if name not in ALL_FORMATS:
        raise DataError(f"unknown input format {name!r}; known formats: {', '.join(ALL_FORMATS)}")


@dataclass(frozen=True)
class Columns:
    """Positions of the fields in a delimited row (-1 = absent) and how many fields a row has."""

    user: int
    item: int
    timestamp: int = -1
    rating: int = -1
    count: int = 0


def columns_by_name(
    names: Sequence[str], where: str, user_col: str, item_col: str, time_col: str, rating_col: str
) -> Columns:
    """The positions of the named columns (csv header, parquet schema); DataError if one is missing.

    ``time_col`` and ``rating_col`` may be empty (no such column); ``user_col``
    and ``item_col`` may not.
    """
    for flag, col in (("--user_col", user_col), ("--item_col", item_col)):
        if not col:
            raise DataError(f"{where}: {flag} is empty; name one of the columns {list(names)}")
    wanted = {"--user_col": user_col, "--item_col": item_col, "--time_col": time_col,
              "--rating_col": rating_col}
    missing = [f"{flag} {col!r}" for flag, col in wanted.items() if col and col not in names]
    if missing:
        raise DataError(f"{where}: no column {', '.join(missing)}; columns are {list(names)}")
    return Columns(
        names.index(user_col),
        names.index(item_col),
        names.index(time_col) if time_col else -1,
        names.index(rating_col) if rating_col else -1,
        len(names),
    )


def _number(text: str) -> float:
    value = float(text)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(text)
    return value


def timestamp_seconds(text: str, time_format: str = "") -> float:
    """A timestamp cell as Unix seconds (see the module docstring); ValueError when it is none.

    Args:
      text: the cell.
      time_format: a ``strptime`` format; "" = a number, or ISO 8601 text.
    """
    if time_format:
        moment = datetime.datetime.strptime(text.strip(), time_format)
    else:
        try:
            return _number(text)
        except ValueError:
            pass
        if not text.strip()[:1].isdigit():
            raise ValueError(text)
        moment = datetime.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _id_problem(raw: str) -> str | None:
    """The malformed reason for an ID, or None when it is usable."""
    if not raw:
        return EMPTY_ID
    if _BAD_ID_CHARS.search(raw):
        return BAD_ID
    return None


def row_to_interaction(
    fields: Sequence[str], columns: Columns, path: str, source: int, line: int, time_format: str = ""
) -> Interaction | Malformed:
    """Validates one delimited row against ``columns``; no timestamp column -> ``line``.

    ``time_format``: see :func:`timestamp_seconds`.
    """
    if len(fields) != columns.count:
        return Malformed(
            WRONG_FIELD_COUNT, path, line, f"{len(fields)} fields, expected {columns.count}"
        )
    user, item = fields[columns.user].strip(" "), fields[columns.item].strip(" ")
    for raw in (user, item):
        reason = _id_problem(raw)
        if reason:
            return Malformed(reason, path, line, repr(raw))
    timestamp = float(line)
    if columns.timestamp >= 0:
        try:
            timestamp = timestamp_seconds(fields[columns.timestamp], time_format)
        except ValueError:
            return Malformed(BAD_TIMESTAMP, path, line, repr(fields[columns.timestamp]))
    rating = math.nan
    if columns.rating >= 0:
        try:
            rating = _number(fields[columns.rating])
        except ValueError:
            return Malformed(BAD_RATING, path, line, repr(fields[columns.rating]))
    return Interaction(user, item, timestamp, rating, source, line)


# One line of text and its 1-based number -> its events, a Malformed row, or None (blank line).
LineParser = Callable[[str, int], "list[Interaction] | Malformed | None"]


class Format:
    """How one text format reads a file.

    ``line_parser(path, source, first)`` gets the file's first line (the header
    for formats with ``has_header``), raises DataError when it does not fit the
    format, and returns the parser for the data lines. ``time_format``: how
    timestamp cells are spelled (:func:`timestamp_seconds`).
    """

    name = ""
    has_header = False

    def __init__(self, time_format: str = "") -> None:
        self.time_format = time_format

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        raise NotImplementedError


def _delimited(columns: Columns, path: str, source: int,
               split: Callable[[str], list[str]], time_format: str = "") -> LineParser:
    def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
        if not text.strip():
            return None
        result = row_to_interaction(split(text.rstrip("\r\n")), columns, path, source, line, time_format)
        return result if isinstance(result, Malformed) else [result]

    return parse


class RecBoleFormat(Format):
    """RecBole atomic ``.inter`` files: tab-separated, ``name:type`` header, columns by name."""

    name = "recbole"
    has_header = True

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        names = [h.split(":", 1)[0].strip() for h in first.rstrip("\r\n").split("\t")]
        if "user_id" not in names or "item_id" not in names:
            raise DataError(
                f"{path}:1: not a RecBole .inter header (needs user_id and item_id columns, e.g. "
                f"'user_id:token<TAB>item_id:token<TAB>timestamp:float'), got {first[:80]!r}"
            )
        columns = Columns(
            names.index("user_id"),
            names.index("item_id"),
            names.index("timestamp") if "timestamp" in names else -1,
            names.index("rating") if "rating" in names else -1,
            len(names),
        )
        return _delimited(columns, path, source, lambda text: text.split("\t"), self.time_format)


def _refuse_recbole_header(fmt_name: str, path: str, first: str) -> None:
    """Raises DataError when the first line of a headerless file is a RecBole ``.inter`` header."""
    names = first.split()
    if len(names) >= 2 and all(_RECBOLE_FIELD.fullmatch(name) for name in names):
        raise DataError(
            f"{path}:1: a RecBole .inter header ({first.strip()[:80]!r}), not a {fmt_name} file; "
            f"use --input_format recbole"
        )


def _fields(text: str) -> list[str]:
    return text.split("::") if "::" in text else text.split()


def _header_words(text: str) -> list[str]:
    """The words of ``text`` that name interaction-log columns (``user_id``, ``item``, ``userId``, ...)."""
    tokens = re.split(r"::|[\s,;|]+", text.strip().lower())
    names = [token.strip("\"'").split(":", 1)[0] for token in tokens]
    return [name for name in names if name in HEADER_WORDS]


def _ratings_signal(fields: Sequence[str]) -> str | None:
    """What makes a line look like ``user item [rating] timestamp`` rather than ``user item item ...``, or None.

    Looks at the fields after the user and the first item: a decimal number (a
    rating such as ``4.0``), a date or a clock time, or an all-digit number of
    9 or more digits that is ``TIMESTAMP_EXTRA_DIGITS`` longer than both IDs
    (a Unix time in seconds or milliseconds).
    """
    id_length = max(len(fields[0]), len(fields[1]))
    for field in fields[2:]:
        long_number = _LONG_NUMBER.fullmatch(field)
        if long_number and len(long_number.group(1)) >= id_length + TIMESTAMP_EXTRA_DIGITS:
            return f"a timestamp {field!r}"
    for field in fields[2:]:
        if _DATE_OR_CLOCK.fullmatch(field):
            return f"a date or time {field!r}"
    for field in fields[2:]:
        if _DECIMAL.fullmatch(field):
            return f"a decimal number {field!r} (a rating?)"
    return None


def check_not_misread(fmt: Format, path: str, lines: Sequence[bytes]) -> None:
    """Raises DataError when the first lines of a ``sequence`` or ``pairs`` file are another format.

    ``lines`` are the file's first lines (a sniff, not the whole file). Read as
    ``user item item ...``, a ratings log turns every rating and timestamp into
    an "item" and a header row into a user; the file is refused (``file:line:
    why``) when:

    * line 1 is a RecBole ``.inter`` header, or holds two or more column names
      (:data:`HEADER_WORDS`: ``user_id item_id``, ``userId,movieId,rating``), or
      has no digit at all while the lines after it (at least ``MISREAD_MIN_LINES``
      lines in all) hold only numbers: column names this module does not know
      (``visitor sku``) over a numeric log;
    * at least ``MISREAD_MIN_LINES`` non-blank lines all have the same number of
      fields (3 to 5) and each holds a rating or a timestamp (:func:`_ratings_signal`:
      ``4.0``, a 9+ digit number far longer than the IDs, a date);
    * ``sequence`` only: at least ``CONSTANT_COUNT_MIN_LINES`` lines all have
      exactly 4 fields (a genuine file's lines are as long as each user's history).

    A genuine ``user item item ...`` file (Beauty.txt) has lines of different
    lengths and IDs of similar lengths, and passes. ``--check_format false``
    skips this check.
    """
    if fmt.name not in ("sequence", "pairs"):
        return
    numbered = [(n, raw.decode("utf-8", errors="replace").strip()) for n, raw in enumerate(lines, start=1)]
    numbered = [(n, text) for n, text in numbered if text][:MISREAD_MAX_LINES]
    if not numbered:
        return
    fix = "--check_format false reads it as it is"
    line, first = numbered[0]
    _refuse_recbole_header(fmt.name, path, first)
    words = _header_words(first)
    if len(words) >= 2:
        raise DataError(
            f"{path}:{line}: a header row ({first[:80]!r}: column names {', '.join(words)}), not {fmt.name} data; "
            f"a log with a header is --input_format csv (or recbole); {fix}"
        )
    rows = [(n, text, _fields(text)) for n, text in numbered]
    if (len(rows) >= MISREAD_MIN_LINES and not any(c.isdigit() for c in first)
            and all(_NUMBER.fullmatch(x) for _, _, fields in rows[1:] for x in fields)):
        raise DataError(
            f"{path}:{line}: a header row ({first[:80]!r}: words over lines of numbers only), not {fmt.name} "
            f"data; a log with a header is --input_format csv (or recbole); {fix}"
        )
    counts = {len(fields) for _, _, fields in rows}
    if len(rows) >= MISREAD_MIN_LINES and len(counts) == 1 and 3 <= len(rows[0][2]) <= 5:
        signals = [_ratings_signal(fields) for _, _, fields in rows]
        if all(signals):
            if all(len(f) == 4 and all(_NUMBER.fullmatch(x) for x in f[:3]) and _UNIX_SECONDS.fullmatch(f[3])
                   for _, _, f in rows):
                what = "a MovieLens ratings log"
            else:
                what = "a ratings log"
            raise DataError(
                f"{path}:{line}: its first {len(rows)} lines are all 'user item rating timestamp' "
                f"({first[:80]!r}, {signals[0]}), {what}, not a {fmt.name} file; "
                f"use --input_format movielens (or csv with a header); {fix}"
            )
    if fmt.name == "sequence" and len(rows) >= CONSTANT_COUNT_MIN_LINES and counts == {4}:
        raise DataError(
            f"{path}:{line}: each of its first {len(rows)} lines has exactly 4 fields "
            f"({first[:80]!r}), like a 'user item rating timestamp' log; the lines of a "
            f"sequence file ('user item item ...') are as long as each user's history; {fix}"
        )


class MovieLensFormat(Format):
    """MovieLens ``u.data`` (tab) and ``ratings.dat`` (``::``): user item rating timestamp.

    The separator is chosen once per file, from its first line.
    """

    name = "movielens"

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        _refuse_recbole_header(self.name, path, first)
        separator = "::" if "::" in first else "\t"
        columns = Columns(0, 1, timestamp=3, rating=2, count=4)
        return _delimited(columns, path, source, lambda text: text.split(separator), self.time_format)


class SequenceFormat(Format):
    """One user per line, ``user item item ...`` in time order; timestamp = position."""

    name = "sequence"

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        _refuse_recbole_header(self.name, path, first)

        def parse(text: str, line: int) -> list[Interaction] | Malformed | None:
            fields = text.split()
            if not fields:
                return None
            if len(fields) < 2:
                return Malformed(WRONG_FIELD_COUNT, path, line, f"user {fields[0]!r} with no items")
            user = fields[0]
            return [
                Interaction(user, item, float(position), math.nan, source, line, position)
                for position, item in enumerate(fields[1:])
            ]

        return parse


class PairsFormat(Format):
    """One ``user item`` pair per line (whitespace-separated), in time order."""

    name = "pairs"

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        _refuse_recbole_header(self.name, path, first)
        return _delimited(Columns(0, 1, count=2), path, source, str.split)


@dataclass(frozen=True)
class CsvFormat(Format):
    """CSV, header row; columns named by ``user_col``, ``item_col``, ``time_col``, ``rating_col``.

    Rows are read line by line, so a quoted field may not contain a newline.
    """

    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    time_format: str = ""
    name = "csv"
    has_header = True

    def line_parser(self, path: str, source: int, first: str) -> LineParser:
        names = [n.strip() for n in next(csv.reader([first.rstrip("\r\n")]), [])]
        columns = columns_by_name(
            names, f"{path}:1", self.user_col, self.item_col, self.time_col, self.rating_col
        )
        return _delimited(columns, path, source, lambda text: next(csv.reader([text])), self.time_format)


_TEXT_FORMAT_CLASSES: dict[str, type[Format]] = {
    f.name: f for f in (RecBoleFormat, MovieLensFormat, SequenceFormat, PairsFormat)
}


def text_format(
    name: str, user_col: str = "user_id", item_col: str = "item_id", time_col: str = "timestamp",
    rating_col: str = "", time_format: str = "",
) -> Format:
    """The line-based format called ``name`` (the column names matter only for ``csv``)."""
    check_format_name(name)
    if name == "csv":
        return CsvFormat(user_col, item_col, time_col, rating_col, time_format)
    if name not in _TEXT_FORMAT_CLASSES:
        raise DataError(f"input format {name!r} is not line-based; text formats: {TEXT_FORMATS}")
    return _TEXT_FORMAT_CLASSES[name](time_format)


# Beam's CompressionTypes values, so a path's detected type names its decompressor here.
COMPRESSIONS = ("gzip", "bzip2", "deflate", "zstd", "lzma")
READ_CHUNK = 1 << 16  # compressed bytes decompressed at a time


def _decompressor(compression: str) -> Any:
    """A fresh one-stream decompressor (``decompress``, ``eof``, ``unused_data``)."""
    if compression == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if compression == "deflate":
        return zlib.decompressobj()
    if compression == "bzip2":
        return bz2.BZ2Decompressor()
    if compression == "lzma":
        return lzma.LZMADecompressor()
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()
    raise DataError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")


class _CheckedDecompression(io.RawIOBase):
    """Decompresses a file and insists that every stream in it ends with its end marker.

    Concatenated streams (gzip members, bzip2 streams, zstd frames) read as one,
    as Beam reads them. Beam's own reader stops quietly at the end of the input
    even inside a stream, so a file cut off after a full flush reads as a clean,
    shorter log; here the end of the input inside a stream, or data a
    decompressor rejects (a bad checksum, a flipped byte), raises DataError.
    """

    def __init__(self, file: IO[bytes], path: str, compression: str):
        super().__init__()
        _decompressor(compression)  # fails early on an unknown name
        self._file = file
        self._path = path
        self._compression = compression
        self._stream: Any = None  # the decompressor of the stream being read; None between streams
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _error(self, why: str) -> DataError:
        return DataError(f"{self._path}: truncated or corrupt {self._compression} data: {why}")

    def _decompress_more(self) -> bool:
        """Decompresses the next piece of input into ``_out``; False at the clean end of the input."""
        data = b""
        if self._stream is not None and self._stream.eof:  # a stream ended; another may follow
            data = self._stream.unused_data
            self._stream = None
        if not data:
            data = self._file.read(READ_CHUNK)
        if not data:
            if self._stream is not None:
                raise self._error("the file ends inside a compressed stream (cut off?)")
            return False
        if self._stream is None:
            self._stream = _decompressor(self._compression)
        try:
            self._out = memoryview(self._stream.decompress(data))
        except Exception as e:  # noqa: BLE001  (zlib.error, OSError, LZMAError, ZstdError, ...)
            raise self._error(str(e) or type(e).__name__) from e
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            if not self._decompress_more():
                return 0
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def decompressed(file: IO[bytes], path: str, compression: str) -> IO[bytes]:
    """The decompressed bytes of an open compressed file (buffered; ``readline`` works).

    Args:
      file: the raw (still compressed) file, at its start; closed with the result.
      path: the file's name, quoted in errors.
      compression: one of ``COMPRESSIONS`` (Beam's ``CompressionTypes`` values).

    Raises:
      DataError: while reading, ``<path>: truncated or corrupt <compression> data: ...``
        when the file ends inside a compressed stream or holds data the decompressor rejects.
    """
    return io.BufferedReader(_CheckedDecompression(file, path, compression), buffer_size=READ_CHUNK)


def parse_lines(
    fmt: Format, path: str, source: int, lines: Iterable[bytes]
) -> Iterator[Interaction | Malformed]:
    """Every record of one text file, in line order.

    Args:
      fmt: the file's format.
      path: the file's name, quoted in errors and Malformed rows.
      source: the file's index among the inputs (``Interaction.source``).
      lines: the file's raw lines (bytes, newline included or not).

    Raises:
      DataError: the file is empty, or its first line does not fit ``fmt``.
    """
    raw_lines = iter(lines)
    first_raw = next(raw_lines, None)
    if first_raw is None:
        raise DataError(f"{path}: file is empty")
    if fmt.has_header:
        try:
            header = first_raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path}:1: the header is not UTF-8 ({first_raw[:40]!r})") from None
        parse = fmt.line_parser(path, source, header)
        numbered: Iterable[tuple[int, bytes]] = enumerate(raw_lines, start=2)
    else:
        parse = fmt.line_parser(path, source, first_raw.decode("utf-8", errors="replace"))
        numbered = enumerate(itertools.chain([first_raw], raw_lines), start=1)
    for line, raw in numbered:
        try:
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except UnicodeDecodeError as e:
            yield Malformed(NOT_UTF8, path, line, f"byte {e.start}: {raw[e.start:e.start + 4]!r}")
            continue
        result = parse(text, line)
        if result is None:
            continue
        if isinstance(result, Malformed):
            yield result
        else:
            yield from result


def _field_text(value: Any) -> str:
    """A parquet or tfds cell as the text a delimited row would hold."""
    if value is None:
        return ""
    if hasattr(value, "item") and not isinstance(value, (bytes, str)):
        value = value.item()  # a numpy scalar from tfds
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime.datetime):
        return repr(value.timestamp())
    return str(value)


def parquet_columns(
    file: IO[bytes], path: str, user_col: str, item_col: str, time_col: str, rating_col: str
) -> tuple[Any, list[str]]:
    """Opens a parquet file and checks its schema -> ``(pyarrow ParquetFile, columns to read)``.

    Raises:
      DataError: not a parquet file, or a named column is missing.
    """
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a bad file)
        raise DataError(f"{path}: not a readable parquet file: {e}") from e
    names = parquet.schema_arrow.names
    columns_by_name(names, path, user_col, item_col, time_col, rating_col)
    return parquet, [c for c in (user_col, item_col, time_col, rating_col) if c]


def parquet_records(
    file: IO[bytes], path: str, source: int, user_col: str, item_col: str, time_col: str,
    rating_col: str, batch_size: int = 65536, time_format: str = "",
) -> Iterator[Interaction | Malformed]:
    """Rows of an open parquet file, streamed in record batches (row number from 1 = the line)."""
    parquet, wanted = parquet_columns(file, path, user_col, item_col, time_col, rating_col)
    columns = Columns(
        0, 1, wanted.index(time_col) if time_col else -1,
        wanted.index(rating_col) if rating_col else -1, len(wanted),
    )
    line = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
        cells = [batch.column(i).to_pylist() for i in range(len(wanted))]
        for row in zip(*cells):
            line += 1
            yield row_to_interaction([_field_text(v) for v in row], columns, path, source, line, time_format)


TFDS_FIELDS = ("user_id", "movie_id", "timestamp", "user_rating")


def tfds_label(name: str) -> str:
    """How a tensorflow-datasets input is named in errors and stats (``tfds:<name>``)."""
    return f"tfds:{name}"


def prepare_tfds(name: str) -> None:
    """Downloads and prepares a tensorflow-datasets dataset (network on first use).

    Raises:
      DataError: unknown dataset, download failure, or missing MovieLens fields.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as e:  # noqa: BLE001  (DatasetNotFoundError and friends)
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{tfds_label(name)}: unknown tfds dataset: {first_line}") from e
    missing = [f for f in TFDS_FIELDS[:3] if f not in builder.info.features]
    if missing:
        raise DataError(f"{tfds_label(name)}: has no field(s) {missing}; needs {TFDS_FIELDS[:3]}")
    try:
        builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001  (download errors vary by version and transport)
        raise DataError(f"{tfds_label(name)}: cannot download the dataset: {e}") from e


def tfds_records(
    name: str, source: int = 0, split: str = "train"
) -> Iterator[Interaction | Malformed]:
    """Rows of a (prepared) tensorflow-datasets MovieLens dataset; the row number is the line."""
    import tensorflow_datasets as tfds

    label = tfds_label(name)
    dataset = tfds.load(name, split=split)
    has_rating = TFDS_FIELDS[3] in dataset.element_spec
    columns = Columns(0, 1, 2, 3 if has_rating else -1, 4 if has_rating else 3)
    for line, row in enumerate(tfds.as_numpy(dataset), start=1):
        fields = [_field_text(row[f]) for f in TFDS_FIELDS[:columns.count]]
        yield row_to_interaction(fields, columns, label, source, line)
