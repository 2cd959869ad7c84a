"""tfseq.training.fit and the Trainer stage on tiny Transform outputs with registry models."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf

from pipeline.artifacts import CURVE, HISTORY
from pipeline.trainer import run_trainer
from tests.data.test_reader import write_transform_dir
from tests.models.scores import raw_scores
from tfseq import training
from tfseq.config import TrainConfig
from tfseq.data import reader
from tfseq.evaluation import evaluate
from tfseq.experiment import CONFIG_FILE, WEIGHTS, ExperimentConfig, build_model, load_trained_model

NUM_ITEMS = 21  # padding + items 1..20
SMALL = {  # tiny versions of the registry models, for speed
    "gru4rec": {"embedding_size": 16, "hidden_size": 16, "dropout_prob": 0.0},
    "sasrec": {"embedding_size": 16, "num_layers": 1, "inner_size": 32, "max_seq_len": 10},
    "core_trm": {"embedding_size": 16, "num_layers": 1, "inner_size": 32, "max_seq_len": 10},
    "pop": {},
}


def cycles(num_users: int = 120, seed: int = 0) -> dict[str, list[int]]:
    """Deterministic next item: i -> i + 1 around a cycle of 20 items; random start and length."""
    rng = random.Random(seed)
    out = {}
    for u in range(num_users):
        start, n = rng.randrange(20), rng.randint(4, 10)
        out[f"u{u:03d}"] = [(start + t) % 20 + 1 for t in range(n)]
    return out


def noise(num_users: int = 80, seed: int = 1) -> dict[str, list[int]]:
    """Nothing to learn: every item uniformly at random."""
    rng = random.Random(seed)
    return {
        f"u{u:03d}": [rng.randrange(1, NUM_ITEMS) for _ in range(rng.randint(3, 8))]
        for u in range(num_users)
    }


@pytest.fixture(scope="module")
def cycle_dir(tmp_path_factory):
    return write_transform_dir(tmp_path_factory.mktemp("cycles"), cycles(), NUM_ITEMS)


def experiment(model: str, **train) -> ExperimentConfig:
    values = {"model": model, "max_seq_len": 10, "batch_size": 32, "learning_rate": 0.01}
    values.update({**SMALL[model], **train})
    return ExperimentConfig.from_flat(values)


def train_model(config: ExperimentConfig, transform: tuple, **fit):
    """Seeds, builds and fits ``config``'s model (prefix batches when ``all_positions`` is off);
    ``fit`` goes to ``training.fit`` (callbacks, checkpoint)."""
    root, metadata = transform
    training.seed_everything(config.train.seed)
    model = build_model(config, metadata)
    train = config.train
    data = training.training_data(model, root, metadata, train)
    valid = reader.evaluation_dataset(
        root, metadata, "valid", max_seq_len=train.max_seq_len, batch_size=train.eval_batch_size
    )
    return model, valid, training.fit(model, data, valid, train, verbose=0, **fit)


def without_timings(result: training.TrainResult) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "train_seconds")} for row in result.history]


@pytest.mark.parametrize("name, all_positions", [("gru4rec", True), ("sasrec", False)])  # both layouts
def test_fit_learns_the_cycle_far_better_than_popularity(cycle_dir, name, all_positions):
    _, _, pop = train_model(experiment("pop"), cycle_dir)
    config = experiment(name, epochs=8, patience=8, all_positions=all_positions)
    model, valid, result = train_model(config, cycle_dir)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert pop.history[0]["loss"] is None and pop.epochs_run == 1
    # popularity is ~uniform on a cycle; the next item is fully determined by the last one
    assert result.best_metrics["ndcg@10"] > 0.8 > pop.best_metrics["ndcg@10"] + 0.3
    best = result.best_metrics["ndcg@10"]
    assert best == max(row["val_ndcg@10"] for row in result.history)
    assert evaluate(model, valid)["ndcg@10"] == pytest.approx(best, abs=1e-7)


def test_early_stopping_stops_after_patience_misses_and_restores_the_best_weights(tmp_path):
    transform = write_transform_dir(tmp_path / "noise", noise(), NUM_ITEMS)
    config = experiment("gru4rec", epochs=30, patience=2, learning_rate=0.05)
    model, valid, result = train_model(config, transform)
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run == result.best_epoch + 2  # two misses in a row after the best epoch
    values = [row["val_ndcg@10"] for row in result.history]
    assert values[result.best_epoch - 1] == max(values) > max(values[result.best_epoch:])
    assert all(values[result.best_epoch - 1] > v for v in values[: result.best_epoch - 1])
    # the model now holds the best epoch's weights, not the last epoch's
    best = result.best_metrics["ndcg@10"]
    assert evaluate(model, valid)["ndcg@10"] == pytest.approx(best, abs=1e-7)
    assert result.best_metrics["ndcg@10"] != pytest.approx(values[-1])


@pytest.mark.parametrize("decay_patience", [0, 1, 2])
def test_learning_rate_is_cut_after_each_run_of_epochs_without_a_better_metric(tmp_path, decay_patience):
    transform = write_transform_dir(tmp_path / "noise", noise(), NUM_ITEMS)
    config = experiment("gru4rec", epochs=8, patience=8, learning_rate=0.05,
                        lr_decay_patience=decay_patience, lr_decay_factor=0.5)
    _, _, result = train_model(config, transform)
    values = [row["val_ndcg@10"] for row in result.history]
    expected, best, misses = [0.05], -1.0, 0
    for value in values[:-1]:  # the rate each next epoch trains at, from the metrics so far
        best, misses = (value, 0) if value > best else (best, misses + 1)
        expected.append(expected[-1] * (0.5 if decay_patience and misses and misses % decay_patience == 0 else 1))
    assert [row["learning_rate"] for row in result.history] == pytest.approx(expected)
    if decay_patience == 1:
        assert expected[-1] < 0.05  # noise: some epoch missed, so the rate was cut


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(cycle_dir):
    def run(seed: int) -> list[dict]:
        config = experiment("sasrec", epochs=2, seed=seed, weight_decay=1e-4)  # L2Adam too
        _, _, result = train_model(config, cycle_dir)
        return without_timings(result)

    first = run(5)
    assert run(5) == first
    assert run(6)[0]["loss"] != first[0]["loss"]


class InterruptAt(tf.keras.callbacks.Callback):
    """Raises KeyboardInterrupt as epoch ``epoch`` (1-based) begins, as Ctrl-C during it would."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_fit_resumes_after_its_last_finished_epoch_and_ends_as_an_uninterrupted_one(tmp_path):
    transform = write_transform_dir(tmp_path / "noise", noise(), NUM_ITEMS)
    # No dropout and the full softmax: training draws no random numbers, so the CPU kernels give
    # bitwise the same run. On noise the best epoch comes early, so the resumed epochs depend on the
    # restored best weights, miss counter and cut learning rate, not only on the model and optimizer.
    config = experiment("gru4rec", epochs=8, patience=3, learning_rate=0.02, lr_decay_patience=1,
                        lr_decay_factor=0.5, batch_by="sequences", batch_size=256)
    model, valid, uninterrupted = train_model(config, transform)
    assert uninterrupted.best_epoch < 4 <= uninterrupted.epochs_run
    assert uninterrupted.history[3]["learning_rate"] < 0.02

    checkpoint = training.EpochCheckpoint(str(tmp_path / "resume"), key="config-1")
    with pytest.raises(training.TrainingInterrupted) as interrupted:
        train_model(config, transform, checkpoint=checkpoint, callbacks=[InterruptAt(4)])
    assert str(interrupted.value) == "interrupted at epoch 4 of 8; run the same command again to resume from epoch 4"
    assert checkpoint.load()["epoch"] == 3
    assert training.EpochCheckpoint(checkpoint.directory, key="config-2").load() is None  # never another config's

    resumed_model, _, resumed = train_model(config, transform, checkpoint=checkpoint)
    assert without_timings(resumed) == without_timings(uninterrupted)  # losses, metrics, learning rates: bitwise
    assert (resumed.best_epoch, resumed.epochs_run, resumed.stopped_early) == (
        uninterrupted.best_epoch, uninterrupted.epochs_run, uninterrupted.stopped_early)
    assert evaluate(resumed_model, valid) == evaluate(model, valid)  # both hold the best epoch's weights
    assert resumed.train_seconds > sum(row["seconds"] for row in resumed.history[:3])  # counts the first fit

    # A checkpoint of a finished training (interrupted while the outputs were written) trains no more.
    finished_model, _, finished = train_model(config, transform, checkpoint=checkpoint,
                                              callbacks=[InterruptAt(checkpoint.load()["epoch"] + 1)])
    assert without_timings(finished) == without_timings(uninterrupted)
    assert evaluate(finished_model, valid) == evaluate(model, valid)


def test_a_fit_with_dropout_and_sampled_negatives_resumes_reproducibly(tmp_path):
    """Their random streams cannot be saved: a resumed fit reseeds from (seed, epoch), so resuming the
    same checkpoint twice gives the same run (not the uninterrupted run's masks and negatives)."""
    transform = write_transform_dir(tmp_path / "noise", noise(), NUM_ITEMS)
    config = experiment("gru4rec", loss="sampled_softmax", dropout_prob=0.3, epochs=5, patience=5)
    checkpoint = training.EpochCheckpoint(str(tmp_path / "resume"), key="config-1")
    with pytest.raises(training.TrainingInterrupted):
        train_model(config, transform, checkpoint=checkpoint, callbacks=[InterruptAt(4)])
    shutil.copytree(checkpoint.directory, tmp_path / "copy")
    _, _, first = train_model(config, transform, checkpoint=checkpoint)
    _, _, second = train_model(config, transform, checkpoint=training.EpochCheckpoint(str(tmp_path / "copy"),
                                                                                      key="config-1"))
    assert [row["epoch"] for row in first.history] == [1, 2, 3, 4, 5]
    assert without_timings(first) == without_timings(second)


def test_without_a_checkpoint_the_interruption_line_offers_no_resume(cycle_dir):
    config = experiment("gru4rec", epochs=3)
    with pytest.raises(training.TrainingInterrupted) as interrupted:
        train_model(config, cycle_dir, callbacks=[InterruptAt(2)])
    assert str(interrupted.value) == "interrupted at epoch 2 of 3"
    assert isinstance(interrupted.value, KeyboardInterrupt)  # what entry points catch


def test_l2_weight_decay_is_added_to_the_gradient_like_torch_adam():
    # First Adam step moves each weight by lr * g / (|g| + eps) ~= lr * sign(g).
    # With L2 0.1 the gradient is g + 0.1 w = [0.5 + 0.1, 0 - 0.2] = [0.6, -0.2]: both weights
    # move by lr, the second only because of the decay (plain Adam leaves it; AdamW would move
    # it by lr * 0.1 * 2).
    weights = tf.Variable([1.0, -2.0])
    optimizer = training.make_optimizer(TrainConfig(learning_rate=0.01, weight_decay=0.1))
    optimizer.apply_gradients([(tf.constant([0.5, 0.0]), weights)])
    np.testing.assert_allclose(weights.numpy(), [1.0 - 0.01, -2.0 + 0.01], rtol=1e-5)
    plain = tf.Variable([1.0, -2.0])
    plain_adam = training.make_optimizer(TrainConfig(learning_rate=0.01))
    plain_adam.apply_gradients([(tf.constant([0.5, 0.0]), plain)])
    np.testing.assert_allclose(plain.numpy(), [1.0 - 0.01, -2.0], rtol=1e-5)


def test_run_trainer_writes_artifacts_and_the_reloaded_model_scores_the_same(cycle_dir, tmp_path):
    root, metadata = cycle_dir
    config = experiment("sasrec", epochs=3, eval_batch_size=16)
    out = tmp_path / "trainer"
    result = run_trainer(config, root, str(out), verbose=0)
    assert ExperimentConfig.from_json_file(str(out / CONFIG_FILE)) == config
    assert (out / (WEIGHTS + ".index")).exists()
    assert (out / CURVE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    history = json.loads((out / HISTORY).read_text())
    prefixes = sum(len(s[:-2]) - 1 for s in cycles().values())  # every user has >= 4 items
    assert history["train_targets"] == prefixes
    assert history["best_epoch"] == result.best_epoch
    assert len(history["history"]) == result.epochs_run
    assert history["train_seconds"] > 0
    model, loaded_config = load_trained_model(str(out), root)
    assert loaded_config == config
    valid = reader.evaluation_dataset(root, metadata, "valid", max_seq_len=10, batch_size=16)
    assert evaluate(model, valid) == {**result.best_metrics, "num_users": len(cycles())}
    again, _ = load_trained_model(str(out), root)
    batch = next(iter(valid))[reader.schema.ITEM_IDS]
    np.testing.assert_array_equal(raw_scores(model, batch).numpy(), raw_scores(again, batch).numpy())


def test_all_positions_off_trains_a_causal_model_on_recbole_prefixes(cycle_dir, tmp_path):
    root, _ = cycle_dir
    prefixes = sum(len(s[:-2]) - 1 for s in cycles().values())
    batches = {}
    for all_positions in (True, False):
        config = experiment("sasrec", epochs=1, batch_size=16, batch_by="sequences", all_positions=all_positions)
        run_trainer(config, root, str(tmp_path / str(all_positions)), verbose=0)
        history = json.loads((tmp_path / str(all_positions) / HISTORY).read_text())
        assert history["train_targets"] == prefixes
        batches[all_positions] = history["train_batches"]
    assert batches[True] == -(-len(cycles()) // 16)  # one window per user (all <= 10 items)
    assert batches[False] == -(-prefixes // 16)  # one example per target


def test_pop_takes_no_gradient_step_and_reloads(cycle_dir, tmp_path):
    root, metadata = cycle_dir
    result = run_trainer(experiment("pop"), root, str(tmp_path / "pop"), verbose=0)
    assert result.epochs_run == 1 and result.history[0]["loss"] is None
    model, _ = load_trained_model(str(tmp_path / "pop"), root)
    # Row 0 is padding (pushed far down); every real item scores log1p(its training count).
    np.testing.assert_allclose(model.candidate_embeddings().numpy()[1:, 0],
                               np.log1p(np.asarray(metadata.item_counts[1:], np.float64)), rtol=1e-6)


def test_training_curve_is_a_png_of_both_panels():
    history = [
        {"epoch": 1, "loss": 2.0, "val_ndcg@10": 0.1},
        {"epoch": 2, "loss": 1.5, "val_ndcg@10": 0.2},
    ]
    png = training.training_curve_png(history)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 400)  # figsize (10, 4) at 100 dpi
