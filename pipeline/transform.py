"""The Transform stage: its config, the driver loop, and the summary files it writes.

Input: ExampleGen's ``interactions-*.tsv`` shards (one ``Interaction.to_tsv()``
line each) and its ``stats.json``. Output (``output_dir``):

* ``train|valid|test/part-SSSSS-of-NNNNN.tfrecord[.gz]``: SequenceExamples
  (tfseq.data.schema), leave-one-out, or with ``--split user`` Spotlight's
  user split (:class:`pipeline.ptransforms.SplitSpec`);
* ``item_vocab.txt`` (by count descending, ties by raw ID; line 0 padding) and
  ``user_vocab.txt`` (by raw ID) in the tfseq.data.vocab format;
* ``metadata.json`` (DatasetMetadata) and ``stats.json``: RecBole's dataset
  figures, rows dropped by reason (ExampleGen's malformed rows included),
  short users, records per split, k-core rounds.

Order of the filters, as in RecBole's ``_data_filtering``: duplicates
(``--dedupe keep-first``), then the rating threshold, then iterative k-core.
Everything row-level runs in Beam (building blocks in :mod:`pipeline.ptransforms`).
Beam cannot loop, so k-core runs one pipeline per round from the driver; each
round writes its users to ``output_dir/_work/round-NNN/`` (``--num_shards``
JSON-lines files) with a one-line report (rows removed, thresholds still broken,
users left), and the loop stops at the first
round after which nothing breaks a threshold (the next round would remove
nothing). The final pipeline writes the dataset and a one-element summary;
the driver turns that into metadata.json and stats.json and deletes ``_work``.
Each pipeline ends in that one report or summary, which gathers every branch
(see :mod:`pipeline.ptransforms`), so the stage runs the same on every runner,
Beam's DaskRunner included, and writes the same bytes.

Deviation from RecBole's printout: its user and item numbers (and so its
sparsity) count the padding ID; ours are real users and items.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import artifacts
from pipeline import ptransforms as T
from pipeline.configs import DEDUPE_MODES, TransformConfig  # noqa: F401  (defined without Beam, for the flags)
from tfseq.config import to_dict
from tfseq.data import schema, vocab
from tfseq.data.formats import DataError
from tfseq.data.vocab import DatasetMetadata, SplitInfo

INPUT_PATTERN = "interactions-*.tsv"
EXAMPLE_GEN_STATS = artifacts.STATS
WORK_DIR = "_work"


# ----------------------------------------------------------------------------- pipelines


def _run(options: PipelineOptions, build: Callable[[beam.Pipeline], None]) -> None:
    with beam.Pipeline(options=options) as p:
        build(p)


def _read_users(p: beam.Pipeline, config: TransformConfig, source: str, first: bool) -> tuple:
    """``(users, dropped)`` from ExampleGen's TSV (first pipeline) or a k-core round's JSON lines."""
    if first:
        chunks = p | "Read" >> T.ReadInteractions(source)
        return chunks | "Group" >> T.GroupUserEvents(config.dedupe, config.min_rating)
    users = p | "Read" >> T.ReadUserSequences(source)
    return users, p | "NothingDropped" >> beam.Create([])


def _kcore_round(config: TransformConfig, source: str, first: bool, prefix: str,
                 report: str) -> Callable[[beam.Pipeline], None]:
    def build(p: beam.Pipeline) -> None:
        users, dropped = _read_users(p, config, source, first)
        kept, removed, violations = users | "KCore" >> T.KCoreRound(
            config.min_user_inter, config.min_item_inter
        )
        written = kept | "Write" >> T.WriteUserSequences(prefix, config.num_shards)
        drops = (dropped, removed) | "Dropped" >> T.SumDropped()
        _ = (
            {T.DROPPED: drops, T.VIOLATIONS: violations, T.WRITTEN: written}
            | "Gather" >> T.Gather()
            | "Report" >> beam.Map(T.round_report)
            | "WriteReport" >> T.WriteJson(report)
        )

    return build


def _kcore(config: TransformConfig, pattern: str, work: str, options: PipelineOptions,
           dropped: dict[str, int]) -> tuple[str, int]:
    """Runs k-core rounds until no threshold is broken; returns (final users pattern, rounds)."""
    source, rounds = pattern, 0
    while True:
        rounds += 1
        round_dir = artifacts.join(work, f"round-{rounds:03d}")
        prefix, report_path = artifacts.join(round_dir, "users"), artifacts.join(round_dir, "report.json")
        _run(options, _kcore_round(config, source, rounds == 1, prefix, report_path))
        report = json.loads(artifacts.read_text(report_path))
        for reason, rows in report["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + rows
        source = f"{prefix}*.jsonl"
        if report["users"] == 0 or report["violations"] == 0:
            return source, rounds


def _build(config: TransformConfig, source: str, first: bool, output_dir: str,
           summary_path: str) -> Callable[[beam.Pipeline], None]:
    def build(p: beam.Pipeline) -> None:
        users, dropped = _read_users(p, config, source, first)
        drops = (dropped,) | "Dropped" >> T.SumDropped()
        _ = (
            (users, drops)
            | "Build" >> T.BuildDataset(output_dir, config.num_shards, config.compression, config.split_spec,
                                        config.event_columns)
            | "WriteSummary" >> T.WriteJson(summary_path)
        )

    return build


# ----------------------------------------------------------------------------- the stage


def run_transform(
    config: TransformConfig, example_gen_dir: str, output_dir: str, options: PipelineOptions
) -> dict[str, Any]:
    """Runs the stage into ``output_dir`` and returns its stats (the content of stats.json).

    Args:
      config: the stage's flags.
      example_gen_dir: ExampleGen's output (``interactions-*.tsv``, ``stats.json``).
      output_dir: an existing or creatable directory (the driver's temporary stage dir).
      options: Beam options; every pipeline of the stage runs with them.

    Raises:
      DataError: no input shards, unreadable rows (file:line), or no interactions left
        after filtering.
    """
    pattern = artifacts.join(example_gen_dir, INPUT_PATTERN)
    if not FileSystems.match([pattern])[0].metadata_list:
        raise DataError(f"{example_gen_dir}: no ExampleGen output ({INPUT_PATTERN})")
    item_table = read_item_table(config) if config.item_features else None  # bad file: fail before Beam
    work = artifacts.join(output_dir, WORK_DIR)
    dropped: dict[str, int] = {}
    rounds = 0
    try:
        source, first = pattern, True
        if config.kcore:
            source, rounds = _kcore(config, pattern, work, options, dropped)
            first = False
        summary_path = artifacts.join(work, "summary.json")
        _run(options, _build(config, source, first, output_dir, summary_path))
        summary = json.loads(artifacts.read_text(summary_path))
    finally:
        if FileSystems.exists(work):
            FileSystems.delete([work])
    for reason, rows in summary["dropped"].items():
        dropped[reason] = dropped.get(reason, 0) + rows
    if summary["users"] == 0:
        raise DataError(f"{example_gen_dir}: no interactions left after filtering (dropped: {dropped})")
    metadata = dataset_metadata(config, summary)
    artifacts.atomic_write_text(artifacts.join(output_dir, vocab.METADATA), metadata.to_json())
    stats = dataset_stats(config, summary, dropped, read_malformed(example_gen_dir), rounds)
    if item_table is not None:
        stats["item_features"] = write_item_features(item_table, output_dir, config)
    artifacts.atomic_write_text(artifacts.join(output_dir, artifacts.STATS), json.dumps(stats, indent=1))
    return stats


def read_item_table(config: TransformConfig) -> Any:
    """The ``--item_features`` file as read (errors name the file and line)."""
    from tfseq.data import item_features

    return item_features.read_item_table(
        config.item_features,
        fields=config.item_feature_fields or None,
        columns=config.item_feature_cols or None,
        item_column=config.item_feature_id_col,
    )


def write_item_features(table: Any, output_dir: str, config: TransformConfig = TransformConfig()) -> dict[str, Any]:
    """Aligns the item table with the stage's item vocabulary, writes ``item_features/``; returns its counts.

    Prints the coverage and any items cut to ``--max_attributes_per_item`` (also in stats.json).
    """
    from tfseq.data import item_features

    raw_ids = vocab.read_vocabulary(artifacts.join(output_dir, vocab.ITEM_VOCAB))
    features, stats = item_features.build_item_features(
        table, raw_ids, max_values=config.max_attributes_per_item, min_coverage=config.min_feature_coverage)
    for line in item_features.summary_lines(stats):
        print(f"[Transform] {line}", flush=True)
    folder = artifacts.join(output_dir, artifacts.ITEM_FEATURES)
    if not FileSystems.exists(folder):
        FileSystems.mkdirs(folder)  # the atomic writer writes into an existing folder
    for name, data in features.files().items():
        artifacts.atomic_write_bytes(artifacts.join(folder, name), data)
    return {"file": table.path, **stats}


def dataset_metadata(config: TransformConfig, summary: dict[str, Any]) -> DatasetMetadata:
    """metadata.json from the build pipeline's summary; split patterns are relative to the stage dir."""
    compression, _, suffix = T.COMPRESSIONS[config.compression]
    return DatasetMetadata(
        num_items=summary["num_items"],
        num_users=summary["users"],
        compression=compression,
        splits={s: SplitInfo(f"{s}/part-*{suffix}", summary["records"][s]) for s in schema.SPLITS},
        item_counts=tuple(summary["train_item_counts"]),
        max_length=summary["max_length"],
    )


def dataset_stats(
    config: TransformConfig, summary: dict[str, Any], dropped: dict[str, int],
    malformed: dict[str, int], rounds: int,
) -> dict[str, Any]:
    """stats.json: RecBole's dataset figures (without padding), drops by reason, split sizes."""
    users, items, inter = summary["users"], summary["num_items"] - 1, summary["interactions"]
    return {
        "users": users,
        "items": items,
        "interactions": inter,
        "avg_actions_per_user": inter / users,
        "avg_actions_per_item": inter / items,
        "sparsity": 1.0 - inter / (users * items),
        "max_length": summary["max_length"],
        "users_short": summary["users_short"],
        "records": {split: summary["records"][split] for split in schema.SPLITS},
        "dropped": {"malformed": sum(malformed.values()), **{r: dropped.get(r, 0) for r in T.REASONS}},
        "malformed": malformed,
        "kcore_rounds": rounds,
        "config": to_dict(config),
    }


def read_malformed(example_gen_dir: str) -> dict[str, int]:
    """ExampleGen's malformed rows by reason; {} when it wrote no stats.

    Accepts ``malformed: {reason: {"count": n, ...}}`` or ``{reason: n}``, and
    falls back to a bare ``malformed_rows`` total (reason ``"unknown"``).
    """
    path = artifacts.join(example_gen_dir, EXAMPLE_GEN_STATS)
    if not FileSystems.exists(path):
        return {}
    stats = json.loads(artifacts.read_text(path))
    by_reason = stats.get("malformed", {})
    if isinstance(by_reason, dict) and by_reason:
        return {
            reason: int(value["count"] if isinstance(value, dict) else value)
            for reason, value in sorted(by_reason.items())
        }
    total = int(stats.get("malformed_rows", 0) or 0)
    return {"unknown": total} if total else {}
