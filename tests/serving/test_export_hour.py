"""A new per-event side input end to end: the Transform writes ``hour_ids`` when asked, the
``hour_of_day`` test model (tests/models/hour_of_day.py) trains on it, is evaluated with and
without it, exported with an optional ``hour`` input, and the SavedModel answers as the model.

The log: each user alternates a random item ``r`` (items r1..r10) seen at a random hour ``h``
with the item ``f{h % 4}`` a minute later, so after ``r`` only its hour tells which of the four
``f`` items comes next. Leave-one-out makes every test target an ``f`` item.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.transform import TransformConfig, run_transform
from serving import client, export
from serving.servable import Servable, read_signature_defs
from serving.signature import FALLBACK, HISTORY, SCORES, TOP_RAW_IDS
from tests.models.hour_of_day import NAME, HourOfDay, HourOfDayConfig
from tests.models.scores import raw_scores
from tests.serving.common import fallback_scores_by_hand, start_server
from tfseq import training
from tfseq.config import CONFIG_FILE, WEIGHTS, ConfigError
from tfseq.data import reader, schema
from tfseq.data.formats import DataError, Interaction
from tfseq.data.vocab import ITEM_VOCAB, DatasetMetadata, read_vocabulary
from tfseq.evaluation import evaluate
from tfseq.experiment import ExperimentConfig, build_model
from tfseq.models import MODELS

DAY = 86_400
START = 1_600_000_000 - 1_600_000_000 % DAY  # a UTC midnight
USERS, PAIRS = 240, 6  # 12 events per user
TOP_K = 3


def hour_log(seed: int = 0) -> list[Interaction]:
    """Per user, PAIRS times: ``r`` at hour h of day d, then ``f{h % 4}`` one minute later."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(USERS):
        for pair in range(PAIRS):
            hour = int(rng.integers(0, 24))
            seen = START + (pair + 1) * DAY + hour * 3600 + int(rng.integers(0, 50)) * 60
            rows.append(Interaction(f"u{user}", f"r{int(rng.integers(1, 11))}", float(seen)))
            rows.append(Interaction(f"u{user}", f"f{hour % 4}", float(seen + 60)))
    return rows


def write_example_gen(directory: Path, rows: list[Interaction]) -> Path:
    directory.mkdir(parents=True)
    (directory / "interactions-00000-of-00001.tsv").write_text("".join(row.to_tsv() + "\n" for row in rows))
    return directory


@pytest.fixture(scope="module")
def transform_dirs(tmp_path_factory):
    """The log through the Transform twice: with ``hour_ids`` and without (the default)."""
    root = tmp_path_factory.mktemp("hour")
    example_gen = write_example_gen(root / "ExampleGen", hour_log())
    options = PipelineOptions(["--runner=DirectRunner"])
    with_hours, plain = root / "Transform", root / "TransformPlain"
    run_transform(TransformConfig(num_shards=1, event_columns=(schema.HOUR_IDS,)), str(example_gen),
                  str(with_hours), options)
    run_transform(TransformConfig(num_shards=1), str(example_gen), str(plain), options)
    return str(with_hours), str(plain)


@pytest.fixture(scope="module")
def registered():
    """``hour_of_day`` in MODELS while this module's tests run (the shipped registry is restored after)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MODELS, "_entries", dict(MODELS._entries))
        MODELS.register(NAME, HourOfDayConfig)(HourOfDay)
        yield
    assert NAME not in MODELS


def test_the_transform_writes_the_hour_of_every_event_only_when_asked(transform_dirs):
    with_hours, plain = transform_dirs
    metadata = DatasetMetadata.load(with_hours)
    raw = read_vocabulary(str(Path(with_hours) / ITEM_VOCAB))
    test = reader.load_evaluation_split(with_hours, metadata, "test", [schema.HOUR_IDS])
    by_user = {}
    for row in hour_log():
        by_user.setdefault(row.user, []).append(row)
    for record in range(len(test)):
        events = by_user[test.users[record]]
        items = test.sequence(record)
        hours = test.events[schema.HOUR_IDS][test.offsets[record]:test.offsets[record + 1]]
        # the history is every event but the last; e.g. an r at 13:20 UTC is stored as 13 + 1 = 14
        assert [raw[i] for i in items] == [e.item for e in events[:-1]]
        np.testing.assert_array_equal(hours, [int(e.timestamp // 3600) % 24 + 1 for e in events[:-1]])
    # without event_columns the records are those of a Transform that never heard of hours
    for split in schema.SPLITS:
        files = [sorted((Path(d) / split).glob("part-*")) for d in (with_hours, plain)]
        plain_records = sorted(r.numpy() for r in tf.data.TFRecordDataset([str(f) for f in files[1]]))
        assert all(not schema.decode_events(r) for r in plain_records)
        hour_records = sorted(r.numpy() for r in tf.data.TFRecordDataset([str(f) for f in files[0]]))
        assert sorted(schema.encode(*schema.decode(r)) for r in hour_records) == plain_records
    with pytest.raises(DataError, match="hour_ids"):  # a model reading hours from a Transform without them
        reader.training_data(plain, DatasetMetadata.load(plain), causal=True, max_seq_len=4, batch_size=8,
                             seed=0, side_inputs=HourOfDay.side_inputs)
    with pytest.raises(ConfigError, match="unknown column 'minute_ids'"):
        TransformConfig(event_columns=("minute_ids",))


@pytest.fixture(scope="module")
def trained(transform_dirs, registered, tmp_path_factory):
    """``(model, metrics with hours, metrics without, export path)`` of the model trained through the registry."""
    transform_dir, _ = transform_dirs
    metadata = DatasetMetadata.load(transform_dir)
    config = ExperimentConfig.from_flat({"model": NAME, "epochs": 3, "batch_size": 32, "learning_rate": 0.05,
                                         "max_seq_len": 6, "valid_metric": "recall@1", "seed": 1})
    model = build_model(config, metadata)
    data = training.training_data(model, transform_dir, metadata, config.train)
    first = next(iter(data.dataset()))
    assert set(first) == {schema.ITEM_IDS, schema.TARGETS, schema.HOUR_IDS}  # the reader asked the model
    valid = reader.evaluation_dataset(transform_dir, metadata, "valid", max_seq_len=6, batch_size=64,
                                      side_inputs=model.side_inputs)
    training.fit(model, data, valid, config.train, verbose=0)

    def test_metrics(side_inputs):
        return evaluate(model, reader.evaluation_dataset(transform_dir, metadata, "test", max_seq_len=6,
                                                         batch_size=64, side_inputs=side_inputs), ks=(1,))

    with_hours, without = test_metrics(model.side_inputs), test_metrics(())
    trainer_dir = tmp_path_factory.mktemp("run") / "Trainer"
    trainer_dir.mkdir()
    model.save_weights(str(trainer_dir / WEIGHTS))
    (trainer_dir / CONFIG_FILE).write_text(config.to_json())
    path = export.export_from_trainer(str(trainer_dir), transform_dir, str(trainer_dir.parent / "serving"), NAME,
                                      top_k=TOP_K)
    return model, with_hours, without, path


def test_the_hour_is_learned_and_evaluated_only_when_the_batches_carry_it(trained):
    _, with_hours, without, _ = trained
    # the hour of the last r names its f: near-perfect; without it, one f in four at best
    assert with_hours["recall@1"] > 0.9
    assert without["recall@1"] < 0.45


def test_the_saved_model_takes_an_optional_hour_and_answers_as_the_model(transform_dirs, trained):
    transform_dir, _ = transform_dirs
    metadata = DatasetMetadata.load(transform_dir)
    model, _, _, path = trained
    signatures = read_signature_defs(path)
    for name in ("serving_default", "embed"):
        assert set(signatures[name].inputs) == {HISTORY, "hour"}
        assert tf.make_ndarray(signatures[name].defaults["hour"]).shape == (0, 0)

    raw = read_vocabulary(str(Path(transform_dir) / ITEM_VOCAB))
    index = {r: i for i, r in enumerate(raw) if i}
    histories = [["r3"], ["r3"], ["r7", "f1", "r2"], ["r5", "unknown", "r1"], ["nope"]]
    hours = [[2, -1, -1], [5, -1, -1], [9, 9, 14], [0, 23, 17], [6, -1, -1]]  # aligned; -1 = padding
    width = 3
    history = tf.constant([h + [""] * (width - len(h)) for h in histories])
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](history=history, hour=tf.constant(hours, tf.int64))
    top = [[i.decode() for i in row] for row in got[TOP_RAW_IDS].numpy()]
    # the last known item's hour picks f{hour % 4}: 2 -> f2, 5 -> f1, 14 -> f2, 17 -> f1 (the unknown ID
    # and its hour 23 are dropped together)
    assert [row[0] for row in top[:4]] == ["f2", "f1", "f2", "f1"]

    # the SavedModel's scores are the model's on the known items and their hours (stored as hour + 1)
    known = [[index[r] for r in h if r in index] for h in histories]
    known_hours = [[v + 1 for r, v in zip(h, hs) if r in index] for h, hs in zip(histories, hours)]
    features = {schema.ITEM_IDS: tf.constant([k + [0] * (width - len(k)) for k in known], tf.int64),
                schema.HOUR_IDS: tf.constant([k + [0] * (width - len(k)) for k in known_hours], tf.int64)}
    scores = raw_scores(model, features).numpy()
    for row in range(4):
        order = [i for i in np.argsort(-scores[row], kind="stable") if i][:TOP_K]
        assert top[row] == [raw[i] for i in order]
        np.testing.assert_allclose(got[SCORES].numpy()[row], scores[row, order], rtol=1e-5, atol=1e-5)
    # no known item: the popularity fallback, flagged, ranked by the model's expected scores after one item
    fallback = fallback_scores_by_hand(model, metadata.item_counts)
    fallback[0] = -np.inf
    order = np.argsort(-fallback, kind="stable")[:TOP_K]
    assert top[4] == [raw[i] for i in order]
    np.testing.assert_allclose(got[SCORES].numpy()[4], fallback[order], rtol=1e-5, atol=1e-5)
    assert got[FALLBACK].numpy().tolist() == [False] * 4 + [True]

    # no hour input (its default), as TF Serving and serving/server.py fill it: the items alone
    servable = Servable(NAME, 1, path)
    assert servable.warm_up() == 12  # warm-up requests carry an hour input too
    alone = servable.run("serving_default", {HISTORY: history.numpy()})
    items_only = raw_scores(model, {schema.ITEM_IDS: features[schema.ITEM_IDS]}).numpy()
    for row in range(4):
        order = [i for i in np.argsort(-items_only[row], kind="stable") if i][:TOP_K]
        assert [i.decode() for i in alone[TOP_RAW_IDS][row]] == [raw[i] for i in order]
    with pytest.raises(tf.errors.InvalidArgumentError, match="one value per history entry"):
        loaded.recommend(history, tf.constant([[1, 2]], tf.int64))


def test_python_m_serving_server_answers_with_the_hour_input_as_the_saved_model(trained, tmp_path):
    _, _, _, path = trained
    histories, hours = [["r3"], ["r4", "f0"], ["nope"]], np.array([[2, -1], [5, 11], [7, -1]], np.int64)
    loaded = tf.saved_model.load(path)
    history = tf.constant([h + [""] * (2 - len(h)) for h in histories])
    want = loaded.signatures["serving_default"](history=history, hour=tf.constant(hours))
    want = [[(i.decode(), float(s)) for i, s in zip(ids, scores) if i]
            for ids, scores in zip(want[TOP_RAW_IDS].numpy(), want[SCORES].numpy())]
    # the server as a user starts it: its own process, which never imports the test's model class
    process, first_line = start_server(Path(path).parent, tmp_path / "server.log", "--port=0", model_name=NAME)
    try:
        assert "gRPC on" in first_line, (tmp_path / "server.log").read_text()
        target = first_line.strip().rsplit(" ", 1)[1]
        with client.RecommenderClient(target, NAME, timeout_s=20) as rpc:
            request = client.predict_request(histories, model_name=NAME)
            request.inputs["hour"].CopyFrom(tf.make_tensor_proto(hours))
            got = client.parse_recommendations(rpc.predict(request))
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    np.testing.assert_allclose([[s for _, s in row] for row in got], [[s for _, s in row] for row in want],
                               rtol=1e-6)
