"""tfseq.distribute without a cluster: replica shares of a batch, the global mean they add up to, TF_CONFIG,
the lost-worker line. Training on two worker processes: tests/pipeline/test_multi_worker.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipeline.configs import DISTRIBUTE_MODES, DistributeConfig
from tfseq import distribute
from tfseq.config import ConfigError
from tfseq.data import schema
from tfseq.data.vocab import DatasetMetadata
from tfseq.experiment import ExperimentConfig, build_model
from tfseq.losses import LOSSES
from tfseq.training import seed_everything

# A causal batch of 5 windows: targets 0 are padding (not targets), so rows hold 3, 1, 2, 4 and 2 targets.
ITEM_IDS = np.array([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0], [7, 8, 9, 1], [2, 3, 0, 0]])
TARGETS = np.array([[2, 3, 4, 0], [5, 0, 0, 0], [6, 7, 0, 0], [8, 9, 1, 2], [3, 4, 0, 0]])


METADATA = DatasetMetadata(num_items=10, num_users=5, compression="", splits={}, item_counts=(0,) + (1,) * 9,
                           max_length=4)


def causal_batch() -> dict[str, tf.Tensor]:
    return {schema.ITEM_IDS: tf.constant(ITEM_IDS, tf.int64), schema.TARGETS: tf.constant(TARGETS, tf.int64)}


@pytest.mark.parametrize("replicas, rows", [(1, [5]), (2, [2, 3]), (3, [1, 2, 2]), (5, [1] * 5)])
def test_replicas_get_contiguous_rows_and_their_share_of_the_targets(replicas, rows):
    batch = causal_batch()
    parts = [distribute.replica_batch(batch, r, replicas) for r in range(replicas)]
    assert [int(p[schema.ITEM_IDS].shape[0]) for p in parts] == rows  # r*B//R .. (r+1)*B//R
    np.testing.assert_array_equal(np.concatenate([p[schema.TARGETS].numpy() for p in parts]), TARGETS)
    np.testing.assert_array_equal(np.concatenate([p[schema.ITEM_IDS].numpy() for p in parts]), ITEM_IDS)
    # 12 targets in all; e.g. with 2 replicas rows 0-1 hold 3 + 1 = 4 of them: share 4/12
    expected = [np.count_nonzero(p[schema.TARGETS].numpy()) / 12 for p in parts]
    np.testing.assert_allclose([float(p[distribute.SHARE]) for p in parts], expected, rtol=1e-6)
    assert sum(expected) == pytest.approx(1.0)


def test_a_replica_without_rows_gets_a_stand_in_row_that_weighs_nothing():
    batch = {schema.ITEM_IDS: tf.constant([[1, 2], [3, 0]], tf.int64), schema.TARGET: tf.constant([3, 4], tf.int64)}
    parts = [distribute.replica_batch(batch, r, 3) for r in range(3)]  # 2 rows over 3 replicas: 0, 1, 1
    assert [float(p[distribute.SHARE]) for p in parts] == [0.0, 0.5, 0.5]
    np.testing.assert_array_equal(parts[0][schema.TARGET].numpy(), [3])  # the stand-in: row 0
    np.testing.assert_array_equal(np.concatenate([p[schema.TARGET].numpy() for p in parts[1:]]), [3, 4])


@pytest.mark.parametrize("replicas", [2, 3])
def test_the_replicas_share_weighted_losses_add_up_to_the_global_batch_mean(replicas):
    """What each replica's step differentiates: sum_r share_r * mean_r == the mean over all 12 targets."""
    config = ExperimentConfig.from_flat({"model": "gru4rec", "embedding_size": 8, "hidden_size": 8,
                                         "dropout_prob": 0.0})
    seed_everything(0)
    model = build_model(config, METADATA)
    batch = causal_batch()
    whole = float(model.compute_loss(batch, training=True))
    parts = [distribute.replica_batch(batch, r, replicas) for r in range(replicas)]
    weighted = sum(float(model.compute_loss({k: v for k, v in p.items() if k != distribute.SHARE}, training=True))
                   * float(p[distribute.SHARE]) for p in parts)
    assert weighted == pytest.approx(whole, rel=1e-6)
    unweighted = sum(float(model.compute_loss({k: v for k, v in p.items() if k != distribute.SHARE}, training=True))
                     for p in parts)
    assert unweighted == pytest.approx(replicas * whole, rel=0.2)  # tfrs' step: about R times the mean


def test_the_flag_layer_and_the_core_agree_on_modes_and_default_timeout():
    assert DISTRIBUTE_MODES == distribute.MODES
    assert DistributeConfig().collective_timeout == distribute.DEFAULT_TIMEOUT
    with pytest.raises(ConfigError, match="--distribute must be one of none, mirrored, multi_worker"):
        DistributeConfig(distribute="horovod")
    with pytest.raises(ConfigError, match="--collective_timeout"):
        DistributeConfig(collective_timeout=0)


@pytest.mark.parametrize("value, message", [
    (None, "TF_CONFIG environment variable, which is not set; e.g. TF_CONFIG="),
    ("{cluster", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', 'needs "cluster" and "task"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "worker 0..1"),
])
def test_a_missing_or_wrong_tf_config_is_named_with_an_example(monkeypatch, value, message):
    if value is None:
        monkeypatch.delenv(distribute.TF_CONFIG, raising=False)
    else:
        monkeypatch.setenv(distribute.TF_CONFIG, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{")):
        distribute.make_strategy(distribute.MULTI_WORKER)


def test_the_chief_is_the_chief_task_else_worker_0():
    workers = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief_task({"cluster": workers, "task": {"type": "worker", "index": 0}})
    assert not distribute.is_chief_task({"cluster": workers, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:1"], **workers}
    assert distribute.is_chief_task({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    assert not distribute.is_chief_task({"cluster": with_chief, "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("error, words", [
    (tf.errors.UnavailableError(None, None, "Collective ops is aborted by: Socket closed\nAdditional GRPC error "
                                "information from remote target /job:worker/replica:0/task:1"),
     "the connection to worker 1 closed (its process exited or was killed)"),
    (tf.errors.UnavailableError(None, None, "The following tasks are unhealthy (stopped sending heartbeats):\n"
                                "/job:worker/replica:0/task:2"), "worker 2 stopped sending heartbeats"),
    (tf.errors.DeadlineExceededError(None, None, "Collective has timed out"), "within 30 s (--collective_timeout)"),
])
def test_a_lost_worker_is_one_line_that_says_which_and_what_next(error, words):
    lost = distribute.worker_lost(error, 30, "at epoch 3 of 10", "restart every worker to resume from epoch 3")
    assert isinstance(lost, ConnectionError)  # an OSError: the entry points print it as one error line
    text = str(lost)
    assert "\n" not in text
    assert text.startswith("multi-worker training stopped at epoch 3 of 10: ")
    assert words in text and text.endswith("; restart every worker to resume from epoch 3")


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_trains_inside_a_strategy_replica(loss):
    """Keras refuses SUM_OVER_BATCH_SIZE reductions in a replica; softmax's custom gradient runs there too."""
    config = ExperimentConfig.from_flat({"model": "gru4rec", "loss": loss, "embedding_size": 8, "hidden_size": 8,
                                         "dropout_prob": 0.0})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        seed_everything(0)
        model = build_model(config, METADATA)

    @tf.function
    def loss_and_gradients():
        def replica():
            with tf.GradientTape() as tape:
                value = model.compute_loss(causal_batch(), training=True)
            return value, tape.gradient(value, model.trainable_variables)

        return strategy.run(replica)

    value, gradients = loss_and_gradients()
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in gradients if g is not None)
    if loss == "softmax":  # no random draws: the replica's loss is the plain one
        seed_everything(0)
        plain = build_model(config, METADATA)
        assert float(value) == pytest.approx(float(plain.compute_loss(causal_batch(), training=True)), rel=1e-6)
