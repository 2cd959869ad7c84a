"""The ExampleGen stage: read raw logs once, validate every row, write Interaction TSV shards.

Output (``<root>/ExampleGen/``): ``interactions-SSSSS-of-NNNNN.tsv`` (one
``Interaction.to_tsv()`` line each) and ``stats.json`` (rows read, interactions,
malformed rows counted by reason with the first ``file:line`` examples).
File-level checks (missing, empty, a header that does not fit) run on the driver
before the pipeline, so they fail at once with the file named; row-level
problems are counted inside the Beam pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import artifacts
from tfseq.data import formats
from tfseq.data.formats import DataError, Interaction, Malformed
from tfseq.data.synthetic import SyntheticConfig, user_interactions

OUTPUT_PREFIX = "interactions"
STATS = "stats.json"
MALFORMED = "malformed"
EXAMPLES_PER_REASON = 5


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
    """ExampleGen flags (field names are the CLI flags)."""

    input: str = ""
    input_format: str = "synthetic"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    strict: bool = False
    num_shards: int = 4
    synthetic_users: int = 3000
    synthetic_items: int = 1000
    synthetic_interactions: int = 60000
    synthetic_concentration: float = 0.3
    synthetic_order: int = 1
    seed: int = 42

    def synthetic(self) -> SyntheticConfig:
        return SyntheticConfig(
            num_users=self.synthetic_users,
            num_items=self.synthetic_items,
            num_interactions=self.synthetic_interactions,
            concentration=self.synthetic_concentration,
            order=self.synthetic_order,
            seed=self.seed,
        )


def match_inputs(pattern: str) -> list[str]:
    """Files of ``pattern`` (a file, a directory or a glob), sorted; DataError when none."""
    if not pattern:
        raise DataError("--input is required for this --input_format")
    is_dir = pattern.endswith("/") or ("://" not in pattern and os.path.isdir(pattern))
    query = FileSystems.join(pattern, "*") if is_dir else pattern
    try:
        files = sorted(m.path for m in FileSystems.match([query])[0].metadata_list)
    except Exception:  # noqa: BLE001  (Beam raises BeamIOError when nothing matches)
        files = []
    if "://" not in pattern:
        files = [f for f in files if not os.path.isdir(f)]
    if not files:
        raise DataError(f"{pattern}: no such file")
    return files


def _lines(path: str) -> Iterator[str]:
    with FileSystems.open(path) as f:
        for raw in f:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                yield "\ufffd"  # counted as a malformed row by the parser


def check_file(config: ExampleGenConfig, path: str, source: int) -> None:
    """Driver-side check of one file: non-empty and a first line that fits the format."""
    if config.input_format == "parquet":
        with FileSystems.open(path) as f:
            head = f.read(4)
        if not head:
            raise DataError(f"{path}: file is empty")
        if head != b"PAR1":
            raise DataError(f"{path}:1: not a parquet file (no PAR1 magic)")
        return
    fmt = _format(config)
    lines = _lines(path)
    first = next(lines, None)
    if first is None or (not first.strip() and next(lines, None) is None):
        raise DataError(f"{path}: file is empty")
    if fmt.has_header:
        fmt.line_parser(path, source, first)  # raises DataError for a header that does not fit


def _format(config: ExampleGenConfig) -> formats.Format:
    return formats.text_format(
        config.input_format, config.user_col, config.item_col, config.time_col, config.rating_col
    )


class ReadRecords(beam.DoFn):
    """(source index, path) -> Interactions, and Malformed rows on the ``malformed`` output."""

    def __init__(self, config: ExampleGenConfig):
        self.config = config

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        source, path = element
        if self.config.input_format == "parquet":
            with FileSystems.open(path) as f:
                data = f.read()
            c = self.config
            records = formats.parquet_records(
                path, source, data, c.user_col, c.item_col, c.time_col, c.rating_col
            )
        else:
            records = formats.parse_lines(_format(self.config), path, source, _lines(path))
        for record in records:
            if isinstance(record, Malformed):
                yield beam.pvalue.TaggedOutput(MALFORMED, record)
            else:
                yield record


class GenerateSynthetic(beam.PTransform):
    """The synthetic log, one user per element, generated wherever the runner puts it."""

    def __init__(self, config: SyntheticConfig):
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Users" >> beam.Create(range(self.config.num_users))
            | "Reshuffle" >> beam.Reshuffle()
            | "Generate" >> beam.FlatMap(lambda u, c: user_interactions(c, u), self.config)
        )


class SummarizeMalformed(beam.PTransform):
    """Malformed rows -> one ``{reason: {"count": n, "examples": [file:line ...]}}`` dict."""

    def expand(self, malformed: beam.PCollection) -> beam.PCollection:
        by_reason = malformed | "ByReason" >> beam.Map(lambda m: (m.reason, (m.path, m.line, m.detail)))
        counts = by_reason | "Count" >> beam.combiners.Count.PerKey()
        examples = by_reason | "FirstPlaces" >> beam.combiners.Top.SmallestPerKey(EXAMPLES_PER_REASON)
        return (
            {"count": counts, "examples": examples}
            | "Join" >> beam.CoGroupByKey()
            | "Format" >> beam.Map(_format_reason)
            | "ToDict" >> beam.combiners.ToDict()
        )


def _format_reason(kv: tuple[str, dict[str, list]]) -> tuple[str, dict[str, Any]]:
    reason, grouped = kv
    count = sum(grouped["count"])
    places = sorted(p for group in grouped["examples"] for p in group)[:EXAMPLES_PER_REASON]
    return reason, {
        "count": count,
        "examples": [f"{path}:{line}" + (f" ({detail})" if detail else "") for path, line, detail in places],
    }


def run_example_gen(config: ExampleGenConfig, output_dir: str, options: PipelineOptions) -> dict[str, Any]:
    """Runs the stage into ``output_dir`` and returns its stats."""
    known = formats.ALL_FORMATS
    if config.input_format not in known:
        raise DataError(f"unknown input format {config.input_format!r}; known formats: {', '.join(known)}")
    if config.input and config.input_format == "synthetic":
        raise DataError(f"--input {config.input} given with --input_format synthetic; name its format")
    if config.input_format == "tfds":
        return _run_tfds(config, output_dir, options)
    files: list[str] = []
    if config.input_format != "synthetic":
        files = match_inputs(config.input)
        for source, path in enumerate(files):
            check_file(config, path, source)
    prefix = artifacts.join(output_dir, OUTPUT_PREFIX)
    with beam.Pipeline(options=options) as p:
        if config.input_format == "synthetic":
            interactions = p | "Synthetic" >> GenerateSynthetic(config.synthetic())
            malformed = p | "NoMalformed" >> beam.Create([])
        else:
            read = (
                p
                | "Files" >> beam.Create(list(enumerate(files)))
                | "Read" >> beam.ParDo(ReadRecords(config)).with_outputs(MALFORMED, main="rows")
            )
            interactions, malformed = read.rows, read[MALFORMED]
        _ = (
            interactions
            | "ToTsv" >> beam.Map(Interaction.to_tsv)
            | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".tsv", num_shards=config.num_shards)
        )
        summary = {
            "interactions": interactions | "CountRows" >> beam.combiners.Count.Globally(),
            "malformed": malformed | "Summarize" >> SummarizeMalformed(),
        }
        _ = (
            summary
            | "Stats" >> _CombineStats()
            | "WriteStats" >> beam.io.WriteToText(
                artifacts.join(output_dir, STATS), shard_name_template="", num_shards=1
            )
        )
    stats = json.loads(artifacts.read_text(artifacts.join(output_dir, STATS)))
    stats["input"] = files or ["synthetic"]
    stats["input_format"] = config.input_format
    artifacts.atomic_write_text(artifacts.join(output_dir, STATS), json.dumps(stats, indent=1))
    _check_outcome(config, stats)
    return stats


class _CombineStats(beam.PTransform):
    """{"interactions": count, "malformed": dict} singletons -> one JSON string."""

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        interactions = beam.pvalue.AsSingleton(parts["interactions"])
        malformed = beam.pvalue.AsSingleton(parts["malformed"])
        return (
            parts["interactions"].pipeline
            | "One" >> beam.Create([None])
            | "ToJson" >> beam.Map(
                lambda _, n, bad: json.dumps(
                    {
                        "interactions": n,
                        "malformed_rows": sum(v["count"] for v in bad.values()),
                        "malformed": bad,
                    },
                    sort_keys=True,
                ),
                interactions,
                malformed,
            )
        )


def _check_outcome(config: ExampleGenConfig, stats: dict[str, Any]) -> None:
    bad = stats["malformed"]
    if config.strict and bad:
        reason, info = min(bad.items(), key=lambda kv: kv[1]["examples"][0])
        raise DataError(
            f"{info['examples'][0]}: malformed row ({reason}); --strict makes any malformed row an "
            f"error ({stats['malformed_rows']} in all)"
        )
    if stats["interactions"] == 0:
        first = ""
        if bad:
            reason, info = next(iter(sorted(bad.items())))
            first = f"; first problem: {info['examples'][0]} ({reason})"
        raise DataError(
            f"{', '.join(stats['input'])}: no valid {config.input_format} interactions{first}"
        )


def _run_tfds(config: ExampleGenConfig, output_dir: str, options: PipelineOptions) -> dict[str, Any]:
    """tensorflow-datasets input: materialised on the driver (it downloads), then written by Beam."""
    name = config.input or "movielens/100k-ratings"
    rows = [r.to_tsv() for r in formats.tfds_interactions(name)]
    prefix = artifacts.join(output_dir, OUTPUT_PREFIX)
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "Rows" >> beam.Create(rows)
            | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".tsv", num_shards=config.num_shards)
        )
    stats = {"interactions": len(rows), "malformed_rows": 0, "malformed": {}, "input": [f"tfds:{name}"],
             "input_format": "tfds"}
    artifacts.atomic_write_text(artifacts.join(output_dir, STATS), json.dumps(stats, indent=1))
    _check_outcome(config, stats)
    return stats
