"""Raw-format parsers: every format, every malformed reason, file-level errors naming file:line."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import os
import re
import zlib

import pytest

from tfseq.data import formats
from tfseq.data.formats import DataError, Interaction, Malformed


def parse(fmt_name: str, text: str | bytes, **cols: str) -> list[Interaction | Malformed]:
    """All records of ``text`` read as file ``log.txt`` with source index 3."""
    fmt = formats.text_format(fmt_name, **cols)
    data = text.encode() if isinstance(text, str) else text
    lines = io.BytesIO(data).readlines()  # split at b"\n" only, as a file's readline() does
    return list(formats.parse_lines(fmt, "log.txt", 3, lines))


def fields(rows: list, *names: str) -> list[tuple]:
    return [tuple(getattr(r, n) for n in names) for r in rows]


def test_recbole_finds_columns_by_name_in_any_order():
    header = "timestamp:float\titem_id:token\tuser_id:token\n"
    rows = parse("recbole", header + "20\ti9\tu1\n10\ti8\tu2\n")
    assert fields(rows, "user", "item", "timestamp", "source", "line", "position") == [
        ("u1", "i9", 20.0, 3, 2, 0),
        ("u2", "i8", 10.0, 3, 3, 0),
    ]
    assert all(math.isnan(r.rating) for r in rows)


def test_recbole_without_timestamp_uses_line_order_and_reads_rating():
    rows = parse("recbole", "rating:float\tuser_id:token\titem_id:token\n4\tu\ti\n\n2.5\tu\tj\n")
    # The blank line 3 is skipped but still counts: timestamps are line numbers 2 and 4.
    assert fields(rows, "item", "timestamp", "rating", "line") == [
        ("i", 2.0, 4.0, 2), ("j", 4.0, 2.5, 4)
    ]


def test_movielens_detects_tab_or_double_colon_per_file():
    tab = parse("movielens", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    colon = parse("movielens", "1::1193::5::978300760\r\n1::661::3::978302109\r\n")
    assert fields(tab, "user", "item", "rating", "timestamp", "line") == [
        ("196", "242", 3.0, 881250949.0, 1), ("186", "302", 3.0, 891717742.0, 2)
    ]
    assert fields(colon, "user", "item", "rating", "timestamp") == [
        ("1", "1193", 5.0, 978300760.0), ("1", "661", 3.0, 978302109.0)
    ]
    # A file is one or the other: a tab line in a '::' file has the wrong field count.
    (good, bad) = parse("movielens", "1::2::3::4\n1\t2\t3\t4\n")
    assert isinstance(bad, Malformed) and bad.reason == formats.WRONG_FIELD_COUNT


def test_sequence_line_gives_positions_in_order():
    rows = parse("sequence", "7 a b c\n8 d\n")
    assert fields(rows, "user", "item", "timestamp", "position", "line") == [
        ("7", "a", 0.0, 0, 1), ("7", "b", 1.0, 1, 1), ("7", "c", 2.0, 2, 1), ("8", "d", 0.0, 0, 2),
    ]


def test_sequence_line_without_items_is_malformed():
    (row,) = parse("sequence", "7 a\nlonely\n")[1:]
    assert isinstance(row, Malformed)
    assert (row.reason, row.where) == (formats.WRONG_FIELD_COUNT, "log.txt:2")


def test_pairs_use_line_order_as_time():
    rows = parse("pairs", "u1 i1\nu1\ti2\nu1 i3 extra\n")
    assert fields(rows[:2], "user", "item", "timestamp") == [("u1", "i1", 1.0), ("u1", "i2", 2.0)]
    assert (rows[2].reason, rows[2].where) == (formats.WRONG_FIELD_COUNT, "log.txt:3")


def test_csv_columns_by_flag_names_with_quoting_and_bom():
    text = "\ufeffts,who,what,stars\n5,\"u,1\",i1,4.5\n6,u2,i2,\n"
    rows = parse("csv", text, user_col="who", item_col="what", time_col="ts", rating_col="stars")
    assert fields(rows[:1], "user", "item", "timestamp", "rating", "line") == [
        ("u,1", "i1", 5.0, 4.5, 2)
    ]
    assert (rows[1].reason, rows[1].where) == (formats.BAD_RATING, "log.txt:3")
    # Without a time column the line number is the time.
    (row,) = parse("csv", "who,what\nu,i\n", user_col="who", item_col="what", time_col="")
    assert row.timestamp == 2.0


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"u1\ti1\t3\n", formats.WRONG_FIELD_COUNT),
        (b"u1\ti1\t3\t5\t6\n", formats.WRONG_FIELD_COUNT),
        (b"u1\ti1\t3\tyesterday\n", formats.BAD_TIMESTAMP),
        (b"u1\ti1\t3\tnan\n", formats.BAD_TIMESTAMP),
        (b"u1\ti1\tgood\t5\n", formats.BAD_RATING),
        (b"\ti1\t3\t5\n", formats.EMPTY_ID),
        (b"u1\t \t3\t5\n", formats.EMPTY_ID),
        (b"u\r1\ti1\t3\t5\n", formats.BAD_ID),
        (b"u\xff1\ti1\t3\t5\n", formats.NOT_UTF8),
    ],
)
def test_each_malformed_reason_is_reported_with_its_place(line, reason):
    header = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    rows = parse("recbole", header + b"u0\ti0\t1\t1\n" + line)
    assert isinstance(rows[0], Interaction)
    (row,) = rows[1:]
    assert isinstance(row, Malformed)
    assert (row.reason, row.where) == (reason, "log.txt:3")
    assert row.describe().startswith(f"log.txt:3: {reason}")


def test_id_with_a_tab_is_malformed_in_csv():
    (row,) = parse("csv", 'u,i,t\n"a\tb",x,1\n', user_col="u", item_col="i", time_col="t")
    assert (row.reason, row.where) == (formats.BAD_ID, "log.txt:2")


@pytest.mark.parametrize(
    "fmt, text, cols, message",
    [
        ("recbole", "a:token\tb:token\n1\t2\n", {}, r"^log\.txt:1: not a RecBole \.inter header"),
        ("recbole", "196\t242\t3\t881250949\n", {}, r"^log\.txt:1: not a RecBole"),
        ("recbole", b"\xff\xfe\x00junk\n", {}, r"^log\.txt:1: the header is not UTF-8"),
        ("csv", "user,item\nu,i\n", {"user_col": "user", "item_col": "item", "time_col": "ts"},
         r"^log\.txt:1: no column --time_col 'ts'; columns are \['user', 'item'\]"),
        ("csv", "user,item\nu,i\n", {"user_col": "", "item_col": "item", "time_col": ""},
         r"^log\.txt:1: --user_col is empty"),
        ("recbole", "", {}, r"^log\.txt: file is empty"),
        ("pairs", "", {}, r"^log\.txt: file is empty"),
    ],
)
def test_file_level_errors_name_the_file_and_line(fmt, text, cols, message):
    with pytest.raises(DataError, match=message):
        parse(fmt, text, **cols)


def test_unknown_format_lists_the_known_ones():
    known = "recbole, movielens, sequence, pairs, csv, parquet, tfds, synthetic"
    with pytest.raises(DataError, match=f"unknown input format 'xml'; known formats: {known}"):
        formats.text_format("xml")
    with pytest.raises(DataError, match="not line-based"):
        formats.text_format("parquet")


def parquet_bytes(table) -> io.BytesIO:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=2)  # several row groups, read batch by batch
    buffer.seek(0)
    return buffer


def test_parquet_rows_stream_with_row_numbers_as_lines():
    import datetime

    import pyarrow as pa

    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    table = pa.table({
        "u": ["a", "b", None, "d", "e"], "i": [1, 2, 3, 4, 5],
        "t": [when, when, when, None, when], "r": [1.0, 2.0, 3.0, 4.0, 5.0],
    })
    rows = list(formats.parquet_records(parquet_bytes(table), "log.parquet", 1, "u", "i", "t", "r"))
    assert fields(rows[:2], "user", "item", "timestamp", "rating", "source", "line") == [
        ("a", "1", when.timestamp(), 1.0, 1, 1), ("b", "2", when.timestamp(), 2.0, 1, 2)
    ]
    assert fields(rows[2:4], "reason", "where") == [
        (formats.EMPTY_ID, "log.parquet:3"), (formats.BAD_TIMESTAMP, "log.parquet:4")
    ]
    assert fields(rows[4:], "user", "line") == [("e", 5)]


def test_parquet_file_errors_name_the_file():
    import pyarrow as pa

    with pytest.raises(DataError, match=r"^log\.parquet: no column --time_col 'ts'"):
        list(formats.parquet_records(
            parquet_bytes(pa.table({"u": ["a"], "i": ["b"]})), "log.parquet", 0, "u", "i", "ts", ""
        ))
    with pytest.raises(DataError, match=r"^log\.parquet: not a readable parquet file"):
        list(formats.parquet_records(io.BytesIO(b"u,i\na,b\n"), "log.parquet", 0, "u", "i", "", ""))


def test_unknown_tfds_dataset_is_a_data_error():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match=r"^tfds:no_such_dataset/x: unknown tfds dataset"):
        formats.prepare_tfds("no_such_dataset/x")


def test_interaction_tsv_round_trip():
    row = Interaction("u 1", "i", 1.5e9, 4.0, 2, 10, 3)
    assert Interaction.from_tsv(row.to_tsv()) == row
    assert Interaction.from_tsv(Interaction("u", "i", 0.1).to_tsv())[:3] == ("u", "i", 0.1)


# ----------------------------------------------------------------------------- compressed input

LOG = b"".join(f"u{i % 97} i{i % 389}\n".encode() for i in range(20000))  # 20,000 lines, ~230 KB


def gzip_cut_after_full_flush(data: bytes, lines: int) -> bytes:
    """A gzip stream of the first ``lines`` lines, flushed (Z_FULL_FLUSH) and cut there: no trailer.

    Every byte up to the cut decompresses, so a reader that ignores the missing
    end of the stream sees a clean file of whole lines.
    """
    head = b"".join(data.splitlines(keepends=True)[:lines])
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)


def corrupt_middle(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    return bytes(damaged)


def zstd_compress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "lzma": lzma.compress,
    "deflate": zlib.compress,
    "zstd": zstd_compress,
}


def read_all(data: bytes, compression: str) -> bytes:
    with formats.decompressed(io.BytesIO(data), "log.gz", compression) as f:
        return b"".join(iter(f.readline, b""))


@pytest.mark.parametrize("compression", list(COMPRESSORS))
def test_decompressed_reads_whole_and_concatenated_streams(compression):
    compress = COMPRESSORS[compression]
    assert read_all(compress(LOG), compression) == LOG
    # Two streams back to back (gzip members, bzip2 streams, ...) read as one file, as Beam does.
    half = len(LOG) // 2
    assert read_all(compress(LOG[:half]) + compress(LOG[half:]), compression) == LOG
    assert read_all(b"", compression) == b""


@pytest.mark.parametrize(
    "compression, data",
    [
        ("gzip", gzip.compress(LOG)[:20000]),                   # cut mid-stream
        ("gzip", gzip_cut_after_full_flush(LOG, 5000)),         # cut on a line boundary, no trailer
        ("gzip", gzip.compress(LOG)[:-4]),                      # only the length field missing
        ("gzip", corrupt_middle(gzip.compress(LOG))),           # one byte flipped
        ("gzip", gzip.compress(LOG) + gzip.compress(LOG)[:100]),  # a second member cut short
        ("bzip2", bz2.compress(LOG)[:-10]),
        ("bzip2", corrupt_middle(bz2.compress(LOG))),
        ("lzma", lzma.compress(LOG)[:-10]),
        ("deflate", zlib.compress(LOG)[:-10]),
        ("zstd", zstd_compress(LOG)[:-10]),
    ],
    ids=["gzip-cut", "gzip-full-flush-cut", "gzip-no-isize", "gzip-corrupt", "gzip-second-member-cut",
         "bzip2-cut", "bzip2-corrupt", "lzma-cut", "deflate-cut", "zstd-cut"],
)
def test_truncated_or_corrupt_compressed_data_is_a_data_error_naming_the_file(compression, data):
    with pytest.raises(DataError, match=f"^log\\.gz: truncated or corrupt {compression} data: "):
        read_all(data, compression)


# ----------------------------------------------------------------------------- a file in another format

RECBOLE_FILE = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n"
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


@pytest.mark.parametrize("fmt", ["sequence", "pairs", "movielens"])
def test_a_recbole_header_in_a_headerless_format_is_refused_with_a_hint(fmt):
    with pytest.raises(DataError, match=(
        r"^log\.txt:1: a RecBole \.inter header \('user_id:token\\titem_id:token.*'\), "
        f"not a {fmt} file; use --input_format recbole$"
    )):
        parse(fmt, RECBOLE_FILE)


@pytest.mark.parametrize("fmt", ["sequence", "pairs"])
@pytest.mark.parametrize("text", [U_DATA, U_DATA.replace("\t", "::")])
def test_a_ratings_log_read_as_sequence_or_pairs_is_refused_with_a_hint(fmt, text):
    lines = io.BytesIO(text.encode()).readlines()
    first = text.splitlines()[0]
    with pytest.raises(DataError, match=(
        f"^log\\.txt:1: its first 3 lines are all 'user item rating timestamp' \\({re.escape(repr(first))}, "
        f"a timestamp '881250949'\\), a MovieLens ratings log, not a {fmt} file; use --input_format movielens "
        r"\(or csv with a header\); --check_format false reads it as it is$"
    )):
        formats.check_not_misread(formats.text_format(fmt), "log.txt", lines)


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("sequence", "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n3 4 12 13 14 15 16 17 18 19\n"),  # Beauty.txt
        ("sequence", "1 5 3 881250949\n2 7 3\n3 8 1 878887116\n"),  # not every line has 4 fields
        ("sequence", "1 5 3 81250949\n2 7 3 91717742\n3 8 1 78887116\n"),  # 8-digit last items
        ("sequence", U_DATA.splitlines(keepends=True)[0] * 2),  # too few lines to tell
        ("pairs", "1 5\n1 881250949\n2 891717742\n"),
        ("movielens", U_DATA),
    ],
)
def test_genuine_files_are_not_mistaken_for_another_format(fmt, text):
    lines = io.BytesIO(text.encode()).readlines()
    formats.check_not_misread(formats.text_format(fmt), "log.txt", lines)
    assert any(isinstance(r, Interaction) for r in parse(fmt, text))


def check(fmt: str, text: str) -> None:
    formats.check_not_misread(formats.text_format(fmt), "log.txt", io.BytesIO(text.encode()).readlines())


MS_LOG = "".join(f"{u} {i} 4 {978300760000 + 1000 * n}\n" for n, (u, i) in enumerate(
    [(1, 1193), (1, 661), (1, 914), (2, 3408), (2, 2355), (3, 1197)]))


@pytest.mark.parametrize("fmt, text, message", [
    # Issue 23.4: a headerless ratings log with millisecond timestamps read as 3 "items" per row.
    ("sequence", MS_LOG, r"^log\.txt:1: its first 6 lines are all 'user item rating timestamp' "
                         r"\('1 1193 4 978300760000', a timestamp '978300760000'\), a ratings log, not a sequence"),
    # String IDs, Unix seconds (the old check wanted all-numeric fields).
    ("sequence", "u1 A 3 881250949\nu2 B 3 891717742\nu3 C 1 878887116\n", r"^log\.txt:1: .*a timestamp '881250949'"),
    # Decimal ratings and no timestamp: 'user item rating'.
    ("sequence", "1 5 4.0\n2 7 3.5\n3 8 1.0\n", r"^log\.txt:1: .*a decimal number '4\.0' \(a rating\?\)"),
    ("pairs", "1 5 4.0 100\n2 7 3.5 101\n3 8 1.0 102\n", r"^log\.txt:1: .*not a pairs file"),
    # ISO dates split by the whitespace.
    ("sequence", "1 5 1997-12-04 15:55:49\n2 7 1997-12-05 10:00:00\n3 8 1998-01-01 00:00:00\n",
     r"^log\.txt:1: .*a date or time '1997-12-04'"),
    # A header row, after blank lines: the line is named.
    ("sequence", "\nuser item rating timestamp\n1 5 3 881250949\n",
     r"^log\.txt:2: a header row \('user item rating timestamp': column names user, item, rating, timestamp\)"),
    ("pairs", "user_id\titem_id\nu1\ti1\n",
     r"^log\.txt:1: a header row .*not pairs data; a log with a header is --input_format csv \(or recbole\); "
     r"--check_format false"),
    ("sequence", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n", r"^log\.txt:1: a header row"),
    # Column names outside HEADER_WORDS: a line of words over lines of numbers only.
    ("sequence", "visitor sku\n1 5 7\n2 6\n3 8 9 10\n",
     r"^log\.txt:1: a header row \('visitor sku': words over lines of numbers only\), not sequence data; "
     r"a log with a header is --input_format csv \(or recbole\); --check_format false reads it as it is$"),
    ("pairs", "\nshopper\tsku\n1\t5\n2\t6\n", r"^log\.txt:2: a header row \('shopper\\tsku': words over lines"),
    # Every one of 50 lines has 4 fields: 'user item rating timestamp' with small numbers.
    ("sequence", "".join(f"{u} {u + 1} 3 {u * 7}\n" for u in range(50)),
     r"^log\.txt:1: each of its first 50 lines has exactly 4 fields \('0 1 3 0'\)"),
])
def test_sequence_and_pairs_refuse_headers_ratings_and_timestamps_with_file_and_line(fmt, text, message):
    with pytest.raises(DataError, match=message):
        check(fmt, text)


@pytest.mark.parametrize("fmt, text", [
    ("sequence", "1 123456789 123456790 123456791\n2 123456792 123456793 123456794\n3 123456795 123456796 2\n"),
    ("sequence", "".join(f"{u} {u + 1} 3 {u * 7}\n" for u in range(49))),  # too few lines to tell by the count
    ("sequence", "".join(f"{u} {u + 1} {u + 2}\n" for u in range(80))),  # every user 2 items: not the 4-field log
    ("pairs", "".join(f"u{u} i{u}\n" for u in range(80))),
    ("sequence", "user1 item_a item_b\nuser2 item_c\n"),  # one header-like word is not a header
    ("sequence", "alice apple pear\nbob plum\ncarol fig kiwi\n"),  # words on every line: IDs, not a header
    ("pairs", "a b\nc 1\n2 3\n"),  # line 2 is not all numbers
    ("sequence", "visitor sku\n1 5 7\n"),  # too few lines to tell a header from a user
])
def test_unusual_but_genuine_sequence_and_pairs_files_pass(fmt, text):
    check(fmt, text)
    assert all(isinstance(r, Interaction) for r in parse(fmt, text))


def test_the_real_beauty_sequence_file_passes_the_format_check():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "datasets", "amazon-beauty",
                        "Beauty.txt")
    if not os.path.exists(path):
        pytest.skip("../shared/datasets/amazon-beauty is not here")
    with open(path, "rb") as f:
        head = f.read(1 << 16).split(b"\n")[:-1]  # what ExampleGen's sniff sees
    formats.check_not_misread(formats.text_format("sequence"), path, head)


# ----------------------------------------------------------------------------- timestamps as dates

# 881250949 is ml-100k's first timestamp: 1997-12-04 15:55:49 UTC.
@pytest.mark.parametrize("text, time_format, seconds", [
    ("881250949", "", 881250949.0),
    ("1997-12-04 15:55:49", "", 881250949.0),         # RecBole's spelling; no zone = UTC
    ("1997-12-04T15:55:49Z", "", 881250949.0),
    ("1997-12-04T17:55:49+02:00", "", 881250949.0),
    ("1997-12-04", "", 881193600.0),                   # 881250949 - (15*3600 + 55*60 + 49)
    ("04/12/1997 15:55:49", "%d/%m/%Y %H:%M:%S", 881250949.0),
    ("19971204", "%Y%m%d", 881193600.0),               # with a format a number is not seconds
])
def test_timestamps_are_numbers_iso_dates_or_a_strptime_format(text, time_format, seconds):
    assert formats.timestamp_seconds(text, time_format) == seconds


@pytest.mark.parametrize("text, time_format", [
    ("yesterday", ""), ("04/12/1997", ""), ("1997-13-40", ""), ("1997-12-04", "%d/%m/%Y"), ("nan", ""),
])
def test_other_timestamps_are_value_errors(text, time_format):
    with pytest.raises(ValueError):
        formats.timestamp_seconds(text, time_format)


def test_date_string_timestamps_read_in_csv_recbole_and_parquet():
    # Issue 22.8: RecBole-style date strings were 'non_numeric_timestamp' on every row.
    rows = parse("csv", "user_id,item_id,timestamp\nu,i,1997-12-04 15:55:49\nu,j,1997-12-04 15:55:50\n")
    assert fields(rows, "item", "timestamp") == [("i", 881250949.0), ("j", 881250950.0)]
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    (row,) = parse("recbole", header + "u\ti\t1997-12-04T15:55:49\n")
    assert row.timestamp == 881250949.0
    fmt = formats.text_format("csv", time_format="%d.%m.%Y")
    rows = list(formats.parse_lines(fmt, "log.csv", 0, [b"user_id,item_id,timestamp\n", b"u,i,04.12.1997\n",
                                                        b"u,j,1997-12-04\n"]))
    assert rows[0].timestamp == 881193600.0
    assert (rows[1].reason, rows[1].where) == (formats.BAD_TIMESTAMP, "log.csv:3")  # the format is the only one

    import pyarrow as pa

    table = pa.table({"u": ["a"], "i": ["b"], "t": ["1997-12-04 15:55:49"]})
    (row,) = formats.parquet_records(parquet_bytes(table), "log.parquet", 0, "u", "i", "t", "")
    assert row.timestamp == 881250949.0
