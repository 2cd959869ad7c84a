"""The ExampleGen stage: read raw logs once, validate every row, write Interaction TSV shards.

Output (``output_dir``):

* ``interactions-SSSSS-of-NNNNN.tsv``: one ``Interaction.to_tsv()`` line per
  valid event, in no particular order (Transform sorts by ``Interaction.sort_key``).
* ``stats.json``: ``input_format``, ``input`` (the matched files),
  ``rows_read`` (non-blank data lines; synthetic: generated events),
  ``interactions``, ``malformed_rows``, ``malformed`` (per reason: ``count`` and
  the first ``EXAMPLES_PER_REASON`` ``file:line`` places, sorted by file then
  line number) and ``files`` (per input, in source order: ``path``,
  ``rows_read``, ``interactions``, ``malformed_rows``, ``first_problem``,
  ``read_error``: why the file could not be read to its end, "" if it could). The
  pipeline itself writes it (a single-shard ``WriteToText``), so it is built
  the same way on every runner; the driver reads it back for the checks below.

Sources: files are matched with Beam's FileSystems (sorted; the index is
``Interaction.source``) and each is read whole by one ``ReadRecords`` call
through ``FileSystems.open``, then reshuffled so the writes are balanced. A
file compressed by Beam's extensions (``.gz``, ``.bz2``, ``.deflate``,
``.zst``, ``.xz``, ``.lzma``) is decompressed by ``formats.decompressed``,
which, unlike Beam's reader, checks that each stream reaches its end. The synthetic log is generated per user
(``beam.Create(range(num_users))``), never materialised on the driver.

Checks, in order:

1. On the driver, before the pipeline (fail at once, name the file): the format
   is known; the input matches files; no file is empty, binary, or starts with
   a header that does not fit; the first rows of a file (up to ``SNIFF_BYTES``)
   are not all malformed, and are not recognisably another format (a RecBole
   header or a MovieLens ratings log read as ``sequence``/``pairs``); a
   compressed file the sniff reads to its end is not cut off or corrupt; a
   parquet schema has the named columns; a tfds dataset downloads.
2. In the pipeline: every row is parsed; malformed rows are counted by reason;
   a file that cannot be read to its end (cut-off or corrupt compressed data)
   is recorded in its ``FileStats.read_error`` rather than raised, so the
   error reaches the driver the same way on every runner.
3. On the driver, after the pipeline: a file with a ``read_error`` (with or
   without ``strict``), a file where no row parsed, any malformed row under
   ``strict``, or no valid interaction at all is a ``DataError`` quoting the
   file (and first ``file:line``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
from typing import IO, Any, Iterable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import artifacts
from tfseq.config import ConfigError
from tfseq.data import formats
from tfseq.data.formats import DataError, Interaction, Malformed
from tfseq.data.synthetic import SyntheticConfig, user_interactions

OUTPUT_PREFIX = "interactions"
OUTPUT_SUFFIX = ".tsv"
STATS = artifacts.STATS  # the file name is the layout's (pipeline.artifacts)
EXAMPLES_PER_REASON = 5
SNIFF_BYTES = 1 << 16  # how much of each text file the driver reads before the pipeline
SNIFF_MIN_ROWS = 20  # all-malformed rows needed to reject a file the sniff did not read whole

ROWS = "rows"
MALFORMED = "malformed"
FILES = "files"


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
    """ExampleGen flags (field names are the CLI flags).

    Attributes:
      input: a file, a directory (its files, except names starting with ``.``
        or ``_``), or a glob; for ``tfds`` the dataset name. Empty for synthetic.
      input_format: one of ``tfseq.data.formats.ALL_FORMATS``.
      user_col, item_col, time_col, rating_col: csv/parquet column names
        (``time_col`` empty: line order is time order; ``rating_col`` empty: no rating).
      strict: any malformed row is an error (otherwise counted and skipped).
      example_gen_shards: output TSV shards.
      synthetic_*: the SyntheticConfig knobs; ``synthetic_seed`` seeds the synthetic log
        (the training seed is ``TrainConfig.seed``: no flag sets both).
    """

    input: str = ""
    input_format: str = "synthetic"
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str = ""
    strict: bool = False
    example_gen_shards: int = 4
    synthetic_users: int = 3000
    synthetic_items: int = 1000
    synthetic_interactions: int = 60000
    synthetic_concentration: float = 0.3
    synthetic_order: int = 1
    synthetic_seed: int = 42

    def __post_init__(self) -> None:
        if self.example_gen_shards < 1:
            raise ConfigError(f"--example_gen_shards must be >= 1, got {self.example_gen_shards}")

    def synthetic(self) -> SyntheticConfig:
        return SyntheticConfig(
            num_users=self.synthetic_users,
            num_items=self.synthetic_items,
            num_interactions=self.synthetic_interactions,
            concentration=self.synthetic_concentration,
            order=self.synthetic_order,
            seed=self.synthetic_seed,
        )

    def text_format(self) -> formats.Format:
        return formats.text_format(
            self.input_format, self.user_col, self.item_col, self.time_col, self.rating_col
        )


class FileStats(NamedTuple):
    """What ExampleGen found in one input (file or tfds dataset)."""

    source: int
    path: str
    rows_read: int
    interactions: int
    malformed_rows: int
    first_problem: str  # Malformed.describe() of its first malformed row, "" if none
    read_error: str = ""  # the DataError that stopped reading the file (cut-off gzip, ...), "" if none

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self._asdict().items() if k != "source"}


# ----------------------------------------------------------------------------- driver checks


def match_inputs(pattern: str) -> list[str]:
    """Files of ``pattern`` (a file, a directory or a glob), sorted; DataError when none."""
    is_dir = pattern.endswith("/") or ("://" not in pattern and os.path.isdir(pattern))
    query = FileSystems.join(pattern, "*") if is_dir else pattern
    try:
        metadata = FileSystems.match([query])[0].metadata_list
    except beam.io.filesystem.BeamIOError as e:
        raise DataError(f"{pattern}: cannot list the input files: {e}") from e
    files = sorted(m.path for m in metadata)
    if is_dir:
        files = [f for f in files if not posixpath.basename(f.rstrip("/")).startswith((".", "_"))]
    if "://" not in pattern:
        files = [f for f in files if not os.path.isdir(f)]
    if not files:
        what = "no such file or directory" if not is_dir else "directory has no input files"
        raise DataError(f"{pattern}: {what}")
    return files


def open_text(path: str) -> IO[bytes]:
    """A text input's bytes, decompressed by extension as Beam would, but checked to the end.

    Reading raises DataError naming the file when compressed data is cut off
    or corrupt (Beam's own reader would stop quietly at the cut).
    """
    compression = CompressionTypes.detect_compression_type(path)
    file = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if compression == CompressionTypes.UNCOMPRESSED:
        return file
    return formats.decompressed(file, path, compression)


def _check_text_file(config: ExampleGenConfig, path: str, source: int) -> None:
    fmt = config.text_format()
    with open_text(path) as f:  # a file shorter than the sniff is read to its end: checked whole
        head = f.read(SNIFF_BYTES + 1)
    if not head:
        raise DataError(f"{path}: file is empty")
    if b"\x00" in head:
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise DataError(f"{path}:{line}: binary data (a NUL byte), not a {fmt.name} text file")
    whole = len(head) <= SNIFF_BYTES
    pieces = head.split(b"\n")  # lines as the pipeline's readline() sees them
    lines = [piece + b"\n" for piece in pieces[:-1]]
    if whole and pieces[-1]:
        lines.append(pieces[-1])  # a last line without a newline; cut short when not whole
    formats.check_not_misread(fmt, path, lines)
    records = list(formats.parse_lines(fmt, path, source, lines))  # a bad header raises here
    if not records:
        if whole:
            what = "a header but no data rows" if fmt.has_header else "only blank lines"
            raise DataError(f"{path}: {what}")
        return
    malformed = [r for r in records if isinstance(r, Malformed)]
    if len(malformed) == len(records) and (whole or len(malformed) >= SNIFF_MIN_ROWS):
        raise DataError(
            f"{malformed[0].describe()}; not a {fmt.name} file: its first {len(malformed)} "
            f"row(s) are all malformed ({', '.join(sorted({m.reason for m in malformed}))})"
        )


def _check_parquet_file(config: ExampleGenConfig, path: str) -> None:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        if not f.read(4):
            raise DataError(f"{path}: file is empty")
        f.seek(0)
        parquet, _ = formats.parquet_columns(
            f, path, config.user_col, config.item_col, config.time_col, config.rating_col
        )
        if parquet.metadata.num_rows == 0:
            raise DataError(f"{path}: parquet file has no rows")


def check_input(config: ExampleGenConfig) -> list[str]:
    """Driver-side checks before any pipeline runs; returns the inputs to read, in source order.

    Synthetic: ``[]``. tfds: ``[dataset name]`` (downloaded here). Files: the
    matched paths, each checked (non-empty, text not binary, header fits, first
    rows parse; parquet: schema has the columns).

    Raises:
      DataError: naming the format, the input, or the file (and line).
    """
    formats.check_format_name(config.input_format)
    if config.input_format == "synthetic":
        if config.input:
            raise DataError(
                f"--input {config.input} given with --input_format synthetic; name its format"
            )
        config.synthetic()  # validates the knobs
        return []
    if not config.input:
        raise DataError(f"--input_format {config.input_format} needs --input")
    if config.input_format == "tfds":
        formats.prepare_tfds(config.input)
        return [config.input]
    files = match_inputs(config.input)
    for source, path in enumerate(files):
        if config.input_format == "parquet":
            _check_parquet_file(config, path)
        else:
            _check_text_file(config, path, source)
    return files


# ----------------------------------------------------------------------------- pipeline pieces


def read_records(
    config: ExampleGenConfig, source: int, path: str
) -> Iterator[Interaction | Malformed]:
    """Every record of one input, streamed through Beam's FileSystems (tfds: the dataset name)."""
    if config.input_format == "tfds":
        yield from formats.tfds_records(path, source)
    elif config.input_format == "parquet":
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            yield from formats.parquet_records(
                f, path, source, config.user_col, config.item_col, config.time_col,
                config.rating_col,
            )
    else:
        with open_text(path) as f:  # .gz/.bz2/...: cut-off or corrupt data raises DataError
            lines = iter(f.readline, b"")
            yield from formats.parse_lines(config.text_format(), path, source, lines)


class ReadRecords(beam.DoFn):
    """``(source, path)`` -> Interactions; ``MALFORMED``: Malformed rows; ``FILES``: a FileStats."""

    def __init__(self, config: ExampleGenConfig):
        self.config = config

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        source, path = element
        rows = interactions = malformed = 0
        last_line = -1
        first_problem = read_error = ""
        try:
            for record in read_records(self.config, source, path):
                if record.line != last_line:  # records arrive in line order; a line may hold many
                    rows += 1
                    last_line = record.line
                if isinstance(record, Malformed):
                    malformed += 1
                    first_problem = first_problem or record.describe()
                    yield beam.pvalue.TaggedOutput(MALFORMED, record)
                else:
                    interactions += 1
                    yield record
        except DataError as e:
            # Raised here, a runner would wrap it (or retry the bundle); as data, the driver's
            # check_outcome raises it as it was, on every runner.
            read_error = str(e)
        label = formats.tfds_label(path) if self.config.input_format == "tfds" else path
        yield beam.pvalue.TaggedOutput(
            FILES, FileStats(source, label, rows, interactions, malformed, first_problem, read_error)
        )


class GenerateSynthetic(beam.PTransform):
    """The synthetic log, one user per element, generated wherever the runner puts it."""

    def __init__(self, config: SyntheticConfig):
        super().__init__()
        self.config = config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Users" >> beam.Create(range(self.config.num_users))
            | "Spread" >> beam.Reshuffle()
            | "Generate" >> beam.FlatMap(lambda user, c: user_interactions(c, user), self.config)
        )


class MalformedSummaryFn(beam.CombineFn):
    """Malformed rows -> ``{reason: {"count": n, "examples": [first file:line, ...]}}``.

    Examples are the ``EXAMPLES_PER_REASON`` smallest ``(file, line)`` places,
    so the summary does not depend on how the runner splits the work.
    """

    def create_accumulator(self) -> dict[str, tuple[int, list[tuple[str, int]]]]:
        return {}

    def add_input(self, acc: dict, row: Malformed) -> dict:
        count, places = acc.get(row.reason, (0, []))
        acc[row.reason] = (count + 1, sorted([*places, (row.path, row.line)])[:EXAMPLES_PER_REASON])
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict]) -> dict:
        merged: dict[str, tuple[int, list[tuple[str, int]]]] = {}
        for acc in accumulators:
            for reason, (count, places) in acc.items():
                total, seen = merged.get(reason, (0, []))
                merged[reason] = (total + count, sorted([*seen, *places])[:EXAMPLES_PER_REASON])
        return merged

    def extract_output(self, acc: dict) -> dict[str, dict[str, Any]]:
        return {
            reason: {"count": count, "examples": [f"{path}:{line}" for path, line in places]}
            for reason, (count, places) in sorted(acc.items())
        }


def stats_json(
    config: ExampleGenConfig, inputs: list[str], interactions: int,
    malformed: dict[str, dict[str, Any]], files: list[FileStats],
) -> str:
    """The ``stats.json`` document (see the module docstring)."""
    files = sorted(files)
    rows_read = sum(f.rows_read for f in files) if files else interactions
    stats = {
        "input_format": config.input_format,
        "input": inputs,
        "rows_read": rows_read,
        "interactions": interactions,
        "malformed_rows": sum(v["count"] for v in malformed.values()),
        "malformed": malformed,
        "files": [f.to_json() for f in files],
    }
    return json.dumps(stats, indent=1, sort_keys=True)


class Summarize(beam.PTransform):
    """``{ROWS, MALFORMED, FILES}`` PCollections -> one stats.json string."""

    def __init__(self, config: ExampleGenConfig, inputs: list[str]):
        super().__init__()
        self.config = config
        self.inputs = inputs

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        count = parts[ROWS] | "CountInteractions" >> beam.combiners.Count.Globally()
        malformed = parts[MALFORMED] | "SummarizeMalformed" >> beam.CombineGlobally(
            MalformedSummaryFn()
        )
        files = parts[FILES] | "ListFiles" >> beam.combiners.ToList()
        return (
            count.pipeline
            | "One" >> beam.Create([None])
            | "ToJson" >> beam.Map(
                lambda _, config, inputs, n, bad, found: stats_json(config, inputs, n, bad, found),
                self.config,
                self.inputs,
                beam.pvalue.AsSingleton(count),
                beam.pvalue.AsSingleton(malformed),
                beam.pvalue.AsSingleton(files),
            )
        )


# ----------------------------------------------------------------------------- the stage


def check_outcome(config: ExampleGenConfig, stats: dict[str, Any]) -> None:
    """Driver-side checks after the pipeline; raises DataError quoting the first bad place."""
    for found in stats["files"]:
        if found.get("read_error"):  # a cut-off or corrupt file is never a shorter log
            raise DataError(found["read_error"])
    for found in stats["files"]:
        if found["rows_read"] == 0:
            raise DataError(f"{found['path']}: no data rows")
        if found["interactions"] == 0:
            raise DataError(
                f"{found['first_problem']}; not a {config.input_format} file: none of its "
                f"{found['rows_read']} rows parses"
            )
    if config.strict and stats["malformed_rows"]:
        first = next(f["first_problem"] for f in stats["files"] if f["first_problem"])
        raise DataError(
            f"{first}; --strict makes any malformed row an error "
            f"({stats['malformed_rows']} malformed row(s) in all)"
        )
    if stats["interactions"] == 0:
        raise DataError(f"{', '.join(stats['input'])}: no valid {config.input_format} interactions")


def run_example_gen(
    config: ExampleGenConfig, output_dir: str, options: PipelineOptions
) -> dict[str, Any]:
    """Runs the stage into ``output_dir`` and returns its stats (the content of stats.json).

    One Beam pipeline: inputs -> ReadRecords (or GenerateSynthetic) ->
    Reshuffle -> ``interactions-SSSSS-of-NNNNN.tsv``, and the stats -> stats.json.

    Raises:
      DataError: bad input (see the module docstring), naming the file and line.
      ConfigError: invalid synthetic knobs.
    """
    inputs = check_input(config)
    with beam.Pipeline(options=options) as p:
        if config.input_format == "synthetic":
            parts = {
                ROWS: p | "Synthetic" >> GenerateSynthetic(config.synthetic()),
                MALFORMED: p | "NoMalformed" >> beam.Create([]),
                FILES: p | "NoFiles" >> beam.Create([]),
            }
        else:
            read = (
                p
                | "Inputs" >> beam.Create(list(enumerate(inputs)))
                | "Read"
                >> beam.ParDo(ReadRecords(config)).with_outputs(MALFORMED, FILES, main=ROWS)
            )
            parts = {
                ROWS: read[ROWS] | "Reshuffle" >> beam.Reshuffle(),
                MALFORMED: read[MALFORMED],
                FILES: read[FILES],
            }
        _ = (
            parts[ROWS]
            | "ToTsv" >> beam.Map(Interaction.to_tsv)
            | "Write" >> beam.io.WriteToText(
                artifacts.join(output_dir, OUTPUT_PREFIX), file_name_suffix=OUTPUT_SUFFIX,
                num_shards=config.example_gen_shards,
            )
        )
        _ = (
            parts
            | "Stats" >> Summarize(config, inputs or ["synthetic"])
            | "WriteStats" >> beam.io.WriteToText(
                artifacts.join(output_dir, STATS), shard_name_template="", num_shards=1
            )
        )
    stats = json.loads(artifacts.read_text(artifacts.join(output_dir, STATS)))
    check_outcome(config, stats)
    return stats
