"""The Python API for notebooks: ``tfseq.run(...)`` trains a run, ``tfseq.load(run_dir)`` serves it in process.

``run`` takes the same settings as ``python -m pipeline.run`` (keyword
arguments named as the flags; RecBole's names too) and builds the same
pipeline through the same flag layer, so a notebook run and a shell run with
the same settings share their stages and their run folder::

    import tfseq
    result = tfseq.run(input="ml-100k.inter", input_format="recbole", model="sasrec",
                       output_dir="runs/ml-100k", epochs=20, embedding_size=64)
    result.metrics["test"]["ndcg@10"], result.run_dir, result.export_path
    recommender = tfseq.load(result.run_dir)
    recommender.recommend([["242", "302"]], k=10).item_ids

``load`` rebuilds the run's model and ranks with the SavedModel's own code
(``serving.export.RecommenderModule``: raw IDs in, unknown ones skipped, the
run's history masking), so it answers exactly as the exported model does.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

from pipeline.artifacts import DEFAULT_ROOT
from tfseq.config import ConfigError


def run(
    input: str = "",
    *,
    model: str = "sasrec",
    loss: str = "softmax",
    output_dir: str = DEFAULT_ROOT,
    stop_after: str = "Pusher",
    force: bool = False,
    beam_options: Any = None,
    progress: bool | int = True,
    **settings: Any,
):
    """Runs the pipeline and returns its :class:`pipeline.pipeline.PipelineResult`.

    Args:
      input: the interaction log (a file, folder or glob); "" = the generated default data.
      model, loss: registry keys (RecBole's names accepted).
      output_dir: the pipeline root; runs of other models land beside this one.
      stop_after: the last stage (default Pusher: a SavedModel under ``<output_dir>/serving``).
      force: rebuild every stage.
      beam_options: Beam ``PipelineOptions`` or a list of Beam flags.
      progress: training progress: True (default) a line rewritten in place in a terminal,
        plain lines elsewhere (notebooks, logs); False none; 1 or 2 to choose the first or second.
      **settings: any other flag of ``python -m pipeline.run`` (``input_format``,
        ``epochs``, ``embedding_size``, ``min_user_inter``, ``top_k``, ...).

    Returns:
      The result: ``.metrics`` (valid/test), ``.run_dir``, ``.export_path``, ``.summary()``.
    """
    from pipeline import cli
    from pipeline.pipeline import create_pipeline

    values = {"model": model, "loss": loss, **settings}
    if input:
        values["input"] = input
    configs = cli.build_configs(values)
    if isinstance(beam_options, (list, tuple)):
        cli.check_beam_args(list(beam_options), [])  # a misspelt runner fails here, not inside ExampleGen
        beam_options = cli.runner_aliases(beam_options)
    if progress is True:
        progress = 1 if sys.stdout.isatty() else 2
    pipeline = create_pipeline(configs, root=output_dir, beam_options=beam_options, progress=int(progress))
    return pipeline.run(stop_after=stop_after, force=force)


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-K answers: ``item_ids[b][k]`` raw IDs (``""`` where fewer than K are eligible), ``scores [B, K]``,
    ``fallback [B]`` (the history held no known item: the popularity query's answer) and, for models
    that read users, ``unknown_user [B]`` (a user ID was given that training did not see)."""

    item_ids: list[list[str]]
    scores: np.ndarray
    fallback: np.ndarray
    unknown_user: np.ndarray | None = None


class Recommender:
    """A trained run, answering in process exactly as its SavedModel does.

    Args:
      run_dir: ``<root>/runs/<run>`` (or its Trainer folder).
    """

    def __init__(self, run_dir: str) -> None:
        from pipeline import artifacts
        from tfseq.data import schema
        from tfseq.data.vocab import DatasetMetadata, read_vocabulary
        from tfseq.experiment import load_trained_model

        run_dir = run_dir.rstrip("/")
        if os.path.basename(run_dir) == "Trainer":
            run_dir = os.path.dirname(run_dir)
        trainer_dir = artifacts.join(run_dir, "Trainer")
        if not os.path.isdir(trainer_dir):
            raise ConfigError(f"{run_dir}: not a run folder (no Trainer/); runs are <root>/runs/<run>")
        transform_dir = artifacts.stage_dir(artifacts.root_of_run(run_dir), "Transform")
        self.run_dir = run_dir
        self.model, self.config = load_trained_model(trainer_dir, transform_dir)
        metadata = DatasetMetadata.load(transform_dir)
        self.item_counts = np.asarray(metadata.item_counts, np.float64)
        raw_ids = read_vocabulary(artifacts.join(transform_dir, artifacts.ITEM_VOCAB))
        self._scratch = tempfile.TemporaryDirectory(prefix="tfseq-recommender-")
        self._asset = os.path.join(self._scratch.name, "item_vocab.txt")
        with open(self._asset, "w", encoding="utf-8") as f:
            f.write("".join(raw + "\n" for raw in raw_ids[1:]))  # as the export's asset
        self._user_asset: str | None = None
        if schema.USER_IDS in self.model.side_inputs:  # the export's user index: the users with training records
            from serving.export import user_index_text
            from tfseq.data.reader import training_user_index

            self._user_asset = os.path.join(self._scratch.name, "user_index.tsv")
            with open(self._user_asset, "w", encoding="utf-8") as f:
                f.write(user_index_text(training_user_index(transform_dir, metadata), self.model.user_vocab_size))
        self._modules: dict[int, Any] = {}

    @property
    def exclude_history(self) -> bool:
        return self.config.train.exclude_history

    @property
    def input_names(self) -> tuple[str, ...]:
        """The SavedModel inputs besides ``history`` (one per side input of the model, e.g. ``user_id``)."""
        from serving.signature import side_input_name

        return tuple(side_input_name(key) for key in self.model.side_inputs)

    def _module(self, k: int) -> Any:
        from serving.export import RecommenderModule

        if not 1 <= k <= self.model.num_items - 1:
            raise ValueError(f"k must be in 1..{self.model.num_items - 1} (the number of items), got {k}")
        if k not in self._modules:
            self._modules[k] = RecommenderModule(
                self.model, vocab_asset=self._asset, popularity=self.item_counts, top_k=k,
                exclude_history=self.exclude_history, max_seq_len=self.config.train.max_seq_len,
                user_asset=self._user_asset,
            )
        return self._modules[k]

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        users: Sequence[str] | None = None,
        **inputs: Sequence[Any],
    ) -> Recommendations:
        """The top ``k`` items after each history of raw item IDs (oldest first).

        ``histories`` is a list of lists: ``recommend([["i1", "i2"]])`` answers one
        history of two items. A bare string (``recommend("i1 i2")``), or a string
        in place of a history, is refused with a ValueError: read as a sequence
        it would be its characters, and whether a space separates IDs is the
        caller's to say (``"i1 i2".split()``).

        ``users``: one raw user ID per history (``""`` = none), the ``user_id``
        input of a model that reads users; an unknown or missing user gets the
        model's sequence-only answer. ``inputs``: the model's other inputs by name
        (:attr:`input_names`), one entry per history; a per-event one (e.g.
        ``hour``) is a list of ints aligned with the history. A left-out input is
        unknown, as in the SavedModel.
        """
        import tensorflow as tf

        from serving.signature import USER_ID

        if isinstance(histories, (str, bytes)) or any(isinstance(h, (str, bytes)) for h in histories):
            raise ValueError('histories must be a list of lists of item IDs, e.g. [["i13", "i47"]]; '
                             'a string is not a history (split "i13 i47" into its IDs)')
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"k must be an integer, got {type(k).__name__}")
        for name, values in {**inputs, **({"users": users} if users is not None else {})}.items():
            if isinstance(values, (str, bytes)):
                raise ValueError(f"{name} must be a list with one entry per history, e.g. [\"u1\", \"u2\"]; "
                                 "a string is not such a list")
        width = max((len(h) for h in histories), default=0)
        padded = [[str(i) for i in h] + [""] * (width - len(h)) for h in histories]
        history = tf.constant(padded, tf.string, shape=[len(padded), width])
        if users is not None:
            inputs = {USER_ID: users, **inputs}
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ValueError(f"model {self.config.model} has no input {unknown[0]!r}; its inputs besides the "
                             f"history: {', '.join(self.input_names) or 'none'}")
        given: dict[str, Any] = {}
        for name, values in inputs.items():
            if len(values) != len(histories):
                raise ValueError(f"{len(values)} {name} values for {len(histories)} histories; give one per history")
            if name == USER_ID:
                given[name] = tf.constant([str(u) for u in values], tf.string)
            else:
                rows = [[int(v) for v in row] + [-1] * (width - len(row)) for row in values]
                if any(len(row) != width for row in rows):
                    raise ValueError(f"{name}: give one value per history entry")
                given[name] = tf.constant(rows, tf.int64, shape=[len(rows), width])
        answer = self._module(k).recommend(history, **given)
        item_ids = [[i.decode("utf-8") for i in row] for row in answer["item_ids"].numpy()]
        unknown_user = answer.get("unknown_user")
        return Recommendations(
            item_ids=item_ids, scores=answer["scores"].numpy(), fallback=answer["fallback"].numpy(),
            unknown_user=None if unknown_user is None else unknown_user.numpy(),
        )


def load(run_dir: str) -> Recommender:
    """The trained run ``run_dir`` (``<root>/runs/<run>``) as an in-process :class:`Recommender`."""
    return Recommender(run_dir)
