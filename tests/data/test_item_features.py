"""Item feature tables: the three formats, every bad input by file:line, vocabulary alignment, save/load."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest

from tfseq.data.formats import DataError
from tfseq.data.item_features import (
    FIELDS_FILE,
    VALUES_FILE,
    ItemFeatures,
    RawItemTable,
    build_item_features,
    read_item_table,
    summary_lines,
)

DATASETS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "datasets")


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


ATOMIC = (
    "item_id:token\ttitle:token_seq\tyear:token\tprice:float\tclass:token_seq\n"
    "10\tToy Story\t1995\t3.5\tAnimation Comedy\n"
    "\n"
    "11\tHeat\t\t1.0\tAction Crime Action\n"
    "12\tX\t1995\t2.0\t\n"
)


# -- the three formats -----------------------------------------------------------------
def test_s3rec_json_is_one_categories_field_with_lines_and_integer_values_as_text(tmp_path):
    path = write(tmp_path, "Toy_item2attributes.json", '{"4": [1, 2, 3],\n "83": ["b", 2, 2],\n "9": []}\n')
    table = read_item_table(path)
    assert table.fields == ("categories",)
    assert dict(table.items) == {
        "4": {"categories": ("1", "2", "3")},
        "83": {"categories": ("b", "2")},  # a value repeated within an item is kept once
        "9": {"categories": ()},
    }
    assert dict(table.lines) == {"4": 1, "83": 2, "9": 3}


def test_atomic_item_file_reads_token_and_token_seq_fields_never_the_id_or_floats(tmp_path):
    path = write(tmp_path, "toy.item", ATOMIC)
    table = read_item_table(path)
    assert table.fields == ("title", "year", "class")
    assert dict(table.items["10"]) == {"title": ("Toy", "Story"), "year": ("1995",), "class": ("Animation", "Comedy")}
    assert dict(table.items["11"]) == {"title": ("Heat",), "year": (), "class": ("Action", "Crime")}
    assert dict(table.items["12"]) == {"title": ("X",), "year": ("1995",), "class": ()}
    assert dict(table.lines) == {"10": 2, "11": 4, "12": 5}
    assert read_item_table(path, fields=["class"]).fields == ("class",)


def test_atomic_item_column_can_be_renamed(tmp_path):
    path = write(tmp_path, "toy.item", "class:token_seq\tmovie:token\nA B\t7\n")
    table = read_item_table(path, item_column="movie")
    assert dict(table.items) == {"7": {"class": ("A", "B")}}


def test_csv_with_named_columns_splits_cells_on_the_bar(tmp_path):
    path = write(tmp_path, "items.csv",
                 'movie,genres,brand,ignored\n1,Action|Science Fiction ,acme,x\n"2","",acme,y\n3,Drama|Drama,,z\n')
    table = read_item_table(path, columns=["genres", "brand"], item_column="movie")
    assert table.fields == ("genres", "brand")
    assert dict(table.items) == {
        "1": {"genres": ("Action", "Science Fiction"), "brand": ("acme",)},
        "2": {"genres": (), "brand": ("acme",)},
        "3": {"genres": ("Drama",), "brand": ()},
    }
    assert dict(table.lines) == {"1": 2, "2": 3, "3": 4}
    assert read_item_table(path, columns=["genres", "brand"], fields=["brand"], item_column="movie").fields == (
        "brand",)


def test_parquet_with_list_string_and_integer_cells(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = str(tmp_path / "items.parquet")
    pq.write_table(pa.table({
        "item_id": [5, 6, 7],
        "tags": [["a", "b"], [], None],
        "genre": ["x|y", None, "z"],
        "size": [1, 2, 2],
    }), path)
    table = read_item_table(path, columns=["tags", "genre", "size"])
    assert dict(table.items) == {
        "5": {"tags": ("a", "b"), "genre": ("x", "y"), "size": ("1",)},
        "6": {"tags": (), "genre": (), "size": ("2",)},
        "7": {"tags": (), "genre": ("z",), "size": ("2",)},
    }
    assert dict(table.lines) == {"5": 1, "6": 2, "7": 3}


# -- bad input: one DataError naming file:line --------------------------------------------
@pytest.mark.parametrize("name, text, kwargs, message", [
    ("a_item2attributes.json", '{"1": [1],\n "2": [2,\n}', {}, r"a_item2attributes.json:3: malformed JSON"),
    ("a_item2attributes.json", '{"1": [1],\n "1": [2]}', {}, r"a_item2attributes.json:2: item '1' is listed twice "
                                                             r"\(first on line 1\)"),
    ("a_item2attributes.json", '{"1": [1],\n "2": 5}', {}, r"a_item2attributes.json:2: item '2': attributes must"),
    ("a_item2attributes.json", '{"1": [1],\n "2": [[1]]}', {}, r"a_item2attributes.json:2: item '2': an attribute"),
    ("a_item2attributes.json", '[1, 2]', {}, r"a_item2attributes.json:1: malformed JSON: an S3-Rec"),
    ("a_item2attributes.json", '{"1": [1]} x', {}, r"a_item2attributes.json:1: malformed JSON: extra data"),
    ("a_item2attributes.json", '{"1": [1]}', {"fields": ["brand"]}, r"json: item feature field 'brand': no such"),
    ("t.item", "item_id:token\tclass:token_seq\n1\tA\n2\tB\textra\n", {}, r"t.item:3: 3 tab-separated fields"),
    ("t.item", "item_id:token\tclass:token_seq\n1\tA\n\n1\tB\n", {}, r"t.item:4: item '1' is listed twice \(first on"),
    ("t.item", "item_id\tclass:token_seq\n1\tA\n", {}, r"t.item:1: header column 'item_id' is not name:type"),
    ("t.item", "item_id:token\tclass:tokens\n1\tA\n", {}, r"t.item:1: header column 'class:tokens'"),
    ("t.item", "item:token\tclass:token_seq\n1\tA\n", {}, r"t.item:1: no item ID column 'item_id'"),
    ("t.item", "item_id:token\tclass:token_seq\tp:float\n1\tA\t1\n", {"fields": ["genre"]},
     r"t.item:1: item feature field 'genre': no such field; categorical fields: \['class'\]"),
    ("t.item", "item_id:token\tclass:token_seq\tp:float\n1\tA\t1\n", {"fields": ["p"]},
     r"t.item:1: item feature field 'p': not categorical"),
    ("t.item", "item_id:token\tclass:token_seq\n\t A\n", {}, r"t.item:2: empty item ID"),
    ("t.item", "item_id:token\tp:float\n1\t2\n", {}, r"t.item:1: no categorical"),
    ("t.item", "", {}, r"t.item:1: empty file"),
    ("t.csv", "item_id,genre\n1,a\n2,b,c\n", {"columns": ["genre"]}, r"t.csv:3: 3 fields, the header has 2"),
    ("t.csv", "item_id,genre\n1,a\n1,b\n", {"columns": ["genre"]}, r"t.csv:3: item '1' is listed twice"),
    ("t.csv", "item_id,genre\n1,a\n", {"columns": ["brand"]}, r"t.csv:1: no column\(s\) \['brand'\]"),
    ("t.csv", "item_id,genre\n1,a\n", {}, r"t.csv: a csv item feature file needs its feature columns named"),
    ("t.csv", "id,genre\n1,a\n", {"columns": ["genre"]}, r"t.csv:1: no column\(s\) \['item_id'\]"),
    ("t.txt", "1 2 3\n", {}, r"t.txt: cannot tell the item feature format"),
    # Issue 23.5/23.8: Python's json raises RecursionError / ValueError here, not a DataError.
    ("d_item2attributes.json", '{"1": [1],\n "2": ' + "[" * 100_000 + "]" * 100_000 + "}", {},
     r"^\S*d_item2attributes.json:2: malformed JSON: item '2': a value nested too deeply to read"),
    ("n_item2attributes.json", '{"1": [1],\n\n "2": [' + "9" * 5000 + "]}", {},
     r"^\S*n_item2attributes.json:3: malformed JSON: item '2': a value that cannot be read: Exceeds the limit"),
    # Pretty-printed: the line is the long integer's, not the line where the item's list opens.
    ("p_item2attributes.json", '{\n  "7": [\n    3,\n    ' + "9" * 5000 + "\n  ]\n}", {},
     r"^\S*p_item2attributes.json:4: malformed JSON: item '7': a value that cannot be read"),
    ("e_item2attributes.json", '{"1": [1],\n "x": [2,\n 3 4]}', {},
     r"^\S*e_item2attributes.json:3: malformed JSON: item 'x': Expecting ',' delimiter"),
    # An unterminated quote swallowed the rest of the file as one value.
    ("q.csv", 'item_id,genre\n1,a\n2,"b|c\n3,d\n', {"columns": ["genre"]},
     r"^\S*q.csv:3: malformed csv: a quote opened on this line is never closed"),
    ("q.csv", 'item_id,genre\n1,a\n2,"b\n3,d"\n4,e\n', {"columns": ["genre"]},
     r"^\S*q.csv:3: malformed csv: a quoted field runs over lines 3-4 \(a quote left open\?\)"),
    ("q.csv", 'item_id,genre\n1,"a"b\n', {"columns": ["genre"]}, r"^\S*q.csv:2: malformed csv: ',' expected after"),
])
def test_bad_input_is_one_data_error_naming_file_and_line(tmp_path, name, text, kwargs, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message):
        read_item_table(path, **kwargs)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "t.item"
    path.write_bytes(b"item_id:token\tclass:token_seq\n1\tA\n2\t\xff\n")
    with pytest.raises(DataError, match=r"t.item:3: not UTF-8"):
        read_item_table(str(path))


def test_unreadable_parquet_and_missing_file(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path, "t.parquet", "not parquet")
    with pytest.raises(DataError, match=r"t.parquet: not a readable parquet file"):
        read_item_table(path, columns=["a"])
    with pytest.raises(DataError, match=r"nothing.item: cannot read"):
        read_item_table(str(tmp_path / "nothing.item"))


def test_no_overlap_with_the_log_names_the_file(tmp_path):
    table = read_item_table(write(tmp_path, "x_item2attributes.json", '{"a": [1], "b": [2]}'))
    with pytest.raises(DataError, match=r"x_item2attributes.json: no item of the feature file is in the log"):
        build_item_features(table, ["", "1", "2"])


# -- alignment with the item vocabulary --------------------------------------------------
def oracle(table: RawItemTable, item_vocab: list[str]) -> dict[str, list[list[str]]]:
    """Plain Python: per field, the raw values of each vocabulary index (padding and unknown: none)."""
    return {
        field: [list(table.items[raw][field]) if raw in table.items else [] for raw in item_vocab]
        for field in table.fields
    }


def test_values_align_with_the_item_vocabulary_against_a_plain_python_oracle(tmp_path):
    rng = np.random.default_rng(0)
    genres = [f"g{i}" for i in range(9)]
    rows = {}
    for item in range(40):  # items 0..39 in the file; the log has 20..59
        picked = rng.choice(genres, size=rng.integers(0, 5), replace=False)
        rows[str(item)] = [str(v) for v in picked]
    path = write(tmp_path, "r_item2attributes.json", json.dumps(rows))
    table = read_item_table(path)
    item_vocab = [""] + [str(i) for i in rng.permutation(np.arange(20, 60))]
    features, stats = build_item_features(table, item_vocab)

    (field,) = features.fields
    vocabulary = features.vocabularies[0]
    values = features.values[0]
    expected = oracle(table, item_vocab)[field]
    assert values.dtype == np.int32 and values.shape == (41, max(len(v) for v in expected))
    for row, raw_values in zip(values, expected):
        assert [vocabulary[i] for i in row if i] == raw_values  # same values, file order
        assert list(row[len(raw_values):]) == [0] * (values.shape[1] - len(raw_values))  # right padding
    assert not values[0].any()
    # Vocabulary: padding, then by descending count over the log's items, ties by value.
    counts = collections.Counter(v for vs in expected for v in vs)
    assert vocabulary == ("", *sorted(counts, key=lambda v: (-counts[v], v)))
    assert stats["items"] == 40
    assert stats["items_without_features"] == 20  # 40..59 are not in the file
    assert stats["unknown_items"] == 20  # 0..19 are not in the log
    widths = [len(v) for v in expected[1:]]
    assert stats["fields"][field] == {
        "vocab_size": len(counts) + 1,
        "items_without_values": widths.count(0),
        "mean_values_per_item": pytest.approx(np.mean(widths)),
        "max_values_per_item": max(widths),
        "truncated_items": 0,
        "max_values_in_file": max(widths),
    }
    assert (stats["max_values_per_item"], stats["truncated_items"]) == (64, 0)  # the default cap


def test_several_fields_get_their_own_vocabularies(tmp_path):
    table = read_item_table(write(tmp_path, "toy.item", ATOMIC), fields=["class", "year"])
    features, stats = build_item_features(table, ["", "12", "11", "10", "99"])
    assert features.fields == ("class", "year")
    # class counts: Action 1, Animation 1, Comedy 1, Crime 1 -> by value; year: 1995 twice.
    assert features.vocabularies == (("", "Action", "Animation", "Comedy", "Crime"), ("", "1995"))
    np.testing.assert_array_equal(features.field_values("class"), [[0, 0], [0, 0], [1, 4], [2, 3], [0, 0]])
    np.testing.assert_array_equal(features.field_values("year"), [[0], [1], [0], [1], [0]])
    assert features.num_values("class") == 5 and features.num_values("year") == 2
    assert features.num_items == 5
    assert stats["items_without_features"] == 1 and stats["unknown_items"] == 0
    assert stats["fields"]["year"]["items_without_values"] == 2  # 11 has none, 99 is not in the file
    with pytest.raises(KeyError, match="no item feature field 'title'"):
        features.num_values("title")


def test_files_then_load_gives_the_same_table(tmp_path):
    table = read_item_table(write(tmp_path, "toy.item", ATOMIC))
    features, _ = build_item_features(table, ["", "10", "11", "12"])
    out = tmp_path / "features"
    out.mkdir()
    for name, data in features.files().items():  # as the Transform stage writes them
        (out / name).write_bytes(data)
    assert sorted(os.listdir(out)) == sorted([VALUES_FILE, FIELDS_FILE])
    loaded = ItemFeatures.load(str(out))
    assert loaded.fields == features.fields and loaded.vocabularies == features.vocabularies
    for a, b in zip(loaded.values, features.values):
        assert a.dtype == np.int32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda v: v.astype(np.int64), "int32"),
    (lambda v: np.vstack([np.ones_like(v[:1]), v[1:]]), "padding row 0"),
    (lambda v: v + 5, r"in \[0, 3\)"),
])
def test_item_features_reject_inconsistent_tables(change, message):
    values = np.array([[0, 0], [1, 2], [2, 0]], np.int32)
    ItemFeatures(("f",), (values,), (("", "a", "b"),))
    with pytest.raises(ValueError, match=message):
        ItemFeatures(("f",), (change(values),), (("", "a", "b"),))


# -- the real files ------------------------------------------------------------------------
def test_the_real_beauty_attributes_and_ml100k_item_files():
    beauty = os.path.join(DATASETS, "amazon-beauty", "Beauty_item2attributes.json")
    movies = os.path.join(DATASETS, "ml-100k", "ml-100k.item")
    if not (os.path.exists(beauty) and os.path.exists(movies)):
        pytest.skip("../shared/datasets is not here")
    table = read_item_table(beauty)
    assert table.fields == ("categories",) and len(table.items) == 12101
    features, stats = build_item_features(table, ["", *table.items])
    assert stats["items_without_features"] == 0 and stats["unknown_items"] == 0
    assert stats["fields"]["categories"]["vocab_size"] == 638  # 637 categories + padding
    assert stats["fields"]["categories"]["max_values_per_item"] == 6
    assert stats["truncated_items"] == 0  # the default cap (64) leaves Beauty (at most 6) untouched
    # Issue 22.7: Beauty's attributes (items 1..12101) given for ml-100k (1..1682) cover every log item:
    # the floor passes, the console says most of the file is not in the log.
    _, stats = build_item_features(table, ["", *map(str, range(1, 1683))])
    assert (stats["items_without_features"], stats["unknown_items"], stats["file_items"]) == (0, 10419, 12101)
    assert "that is most of the file's 12,101 items: is the file this dataset's?" in summary_lines(stats)[0]

    table = read_item_table(movies, fields=["class"])
    assert len(table.items) == 1682
    assert table.items["1"]["class"] == ("Animation", "Children's", "Comedy")
    features, stats = build_item_features(table, ["", *sorted(table.items)])
    assert features.num_values("class") == 1 + 19  # 19 genres (unknown included) + padding
    assert read_item_table(movies).fields == ("movie_title", "release_year", "class")
    _, stats = build_item_features(read_item_table(movies), ["", *sorted(table.items)])
    assert stats["truncated_items"] == 0  # titles have at most 15 words, genres 6
    assert max(f["max_values_in_file"] for f in stats["fields"].values()) == 15


# -- a cap on values per item, a floor on coverage (issues 23.2 and 22.7) ---------------------
def test_values_beyond_the_cap_are_cut_to_the_first_in_file_order_and_counted(tmp_path):
    # 80 items with 2 attributes each, one with 5,000: the table is as wide as the cap, not 5,000.
    rows = {str(i): [f"a{i % 7}", f"b{i % 3}"] for i in range(80)}
    rows["40"] = [f"x{n}" for n in range(5000)]
    table = read_item_table(write(tmp_path, "w_item2attributes.json", json.dumps(rows)))
    features, stats = build_item_features(table, ["", *map(str, range(80))])
    values = features.field_values("categories")
    assert values.shape == (81, 64)
    vocabulary = features.vocabularies[0]
    assert [vocabulary[v] for v in values[41]] == [f"x{n}" for n in range(64)]  # row 41 = item "40"
    assert [vocabulary[v] for v in values[1] if v] == ["a0", "b0"]
    assert "x64" not in vocabulary  # a cut value gets no vocabulary entry
    assert stats["truncated_items"] == 1 and stats["max_values_per_item"] == 64
    assert stats["fields"]["categories"]["truncated_items"] == 1
    assert stats["fields"]["categories"]["max_values_in_file"] == 5000
    assert stats["fields"]["categories"]["max_values_per_item"] == 64
    (_, line) = summary_lines(stats)
    assert line == ("item features: field 'categories': 1 item(s) had more than 64 values (up to 5,000); "
                    "kept the first 64 in file order (--max_attributes_per_item)")


def test_the_cap_applies_per_field_and_items_are_counted_once(tmp_path):
    path = write(tmp_path, "t.csv", "item_id,a,b\n1,p|q|r,s|t|u\n2,p,s|t|u\n3,p,s\n")
    table = read_item_table(path, columns=["a", "b"])
    features, stats = build_item_features(table, ["", "1", "2", "3"], max_values=2)
    np.testing.assert_array_equal(features.field_values("a")[1:, :], [[1, 2], [1, 0], [1, 0]])  # p q (r cut)
    assert [features.vocabularies[1][v] for v in features.field_values("b")[2]] == ["s", "t"]
    assert (stats["fields"]["a"]["truncated_items"], stats["fields"]["b"]["truncated_items"]) == (1, 2)
    assert stats["truncated_items"] == 2  # items 1 and 2
    with pytest.raises(ValueError, match="max_values must be >= 1"):
        build_item_features(table, ["", "1"], max_values=0)


def test_a_file_describing_too_few_of_the_log_items_is_an_error_naming_both_counts(tmp_path):
    # Another dataset's file whose numeric IDs overlap: 3 of the log's 10 items, 7 of its 10 items unknown.
    path = write(tmp_path, "other_item2attributes.json", json.dumps({str(i): [i] for i in range(7, 17)}))
    table = read_item_table(path)
    log = ["", *map(str, range(10))]
    message = (r"^\S*other_item2attributes.json: the feature file describes only 3 of the log's 10 items \(30.0%; "
               r"7 of its 10 items are not in the log\), below --min_feature_coverage 0.5: is it another dataset's\? "
               r"A lower --min_feature_coverage accepts it$")
    with pytest.raises(DataError, match=message):
        build_item_features(table, log)
    _, stats = build_item_features(table, log, min_coverage=0.3)
    assert (stats["items_without_features"], stats["unknown_items"]) == (7, 7)
    assert summary_lines(stats) == ["item features: 3 of the log's 10 items described; 7 file items not in "
                                    "the log (ignored); that is most of the file's 10 items: is the file this "
                                    "dataset's? (a catalog of more items than the log is fine)"]
    with pytest.raises(DataError, match="no item of the feature file is in the log"):
        build_item_features(table, ["", "x"], min_coverage=0.0)  # no overlap at all is an error at any floor
