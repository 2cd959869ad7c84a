"""serving/export.py: signatures, answers vs a numpy oracle and the Keras model, versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from serving import export, warmup
from serving.signature import EMBEDDING, EXPORT_INFO_FILE, HISTORY, SCORES, TOP_RAW_IDS
from tests.serving.common import (
    MeanEmbedding,
    assert_same_recommendations,
    keras_top_k,
    make_toy,
)
from tfseq.data import vocab
from tfseq.experiment import load_trained_model

# Histories exercising every rule: unknown IDs skipped, "" padding, truncation to the last
# max_seq_len (=4) *known* items, raw IDs with spaces / non-ASCII / digits, no known item at all.
HISTORIES = [
    ["a01", "a02", "a03"],
    ["a07"],
    ["nope", "a04", "", "x y", "missing", "ünï"],
    ["a01", "a02", "a03", "a04", "a05", "unknown", "a06", "12"],  # -> a04 a05 a06 12
    ["", "", ""],  # padding only -> popularity
    ["never-seen", "also-unknown"],  # unknown only -> popularity
    ["last.item", "Z-9", "last.item"],  # repeats count twice in the mean
]


def run_signature(version_dir: str, histories, signature: str = "serving_default"):
    loaded = tf.saved_model.load(version_dir)
    width = max(1, *(len(h) for h in histories))
    padded = np.array([h + [""] * (width - len(h)) for h in histories], dtype=object)
    return {
        k: v.numpy()
        for k, v in loaded.signatures[signature](**{HISTORY: tf.constant(padded)}).items()
    }


def as_pairs(outputs) -> list[list[tuple[str, float]]]:
    return [
        [(raw.decode("utf-8"), float(score)) for raw, score in zip(ids, scores)]
        for ids, scores in zip(outputs[TOP_RAW_IDS], outputs[SCORES])
    ]


def test_signatures_have_the_documented_names_dtypes_and_shapes(toy, tmp_path):
    path = toy.export(tmp_path / "serving", top_k=5)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "embed"}
    for name in ("serving_default", "embed"):
        _, inputs = loaded.signatures[name].structured_input_signature
        assert inputs == {HISTORY: tf.TensorSpec([None, None], tf.string, name=HISTORY)}
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert outputs[TOP_RAW_IDS].dtype == tf.string and outputs[TOP_RAW_IDS].shape.as_list() == [None, 5]
    assert outputs[SCORES].dtype == tf.float32 and outputs[SCORES].shape.as_list() == [None, 5]
    assert loaded.signatures["embed"].structured_outputs[EMBEDDING].shape.as_list() == [None, 8]
    # the vocabulary travels as an asset: the Transform file minus its padding line
    asset = (tmp_path / "serving" / "toy" / "1" / "assets" / export.ASSET_VOCAB).read_text(
        encoding="utf-8"
    )
    assert asset.split("\n")[:-1] == toy.raw_ids[1:]


def test_saved_model_cli_shows_both_signatures(toy, tmp_path):
    path = toy.export(tmp_path / "serving", top_k=3)
    shown = subprocess.run(
        ["saved_model_cli", "show", "--all", "--dir", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for expected in (
        "signature_def['serving_default']",
        "signature_def['embed']",
        "inputs['history']",
        "outputs['item_ids']",
        "outputs['scores']",
        "outputs['embedding']",
        "shape: (-1, 3)",
    ):
        assert expected in shown, expected
    assert "PyFunc" not in shown  # only standard ops, so tensorflow_model_server can run it


def test_top_k_equals_numpy_oracle(toy, tmp_path):
    path = toy.export(tmp_path / "serving", top_k=5, max_seq_len=4)
    got = as_pairs(run_signature(path, HISTORIES))
    want = toy.expected(HISTORIES, top_k=5, max_seq_len=4)
    assert_same_recommendations(got, want)
    # rows 4 and 5 have no known item: the popularity fallback, the same for both
    assert got[4] == got[5]
    assert all("" not in [i for i, _ in row] for row in got)  # the padding item never comes back


def test_exclude_history_never_returns_history_items(toy, tmp_path):
    k = len(toy.raw_ids) - 1  # every item: rows run out of eligible items and are filled with ""
    path = toy.export(tmp_path / "serving", top_k=k, max_seq_len=4, exclude_history=True)
    got = as_pairs(run_signature(path, HISTORIES))
    assert_same_recommendations(
        got, toy.expected(HISTORIES, top_k=k, max_seq_len=4, exclude_history=True)
    )
    for history, row in zip(HISTORIES, got):
        returned = [i for i, _ in row if i]
        assert not set(returned) & set(history)  # also items older than the last max_seq_len
        known = {raw for raw in history if raw in toy.raw_ids[1:]}
        assert len(returned) == k - len(known)
        assert all(score == -np.inf for i, score in row if not i)


def test_embed_returns_the_model_query(toy, tmp_path):
    path = toy.export(tmp_path / "serving", max_seq_len=4)
    got = run_signature(path, HISTORIES, "embed")[EMBEDDING]
    index = {raw: i for i, raw in enumerate(toy.raw_ids)}
    table = toy.table
    for row, history in zip(got, HISTORIES):
        recent = [index[r] for r in history if index.get(r, 0) > 0][-4:]
        want = table[recent].mean(axis=0) if recent else np.zeros(table.shape[1])
        np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)


def test_warmup_file_holds_predict_requests_the_model_answers(toy, tmp_path):
    path = toy.export(tmp_path / "serving", top_k=5, max_seq_len=4)
    requests = warmup.read_warmup_requests(path)
    assert 5 <= len(requests) <= 100
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "embed"}
    assert all(r.model_spec.name == "toy" for r in requests)
    loaded = tf.saved_model.load(path)
    for request in requests:
        history = tf.make_ndarray(request.inputs[HISTORY])
        assert history.dtype == object and history.ndim == 2
        outputs = loaded.signatures[request.model_spec.signature_name](
            **{HISTORY: tf.constant(history)}
        )
        assert all(v.shape[0] == history.shape[0] for v in outputs.values())
    # the records are the histories warmup_histories() chose, from the most popular items
    singles = [
        tf.make_ndarray(r.inputs[HISTORY])
        for r in requests
        if r.inputs[HISTORY].tensor_shape.dim[0].size == 1
    ]
    assert [b"a05"] in [list(h[0][h[0] != b""]) for h in singles]


def test_versions_are_numbered_and_never_overwritten(toy, tmp_path):
    serving_dir = tmp_path / "serving"
    model_dir = serving_dir / "toy"
    assert os.path.basename(toy.export(serving_dir)) == "1"
    assert os.path.basename(toy.export(serving_dir)) == "2"
    assert os.path.basename(toy.export(serving_dir, version=7)) == "7"
    assert os.path.basename(toy.export(serving_dir)) == "8"
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    with pytest.raises(FileExistsError, match="7"):
        toy.export(serving_dir, version=7)
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before
    assert sorted(before) == ["1", "2", "7", "8"]  # no hidden temporaries left behind
    info = json.loads((model_dir / "8" / EXPORT_INFO_FILE).read_text())
    assert info["version"] == 8 and info["model_class"] == "MeanEmbedding"


class BrokenEncoder(MeanEmbedding):
    def encode(self, item_ids, training=False):
        raise RuntimeError("encoder exploded while tracing")


def test_a_failed_export_leaves_no_version_and_no_temporary(tmp_path):
    toy = make_toy(tmp_path / "data")
    serving_dir = tmp_path / "serving"
    toy.export(serving_dir)
    broken = BrokenEncoder(None, num_items=toy.model.num_items)
    broken.item_embedding.build(None)
    with pytest.raises(RuntimeError, match="exploded"):
        export.export_saved_model(
            broken,
            item_vocab_path=toy.vocab_path,
            item_counts=toy.counts,
            serving_dir=str(serving_dir),
            model_name="toy",
        )
    assert sorted(os.listdir(serving_dir / "toy")) == ["1"]


@pytest.mark.parametrize(
    "change, error",
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 100}, "top_k"),
        ({"model_name": "a/b"}, "model_name"),
        ({"version": 0}, "version"),
        ({"item_counts": [1, 2, 3]}, "item_counts"),
        ({"max_seq_len": 0}, "max_seq_len"),
    ],
)
def test_bad_arguments_are_refused_before_writing(toy, tmp_path, change, error):
    kwargs = dict(
        item_vocab_path=toy.vocab_path,
        item_counts=toy.counts,
        serving_dir=str(tmp_path / "serving"),
        model_name="toy",
    )
    kwargs.update(change)
    with pytest.raises(ValueError, match=error):
        export.export_saved_model(toy.model, **kwargs)
    assert not (tmp_path / "serving").exists()


def test_a_vocabulary_of_another_size_is_refused_naming_the_file(toy, tmp_path):
    other = tmp_path / "other_vocab.txt"
    other.write_text(vocab.vocabulary_text(["p", "q"]))
    with pytest.raises(ValueError, match="other_vocab.txt"):
        export.export_saved_model(
            toy.model,
            item_vocab_path=str(other),
            item_counts=[0, 1, 1],
            serving_dir=str(tmp_path / "s"),
            model_name="toy",
        )


# A process that cannot import tfseq (nor Keras) loads the SavedModel and answers.
TF_ONLY_SCRIPT = textwrap.dedent("""
    import json, sys
    # Block the project's packages: an editable install makes them importable
    # everywhere, and a None entry in sys.modules turns any import into ImportError.
    for name in ("tfseq", "pipeline", "serving", "tuning"):
        sys.modules[name] = None
    import numpy as np
    import tensorflow as tf
    version_dir, histories_path, out_path = sys.argv[1:]
    histories = json.load(open(histories_path))
    width = max(1, *(len(h) for h in histories))
    padded = np.array([h + [""] * (width - len(h)) for h in histories], dtype=object)
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    outputs = signature(history=tf.constant(padded))
    json.dump({
        "item_ids": [[x.decode() for x in row] for row in outputs["item_ids"].numpy()],
        "scores": outputs["scores"].numpy().tolist(),
        "loaded": sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("tfseq", "tf_keras") and sys.modules[m] is not None
        ),
    }, open(out_path, "w"))
    """)


def test_tensorflow_only_process_matches_the_keras_model_on_200_test_histories(trained, tmp_path):
    version_dir = trained.pushed()["path"]
    histories, indices = trained.test_histories(limit=200)
    assert len(histories) == 200
    (tmp_path / "histories.json").write_text(json.dumps(histories))
    (tmp_path / "tf_only.py").write_text(TF_ONLY_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    subprocess.run(
        [sys.executable, "tf_only.py", version_dir, "histories.json", "out.json"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["loaded"] == []  # neither tfseq nor tf-keras was needed
    got = [list(zip(ids, scores)) for ids, scores in zip(out["item_ids"], out["scores"])]

    model, config = load_trained_model(trained.trainer_dir, trained.transform_dir)
    raw_ids = vocab.read_vocabulary(os.path.join(trained.transform_dir, vocab.ITEM_VOCAB))
    want = keras_top_k(model, indices, raw_ids, top_k=10, max_seq_len=config.train.max_seq_len)
    assert_same_recommendations(got, want)


def test_export_cli_writes_the_requested_version_and_refuses_to_overwrite(
    trained, tmp_path, capsys
):
    argv = [
        "--trainer_dir",
        trained.trainer_dir,
        "--transform_dir",
        trained.transform_dir,
        "--serving_dir",
        str(tmp_path),
        "--model_name",
        "cli",
        "--top_k",
        "4",
        "--version",
        "3",
    ]
    assert export.main(argv) == 0
    path = capsys.readouterr().out.strip()
    assert path == str(tmp_path / "cli" / "3")
    assert (
        tf.saved_model.load(path).signatures["serving_default"].structured_outputs[SCORES].shape[1]
        == 4
    )
    assert export.main(argv) == 2
    assert "exists" in capsys.readouterr().err


def test_export_cli_names_a_missing_transform_file(tmp_path, capsys):
    argv = [
        "--trainer_dir",
        str(tmp_path / "Trainer"),
        "--transform_dir",
        str(tmp_path / "Transform"),
        "--serving_dir",
        str(tmp_path / "serving"),
    ]
    assert export.main(argv) == 2
    assert "metadata.json" in capsys.readouterr().err
    assert not (tmp_path / "serving").exists()
