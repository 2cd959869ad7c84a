"""Item side features through every stage: Transform artifact, Trainer, Evaluator, Pusher, in-process answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfseq
from pipeline import run as pipeline_run
from tfseq.data import vocab
from tfseq.data.item_features import ItemFeatures

SMALL = {"synthetic_users": 200, "synthetic_items": 60, "synthetic_interactions": 3000, "epochs": 2,
         "batch_size": 64}
TINY_DIFSR = {"embedding_size": 16, "attribute_embedding_size": 8, "num_layers": 1, "num_heads": 2, "inner_size": 16}


def item_table(path: Path, items: range, *, extra: tuple[str, ...] = ()) -> Path:
    """A csv item table: item iN has colour N % 3 and the tags of N's divisors 2 and 5."""
    rows = ["item_id,colour,tags"]
    for n in items:
        tags = "|".join(t for t, d in (("even", 2), ("fives", 5)) if n % d == 0)
        rows.append(f"i{n},c{n % 3},{tags}")
    rows += list(extra)
    path.write_text("\n".join(rows) + "\n")
    return path


def test_transform_writes_aligned_features_and_counts_missing_and_unknown_items(tmp_path):
    table = item_table(tmp_path / "items.csv", range(10, 70))  # the log has i0..i59: i0..i9 missing, i60..i69 unknown
    root = tmp_path / "out"
    result = tfseq.run(output_dir=str(root), stop_after="Transform", item_features=str(table),
                       item_feature_cols=("colour", "tags"), **SMALL)
    transform = Path(result.transform_dir)
    features = ItemFeatures.load(str(transform / "item_features"))
    raw_ids = vocab.read_vocabulary(str(transform / vocab.ITEM_VOCAB))
    assert features.fields == ("colour", "tags") and features.num_items == len(raw_ids)
    colours, tags = features.field_values("colour"), features.field_values("tags")
    for index, raw in enumerate(raw_ids):  # plain-Python oracle of the alignment
        n = int(raw[1:]) if raw else -1
        got_colour = [features.vocabularies[0][v] for v in colours[index] if v]
        got_tags = [features.vocabularies[1][v] for v in tags[index] if v]
        if index == 0 or n < 10:  # padding, and log items missing from the table: padding values
            assert got_colour == [] and got_tags == []
        else:
            assert got_colour == [f"c{n % 3}"]
            assert got_tags == [t for t, d in (("even", 2), ("fives", 5)) if n % d == 0]
    stats = json.loads((transform / "stats.json").read_text())["item_features"]
    in_log = {r for r in raw_ids[1:]}
    assert stats["items_without_features"] == sum(1 for r in in_log if int(r[1:]) < 10)
    assert stats["unknown_items"] == sum(1 for n in range(10, 70) if f"i{n}" not in in_log)
    assert stats["fields"]["colour"]["vocab_size"] == 4  # padding + c0, c1, c2

    # An edited feature file rebuilds Transform (not ExampleGen); the same file is reused.
    again = tfseq.run(output_dir=str(root), stop_after="Transform", item_features=str(table),
                      item_feature_cols=("colour", "tags"), **SMALL)
    assert again.stages == {"ExampleGen": "skipped", "Transform": "skipped"}
    item_table(table, range(0, 70))
    edited = tfseq.run(output_dir=str(root), stop_after="Transform", item_features=str(table),
                       item_feature_cols=("colour", "tags"), **SMALL)
    assert edited.stages == {"ExampleGen": "skipped", "Transform": "ran"}


@pytest.mark.parametrize("argv, expected", [
    (["--model", "difsr"], "model difsr uses item side features: give --item_features"),
    (["--model", "sasrec_f"], "model sasrec_f uses item side features"),
])
def test_a_feature_model_without_features_fails_before_any_stage(tmp_path, capsys, argv, expected):
    code = pipeline_run.main([*argv, "--output_dir", str(tmp_path / "out")])
    assert code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_feature_file_with_no_overlap_is_an_error_naming_it(tmp_path, capsys):
    table = item_table(tmp_path / "other.csv", range(1000, 1010))
    code = pipeline_run.main([
        "--output_dir", str(tmp_path / "out"), "--stop_after", "Transform", "--item_features", str(table),
        "--item_feature_cols", "colour", *[f"--{k}={v}" for k, v in SMALL.items() if k.startswith("synthetic")]])
    err = capsys.readouterr().err
    assert code == 2 and "other.csv" in err and "no item of the feature file is in the log" in err, err
    assert not (tmp_path / "out" / "Transform").exists()


def test_items_past_the_attribute_cap_are_cut_counted_and_printed(tmp_path, capsys):
    # Issue 23.2: one item of 60 with 500 tags made every row of the padded table 500 wide.
    table = item_table(tmp_path / "items.csv", range(0, 60))
    text = table.read_text().replace("\ni7,c1,\n", "\ni7,c1," + "|".join(f"t{n}" for n in range(500)) + "\n")
    table.write_text(text)
    result = tfseq.run(output_dir=str(tmp_path / "out"), stop_after="Transform", item_features=str(table),
                       item_feature_cols=("colour", "tags"), max_attributes_per_item=8, **SMALL)
    transform = Path(result.transform_dir)
    features = ItemFeatures.load(str(transform / "item_features"))
    assert features.field_values("tags").shape[1] == 8 and features.field_values("colour").shape[1] == 1
    stats = json.loads((transform / "stats.json").read_text())["item_features"]
    assert (stats["truncated_items"], stats["max_values_per_item"]) == (1, 8)
    assert stats["fields"]["tags"]["max_values_in_file"] == 500
    out = capsys.readouterr().out
    assert ("[Transform] item features: field 'tags': 1 item(s) had more than 8 values (up to 500); kept the "
            "first 8 in file order (--max_attributes_per_item)") in out
    assert "[Transform] item features: 60 of the log's 60 items described; 0 file items not in the log" in out


def test_a_feature_file_covering_too_few_log_items_is_an_error_naming_both_counts(tmp_path, capsys):
    # Issue 22.7: a file of another dataset (numeric IDs that overlap) was accepted.
    table = item_table(tmp_path / "other.csv", range(50, 150))  # covers i50..i59 of the log's 60 items
    argv = ["--output_dir", str(tmp_path / "out"), "--stop_after", "Transform", "--item_features", str(table),
            "--item_feature_cols", "colour", *[f"--{k}={v}" for k, v in SMALL.items() if k.startswith("synthetic")]]
    code = pipeline_run.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        f"error: {table}: the feature file describes only 10 of the log's 60 items (16.7%; 90 of its 100 items "
        "are not in the log), below --min_feature_coverage 0.5"), err
    assert not (tmp_path / "out" / "Transform").exists()
    assert pipeline_run.main([*argv, "--min_feature_coverage", "0.1"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("model, params", [("difsr", TINY_DIFSR), ("sasrec_f", {"embedding_size": 16})])
def test_a_feature_model_trains_exports_and_answers_raw_ids_like_in_process(tmp_path, model, params):
    table = item_table(tmp_path / "items.csv", range(0, 60))
    result = tfseq.run(output_dir=str(tmp_path / "out"), model=model, item_features=str(table),
                       item_feature_cols=("colour", "tags"), **SMALL, **params)
    assert result.metrics["test"]["num_users"] == 200 and result.export_path
    served = tf.saved_model.load(result.export_path).signatures["serving_default"]
    histories = [["i1", "i2", "i3"], ["i40"], ["unknown", "i7"], []]
    width = max(len(h) for h in histories)
    answer = served(history=tf.constant([h + [""] * (width - len(h)) for h in histories], shape=[4, width]))
    in_process = tfseq.load(result.run_dir).recommend(histories, k=10)
    assert in_process.item_ids == [[i.decode() for i in row] for row in answer["item_ids"].numpy()]
    np.testing.assert_allclose(in_process.scores, answer["scores"].numpy(), rtol=1e-5, atol=1e-6)
    info = json.loads(Path(result.export_path, "assets.extra", "tfseq_export.json").read_text())
    assert info["model"] == model
