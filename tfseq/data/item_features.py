"""Item side features: reading an item table, per-field vocabularies aligned with the item vocabulary.

Formats, picked from the file name (and, for other names, from the first line):

* S3-Rec's ``*_item2attributes.json``: one JSON object ``{"item": [attr, ...]}``
  (attributes are strings or integers), read as one multi-valued field named
  :data:`S3REC_FIELD` (``categories``).
* RecBole's atomic ``.item`` file: tab-separated, a typed header
  ``item_id:token<TAB>movie_title:token_seq<TAB>...``. ``token`` and
  ``token_seq`` fields are categorical (a ``token_seq`` cell holds
  space-separated values); ``float`` and ``float_seq`` fields are never used.
  The item ID column is the ``item_id`` field (``item_column`` names another).
* ``.csv`` (a header row) or ``.parquet`` with explicit ``columns``, the item
  ID in ``item_column`` (default ``item_id``). A cell holds one value or several
  separated by ``|`` (MovieLens' ``Action|Comedy`` style; spaces around values
  are stripped, so values may contain spaces); a parquet list cell holds one
  value per element. An empty cell means no value.

A value is never empty and the values of one item and field are kept once, in
file order. Every reading error is a :class:`~tfseq.data.formats.DataError`
whose message starts ``file:line:`` (JSON nested too deeply to read or holding
an integer too long to convert: the line where the value, or that integer,
starts and the item whose attributes hold it; a csv quote left open: the line
where the quoted field starts).

:func:`build_item_features` turns a :class:`RawItemTable` into
:class:`ItemFeatures`, the table the models look up: per field an int32
``[num_items, max_values]`` array of value indices whose row ``n`` belongs to
item index ``n`` of the item vocabulary (row 0 = padding = all zeros), and one
vocabulary per field (index 0 = padding ``""``, then values by descending
frequency over the log's items, ties by value). It keeps at most
``max_values`` values per item and field, the first ones in file order, so one
item with thousands of attributes cannot widen every row of the table, and
refuses a file that describes less than ``min_coverage`` of the log's items.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import posixpath
import re
import sys
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tfseq.data import schema
from tfseq.data.formats import DataError

S3REC_FIELD = "categories"  # the one field of an S3-Rec item2attributes file
DEFAULT_ITEM_COLUMN = "item_id"
CELL_SEPARATOR = "|"  # between the values of one csv/parquet cell
CATEGORICAL_TYPES = ("token", "token_seq")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
FORMATS = ("json", "atomic", "csv", "parquet")

# Values kept per item and field (--max_attributes_per_item). Real attribute lists are short (S3-Rec's
# Beauty categories: a handful per item; ml-100k's titles: a few words), so the cap keeps them whole and
# only cuts an outlier list, which would otherwise set the width of every row of the padded table.
DEFAULT_MAX_VALUES = 64
DEFAULT_MIN_COVERAGE = 0.5  # share of the log's items a feature file must describe (--min_feature_coverage)

VALUES_FILE = "item_features.npz"
FIELDS_FILE = "item_features.json"


@dataclasses.dataclass(frozen=True)
class RawItemTable:
    """An item table as read: raw item ID -> ``{field: values}``.

    Attributes:
      path: the file it was read from (errors name it).
      fields: the selected fields, in file order.
      items: raw item ID -> ``{field: tuple of raw values}`` (every selected field present,
        possibly empty), in file order.
      lines: raw item ID -> the 1-based line (parquet: row) it was read from.
    """

    path: str
    fields: tuple[str, ...]
    items: Mapping[str, Mapping[str, tuple[str, ...]]]
    lines: Mapping[str, int]


# -- reading -------------------------------------------------------------------------------
def _read_bytes(path: str) -> bytes:
    if "://" not in path:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DataError(f"{path}: cannot read the item feature file: {e.strerror or e}") from e
    import tensorflow as tf  # remote file systems (gs://, s3://)

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise DataError(f"{path}: cannot read the item feature file: {e.message}") from e


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text") from None


def detect_format(path: str, head: bytes = b"") -> str:
    """One of :data:`FORMATS`: by the file name, else by ``head`` (the file's first bytes)."""
    name = path.lower()
    for suffix, kind in ((".json", "json"), (".item", "atomic"), (".csv", "csv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return kind
    text = head.lstrip()
    if text.startswith(b"{"):
        return "json"
    first = text.split(b"\n", 1)[0]
    if b":token" in first or b":float" in first:
        return "atomic"
    if head.startswith(b"PAR1"):
        return "parquet"
    raise DataError(
        f"{path}: cannot tell the item feature format; name the file *.json (S3-Rec item2attributes), "
        f"*.item (RecBole atomic), *.csv or *.parquet"
    )


def read_item_table(
    path: str,
    *,
    fields: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    item_column: str | None = None,
) -> RawItemTable:
    """Reads an item feature file (format from the file, see the module docstring).

    Args:
      path: the file.
      fields: the fields to keep (default: every categorical field; csv/parquet: every
        column of ``columns``). The item ID column is never a field.
      columns: csv/parquet only (required there): the feature columns.
      item_column: the item ID column (default ``item_id``); not used by S3-Rec JSON.

    Raises:
      DataError: ``file:line: ...`` for malformed JSON, a malformed row, a header that does
        not fit, an unknown or non-categorical field, an item listed twice.
    """
    data = _read_bytes(path)
    kind = detect_format(path, data[:4096])
    if columns is not None and kind in ("json", "atomic"):
        raise DataError(f"{path}: feature columns are named only for csv or parquet files, not {kind}")
    if fields is not None:
        fields = tuple(fields)
        if not fields:
            raise DataError(f"{path}: the list of item feature fields is empty")
        if len(set(fields)) != len(fields):
            raise DataError(f"{path}: an item feature field is named twice: {list(fields)}")
    item_column = item_column or DEFAULT_ITEM_COLUMN
    if kind == "json":
        return _read_s3rec_json(_decode(data, path), path, fields)
    if kind == "atomic":
        return _read_atomic(_decode(data, path), path, fields, item_column)
    if columns is None or not list(columns):
        raise DataError(f"{path}: a {kind} item feature file needs its feature columns named "
                        f"(--item_feature_cols)")
    columns = tuple(columns)
    selected = _select(columns, columns, fields, path, 0)
    if kind == "csv":
        return _read_csv(_decode(data, path), path, selected, item_column)
    return _read_parquet(data, path, selected, item_column)


def _select(
    available: Sequence[str], categorical: Sequence[str], fields: tuple[str, ...] | None, path: str, line: int
) -> tuple[str, ...]:
    """``fields`` checked against the file's categorical fields (default: all of them, file order)."""
    where = f"{path}:{line}" if line else path
    if fields is None:
        if not categorical:
            raise DataError(f"{where}: no categorical (token or token_seq) item field; fields are {list(available)}")
        return tuple(categorical)
    for field in fields:
        if field not in categorical:
            what = "not categorical" if field in available else "no such field"
            raise DataError(f"{where}: item feature field {field!r}: {what}; categorical fields: {list(categorical)}")
    return fields


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


class _Collector:
    """Gathers items in file order and rejects an item listed twice."""

    def __init__(self, path: str, fields: tuple[str, ...]) -> None:
        self.path, self.fields = path, fields
        self.items: dict[str, dict[str, tuple[str, ...]]] = {}
        self.lines: dict[str, int] = {}

    def add(self, item: str, line: int, values: Mapping[str, Sequence[str]]) -> None:
        if not item:
            raise DataError(f"{self.path}:{line}: empty item ID")
        if any(c in item for c in "\t\n\r"):
            raise DataError(f"{self.path}:{line}: item ID {item!r} has a tab or line break")
        if item in self.items:
            raise DataError(f"{self.path}:{line}: item {item!r} is listed twice (first on line {self.lines[item]})")
        self.items[item] = {f: _unique(values.get(f, ())) for f in self.fields}
        self.lines[item] = line

    def table(self) -> RawItemTable:
        if not self.items:
            raise DataError(f"{self.path}: the item feature file lists no item")
        return RawItemTable(self.path, self.fields, self.items, self.lines)


def _json_members(text: str, path: str) -> Iterator[tuple[str, Any, int]]:
    """``(key, value, line)`` of each member of the top-level JSON object, in order.

    Walks the object member by member so each key keeps its line and a repeated key is
    seen (``json.loads`` keeps the last silently).
    """
    decoder = json.JSONDecoder()
    ws = " \t\n\r"

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        return pos

    def fail(pos: int, message: str) -> DataError:
        return DataError(f"{path}:{text.count(chr(10), 0, pos) + 1}: malformed JSON: {message}")

    def decode(pos: int, item: str | None = None) -> tuple[Any, int]:
        """The JSON value at ``pos`` and the position after it; ``item``: whose attributes it is."""
        whose = "" if item is None else f"item {item[:80]!r}: "
        try:
            return decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {whose}{e.msg} (column {e.colno})") from None
        except RecursionError:
            raise fail(pos, f"{whose}a value nested too deeply to read (attributes are a flat list)") from None
        except ValueError as e:  # an integer past sys.get_int_max_str_digits(): the line is that number's
            too_long = re.compile(rf"\d{{{sys.get_int_max_str_digits() + 1},}}").search(text, pos)
            raise fail(too_long.start() if too_long else pos,
                       f"{whose}a value that cannot be read: {str(e).split(':')[0]}") from None

    pos = skip(0)
    if pos >= len(text) or text[pos] != "{":
        raise fail(pos, "an S3-Rec item2attributes file is one object {\"item\": [attribute, ...], ...}")
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "}":
        pos += 1
    else:
        while True:
            if pos >= len(text) or text[pos] != '"':
                raise fail(pos, "expected an item ID in double quotes")
            line = text.count("\n", 0, pos) + 1
            key, pos = decode(pos)
            pos = skip(pos)
            if pos >= len(text) or text[pos] != ":":
                raise fail(pos, "expected ':' after the item ID")
            value, pos = decode(skip(pos + 1), key)
            yield key, value, line
            pos = skip(pos)
            if pos < len(text) and text[pos] == ",":
                pos = skip(pos + 1)
                continue
            if pos < len(text) and text[pos] == "}":
                pos += 1
                break
            raise fail(pos, "expected ',' or '}' after an item's attributes")
    pos = skip(pos)
    if pos < len(text):
        raise fail(pos, "extra data after the top-level object")


def _read_s3rec_json(text: str, path: str, fields: tuple[str, ...] | None) -> RawItemTable:
    selected = _select((S3REC_FIELD,), (S3REC_FIELD,), fields, path, 0)
    out = _Collector(path, selected)
    for item, attributes, line in _json_members(text, path):
        if not isinstance(attributes, list):
            raise DataError(f"{path}:{line}: item {item!r}: attributes must be a list, got {type(attributes).__name__}")
        values = []
        for value in attributes:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise DataError(f"{path}:{line}: item {item!r}: an attribute is a string or an integer, "
                                f"got {value!r}")
            value = str(value).strip()
            if not value:
                raise DataError(f"{path}:{line}: item {item!r}: empty attribute")
            values.append(value)
        out.add(item, line, {S3REC_FIELD: values})
    return out.table()


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """``(number, line)`` of the non-blank lines, without line breaks."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _read_atomic(text: str, path: str, fields: tuple[str, ...] | None, item_column: str) -> RawItemTable:
    rows = _lines(text)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{path}:1: empty file; a RecBole .item file starts with a header like "
                        f"'item_id:token<TAB>class:token_seq'")
    header_line, header = first
    names, types = [], []
    for column in header.split("\t"):
        name, sep, kind = column.strip().rpartition(":")
        if not sep or not name or kind not in ATOMIC_TYPES:
            raise DataError(f"{path}:{header_line}: header column {column!r} is not name:type with type one of "
                            f"{', '.join(ATOMIC_TYPES)}")
        if name in names:
            raise DataError(f"{path}:{header_line}: header names {name!r} twice")
        names.append(name)
        types.append(kind)
    if item_column not in names:
        raise DataError(f"{path}:{header_line}: no item ID column {item_column!r} in the header; columns are {names}")
    id_index = names.index(item_column)
    if types[id_index] != "token":
        raise DataError(f"{path}:{header_line}: the item ID column {item_column!r} must be a token, "
                        f"not {types[id_index]}")
    categorical = [n for n, k in zip(names, types) if k in CATEGORICAL_TYPES and n != item_column]
    selected = _select(names, categorical, fields, path, header_line)
    kinds = dict(zip(names, types))
    positions = {f: names.index(f) for f in selected}
    out = _Collector(path, selected)
    for number, line in rows:
        cells = line.split("\t")
        if len(cells) != len(names):
            raise DataError(f"{path}:{number}: {len(cells)} tab-separated fields, the header has {len(names)}")
        values = {}
        for field, index in positions.items():
            cell = cells[index].strip()
            values[field] = cell.split() if kinds[field] == "token_seq" else ([cell] if cell else [])
        out.add(cells[id_index].strip(), number, values)
    return out.table()


def _split_cell(cell: Any) -> list[str]:
    """The values of a csv/parquet cell: ``|``-separated text, a list, a number, or nothing."""
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return [v for c in cell for v in _split_cell(c)]
    if isinstance(cell, bytes):
        cell = cell.decode("utf-8", errors="replace")
    return [v.strip() for v in str(cell).split(CELL_SEPARATOR) if v.strip()]


def _check_columns(names: Sequence[str], wanted: Sequence[str], path: str, line: int) -> None:
    where = f"{path}:{line}" if line else path
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(f"{where}: no column(s) {missing}; columns are {list(names)}")


def _read_csv(text: str, path: str, fields: tuple[str, ...], item_column: str) -> RawItemTable:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}:1: empty file; a csv item feature file starts with a header row") from None
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed csv: {e}") from None
    header = [h.strip() for h in header]
    _check_columns(header, (item_column, *fields), path, reader.line_num)
    id_index = header.index(item_column)
    positions = {f: header.index(f) for f in fields}
    out = _Collector(path, fields)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if str(e) == "unexpected end of data":
                raise DataError(f"{path}:{start}: malformed csv: a quote opened on this line is never closed "
                                f"(the quoted field runs to the end of the file)") from None
            raise DataError(f"{path}:{start}: malformed csv: {e}") from None
        if not any(c.strip() for c in cells):
            continue
        if reader.line_num > start and (len(cells) != len(header) or any(
                "\n" in cells[i] or "\r" in cells[i] for i in (id_index, *positions.values()))):
            raise DataError(f"{path}:{start}: malformed csv: a quoted field runs over lines {start}-"
                            f"{reader.line_num} (a quote left open?); item feature values are one line each")
        if len(cells) != len(header):
            raise DataError(f"{path}:{start}: {len(cells)} fields, the header has {len(header)}")
        out.add(cells[id_index].strip(), start, {f: _split_cell(cells[i]) for f, i in positions.items()})
    return out.table()


def _read_parquet(data: bytes, path: str, fields: tuple[str, ...], item_column: str) -> RawItemTable:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001  (pyarrow raises several types for a bad file)
        raise DataError(f"{path}: not a readable parquet file: {e}") from e
    _check_columns(parquet.schema_arrow.names, (item_column, *fields), path, 0)
    wanted = [item_column, *fields]
    out = _Collector(path, fields)
    row = 0
    for batch in parquet.iter_batches(columns=wanted):
        cells = [batch.column(i).to_pylist() for i in range(len(wanted))]
        for item, *values in zip(*cells):
            row += 1
            raw = "" if item is None else (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
            out.add(raw.strip(), row, {f: _split_cell(v) for f, v in zip(fields, values)})
    return out.table()


# -- alignment with the item vocabulary ----------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ItemFeatures:
    """Per-field value indices of every item of the item vocabulary.

    Attributes:
      fields: the field names.
      values: per field an int32 ``[num_items, max_values]`` array: row ``n`` holds the value
        indices of item index ``n``, right-padded with 0; row 0 (padding) is all 0.
      vocabularies: per field the raw values by index; index 0 is padding ``""``.
    """

    fields: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    vocabularies: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "vocabularies", tuple(tuple(v) for v in self.vocabularies))
        object.__setattr__(self, "values", tuple(np.asarray(v) for v in self.values))
        if not self.fields:
            raise ValueError("ItemFeatures needs at least one field")
        if not len(self.fields) == len(self.values) == len(self.vocabularies):
            raise ValueError(f"ItemFeatures: {len(self.fields)} fields, {len(self.values)} value arrays and "
                             f"{len(self.vocabularies)} vocabularies; expected one of each per field")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"ItemFeatures: a field is named twice: {list(self.fields)}")
        rows = {v.shape[0] if v.ndim == 2 else -1 for v in self.values}
        for field, values, vocabulary in zip(self.fields, self.values, self.vocabularies):
            if values.ndim != 2 or values.dtype != np.int32 or values.shape[1] < 1:
                raise ValueError(f"ItemFeatures field {field!r}: values must be int32 [num_items, max_values>=1], "
                                 f"got {values.dtype} {list(values.shape)}")
            if not vocabulary or vocabulary[0] != schema.PAD_TOKEN:
                raise ValueError(f"ItemFeatures field {field!r}: vocabulary index 0 must be padding ''")
            if values.size and (values.min() < 0 or values.max() >= len(vocabulary)):
                raise ValueError(f"ItemFeatures field {field!r}: value indices must be in [0, {len(vocabulary)})")
            if values.shape[0] < 2 or np.any(values[0]):
                raise ValueError(f"ItemFeatures field {field!r}: needs a padding row 0 of zeros and an item")
        if len(rows) != 1:
            raise ValueError(f"ItemFeatures: fields disagree on the number of items: {sorted(rows)}")

    @property
    def num_items(self) -> int:
        """Rows of every value array: the item vocabulary size, padding included."""
        return int(self.values[0].shape[0])

    def num_values(self, field: str) -> int:
        """Vocabulary size of ``field``, padding included (an embedding table's row count)."""
        return len(self.vocabularies[self._index(field)])

    def field_values(self, field: str) -> np.ndarray:
        """The ``[num_items, max_values]`` value indices of ``field``."""
        return self.values[self._index(field)]

    def _index(self, field: str) -> int:
        if field not in self.fields:
            raise KeyError(f"no item feature field {field!r}; fields: {', '.join(self.fields)}")
        return self.fields.index(field)

    def files(self) -> dict[str, bytes]:
        """The table as files: ``{VALUES_FILE: npz bytes, FIELDS_FILE: json bytes}``.

        The Transform stage writes them with the pipeline's one atomic writer
        (``pipeline.artifacts``) into its staged output folder.
        """
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {f"field_{i}": v for i, v in enumerate(self.values)}
        np.savez(buffer, **arrays)
        meta = {"fields": list(self.fields), "vocabularies": [list(v) for v in self.vocabularies]}
        return {VALUES_FILE: buffer.getvalue(), FIELDS_FILE: json.dumps(meta, ensure_ascii=False).encode("utf-8")}

    @classmethod
    def load(cls, directory: str) -> "ItemFeatures":
        """Reads the :meth:`files` written into ``directory`` (by the Transform stage)."""
        import tensorflow as tf

        with tf.io.gfile.GFile(posixpath.join(directory, FIELDS_FILE), "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
        with tf.io.gfile.GFile(posixpath.join(directory, VALUES_FILE), "rb") as f:
            arrays = np.load(io.BytesIO(f.read()))
            values = tuple(arrays[f"field_{i}"] for i in range(len(meta["fields"])))
        return cls(tuple(meta["fields"]), values, tuple(tuple(v) for v in meta["vocabularies"]))


def build_item_features(
    table: RawItemTable,
    item_vocab: Sequence[str],
    *,
    max_values: int = DEFAULT_MAX_VALUES,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> tuple[ItemFeatures, dict[str, Any]]:
    """Aligns ``table`` with the item vocabulary.

    Args:
      table: what :func:`read_item_table` returned.
      item_vocab: raw item IDs by index, index 0 = padding (``tfseq.data.vocab.read_vocabulary``).
      max_values: per item and field, the values kept: the first ``max_values`` in file
        order. The value array is ``[num_items, min(max_values, widest item)]``.
      min_coverage: the share of the log's items the file must describe (0 to 1).

    Returns:
      ``(features, stats)``. ``stats``: ``items`` (log items), ``items_without_features``
      (log items absent from the file; they get padding), ``unknown_items`` (file items not
      in the log; ignored), ``file_items``, ``max_values_per_item`` (the cap), ``truncated_items`` (log items
      cut to the cap in some field) and per field ``vocab_size`` (padding included),
      ``items_without_values``, ``mean_values_per_item`` and ``max_values_per_item`` over
      the log's items after the cap, and ``truncated_items`` with ``max_values_in_file``
      before it.

    Raises:
      DataError: no item of the file is in the log, or fewer than ``min_coverage`` of the
        log's items are (both counts named).
    """
    if max_values < 1:
        raise ValueError(f"max_values must be >= 1, got {max_values}")
    if not item_vocab or item_vocab[0] != schema.PAD_TOKEN:
        raise ValueError("item_vocab[0] must be the padding ID ''")
    log_items = list(item_vocab[1:])
    found = [raw for raw in log_items if raw in table.items]
    log_set = set(log_items)
    unknown = sum(1 for raw in table.items if raw not in log_set)
    if not found:
        raise DataError(
            f"{table.path}: no item of the feature file is in the log ({len(table.items)} file items, e.g. "
            f"{list(table.items)[:3]}; {len(log_items)} log items, e.g. {log_items[:3]})"
        )
    if len(found) < min_coverage * len(log_items):
        raise DataError(
            f"{table.path}: the feature file describes only {len(found):,} of the log's {len(log_items):,} "
            f"items ({len(found) / len(log_items):.1%}; {unknown:,} of its {len(table.items):,} items are not "
            f"in the log), below --min_feature_coverage {min_coverage:g}: is it another dataset's? "
            f"A lower --min_feature_coverage accepts it"
        )
    stats: dict[str, Any] = {
        "items": len(log_items),
        "items_without_features": len(log_items) - len(found),
        "unknown_items": unknown,
        "file_items": len(table.items),
        "max_values_per_item": max_values,
        "truncated_items": 0,
        "fields": {},
    }
    truncated: set[str] = set()
    values, vocabularies = [], []
    for field in table.fields:
        full = [table.items[raw][field] if raw in table.items else () for raw in log_items]
        cut = {raw for raw, item_values in zip(log_items, full) if len(item_values) > max_values}
        truncated |= cut
        per_item = [item_values[:max_values] for item_values in full]
        counts = collections.Counter(v for item_values in per_item for v in item_values)
        vocabulary = (schema.PAD_TOKEN, *sorted(counts, key=lambda v: (-counts[v], v)))
        index = {v: i for i, v in enumerate(vocabulary)}
        widths = [len(v) for v in per_item]
        array = np.zeros((len(item_vocab), max(1, max(widths))), np.int32)
        for row, item_values in enumerate(per_item, start=1):
            array[row, : len(item_values)] = [index[v] for v in item_values]
        values.append(array)
        vocabularies.append(vocabulary)
        stats["fields"][field] = {
            "vocab_size": len(vocabulary),
            "items_without_values": sum(1 for w in widths if not w),
            "mean_values_per_item": float(np.mean(widths)) if widths else 0.0,
            "max_values_per_item": max(widths, default=0),
            "truncated_items": len(cut),
            "max_values_in_file": max((len(v) for v in full), default=0),
        }
    stats["truncated_items"] = len(truncated)
    return ItemFeatures(table.fields, tuple(values), tuple(vocabularies)), stats


def summary_lines(stats: dict[str, Any]) -> list[str]:
    """What the console shows of :func:`build_item_features`' stats: coverage, and any items cut to the cap.

    When most of the file's items are not in the log the line says so: a file of another
    dataset with overlapping numeric IDs can describe every log item (S3-Rec's Beauty
    attributes, items 1..12101, cover all of ml-100k's 1..1682) and pass the coverage
    floor; only a catalog larger than the log has that shape legitimately.
    """
    described = stats["items"] - stats["items_without_features"]
    line = (f"item features: {described:,} of the log's {stats['items']:,} items described; "
            f"{stats['unknown_items']:,} file items not in the log (ignored)")
    file_items = stats.get("file_items", 0)
    if file_items and stats["unknown_items"] > file_items / 2:
        line += (f"; that is most of the file's {file_items:,} items: is the file this dataset's? "
                 f"(a catalog of more items than the log is fine)")
    lines = [line]
    for field, found in stats["fields"].items():
        if found.get("truncated_items"):
            lines.append(
                f"item features: field {field!r}: {found['truncated_items']:,} item(s) had more than "
                f"{stats['max_values_per_item']} values (up to {found['max_values_in_file']:,}); kept the first "
                f"{stats['max_values_per_item']} in file order (--max_attributes_per_item)"
            )
    return lines
