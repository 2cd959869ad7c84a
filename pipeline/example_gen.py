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
  pipeline itself writes it as its last step, which gathers every branch (the
  TSV shards' writes included), so it is built the same way on every runner,
  Beam's DaskRunner included; the driver reads it back for the checks below.

The TSV shards are written by ``pipeline.ptransforms.WriteFiles``: each row goes to
the shard its CRC-32 picks and each shard is sorted, so a run writes the same
bytes on every runner.

Sources: files are matched with Beam's FileSystems (sorted; the index is
``Interaction.source``; a RecBole dataset folder such as ``ml-100k/`` holding
``ml-100k.inter`` is that file alone, never its ``.item`` or ``.user`` files)
and each is read whole by one ``ReadRecords`` call
through ``FileSystems.open`` (no Beam source, which some runners cannot run). A
file compressed by Beam's extensions (``.gz``, ``.bz2``, ``.deflate``,
``.zst``, ``.xz``, ``.lzma``) is decompressed by ``formats.decompressed``,
which, unlike Beam's reader, checks that each stream reaches its end. The synthetic log is generated per user
(``beam.Create(range(num_users))``), never materialised on the driver.

Checks, in order:

1. On the driver, before the pipeline (fail at once, name the file): the format
   is known; the input matches files; no file is empty, binary, or starts with
   a header that does not fit; the first rows of a file (up to ``SNIFF_BYTES``)
   are not all malformed, and are not recognisably another format (a RecBole
   header, a header row or a ratings log read as ``sequence``/``pairs``:
   ``formats.check_not_misread``, off with ``--check_format false``); a
   compressed file the sniff reads to its end is not cut off or corrupt; a
   parquet schema has the named columns; a tfds dataset downloads.
2. In the pipeline: every row is parsed; malformed rows are counted by reason;
   a file that cannot be read to its end (cut-off or corrupt compressed data)
   is recorded in its ``FileStats.read_error`` rather than raised, so the
   error reaches the driver the same way on every runner.
3. On the driver, after the pipeline: a file with a ``read_error`` (with or
   without ``strict``), a file where no row parsed, any malformed row under
   ``strict``, or no valid interaction at all is a ``DataError`` quoting the
   file (and first ``file:line``). Skipped malformed rows are printed, one line
   per reason with its count and first ``file:line`` (stats.json has them too).
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from typing import IO, Any, Iterable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import artifacts
from pipeline.configs import ExampleGenConfig  # noqa: F401  (defined without Beam, for the flags)
from pipeline.ptransforms import WRITTEN, Gather, ParDoOutputs, WriteFiles
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
    """Files of ``pattern`` (a file, a directory or a glob), sorted; DataError when none.

    A directory holding ``<its name>.inter`` is a RecBole dataset folder: that file alone.
    """
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
    if is_dir:
        inter = recbole_dataset_file(pattern, files, ".inter")
        if inter:
            return [inter]
    return files


def recbole_dataset_file(folder: str, files: list[str], suffix: str) -> str:
    """``<folder>/<folder's name><suffix>`` when ``files`` (the folder's) hold it, else ""."""
    name = posixpath.basename(folder.rstrip("/").replace(os.sep, "/"))
    wanted = [f for f in files if posixpath.basename(f.replace(os.sep, "/")) == name + suffix]
    return wanted[0] if name and wanted else ""


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
    if config.check_format:
        formats.check_not_misread(fmt, path, lines)
    records = list(formats.parse_lines(fmt, path, source, lines))  # a bad header raises here
    if not records:
        if whole:
            what = "a header but no data rows" if fmt.has_header else "only blank lines"
            raise DataError(f"{path}: {what}")
        return
    malformed = [r for r in records if isinstance(r, Malformed)]
    if len(malformed) == len(records) and (whole or len(malformed) >= SNIFF_MIN_ROWS):
        reasons = sorted({m.reason for m in malformed})
        hint = ("; timestamps are numbers or ISO 8601 dates unless --time_format names their format"
                if formats.BAD_TIMESTAMP in reasons else "")
        raise DataError(
            f"{malformed[0].describe()}; not a {fmt.name} file: its first {len(malformed)} "
            f"row(s) are all malformed ({', '.join(reasons)}){hint}"
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
                config.rating_col, time_format=config.time_format,
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


def _stats_from_parts(
    parts: dict[str, list[Any]], config: ExampleGenConfig, inputs: list[str]
) -> str:
    malformed = parts[MALFORMED][0] if parts[MALFORMED] else {}
    interactions = sum(rows for _, rows in parts[WRITTEN])
    return stats_json(config, inputs, interactions, malformed, parts[FILES])


class Summarize(beam.PTransform):
    """``{WRITTEN, MALFORMED, FILES}`` PCollections -> one stats.json string.

    ``WRITTEN`` holds the TSV shards' ``(path, rows)``: the interactions are
    counted as written, and gathering them puts the stats after the writes on
    every runner (see ``pipeline.ptransforms.Gather``).
    """

    def __init__(self, config: ExampleGenConfig, inputs: list[str]):
        super().__init__()
        self.config = config
        self.inputs = inputs

    def expand(self, parts: dict[str, beam.PCollection]) -> beam.PCollection:
        malformed = parts[MALFORMED] | "SummarizeMalformed" >> beam.CombineGlobally(
            MalformedSummaryFn()
        ).without_defaults()
        return (
            {WRITTEN: parts[WRITTEN], MALFORMED: malformed, FILES: parts[FILES]}
            | "Gather" >> Gather()
            | "ToJson" >> beam.Map(_stats_from_parts, self.config, self.inputs)
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
    config: ExampleGenConfig, output_dir: str, options: PipelineOptions, log: IO[str] | None = None
) -> dict[str, Any]:
    """Runs the stage into ``output_dir`` and returns its stats (the content of stats.json).

    Skipped malformed rows are printed to ``log`` (default stdout), one line per reason.

    One Beam pipeline: inputs -> ReadRecords (or GenerateSynthetic) ->
    ``interactions-SSSSS-of-NNNNN.tsv``, and the stats -> stats.json.

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
            parts = (
                p
                | "Inputs" >> beam.Create(list(enumerate(inputs)))
                | "Read" >> ParDoOutputs(ReadRecords(config), tags=[MALFORMED, FILES], main=ROWS)
            )
        written = (
            parts[ROWS]
            | "ToTsv" >> beam.Map(Interaction.to_tsv)
            | "Write" >> WriteFiles(
                artifacts.join(output_dir, OUTPUT_PREFIX), OUTPUT_SUFFIX, config.example_gen_shards
            )
        )
        _ = (
            {WRITTEN: written, MALFORMED: parts[MALFORMED], FILES: parts[FILES]}
            | "Stats" >> Summarize(config, inputs or ["synthetic"])
            | "WriteStats" >> WriteFiles(artifacts.join(output_dir, STATS), exact=True)
        )
    stats = json.loads(artifacts.read_text(artifacts.join(output_dir, STATS)))
    check_outcome(config, stats)
    for line in malformed_lines(stats):
        print(f"[ExampleGen] {line}", file=log or sys.stdout, flush=True)
    return stats


def malformed_lines(stats: dict[str, Any]) -> list[str]:
    """The console's account of skipped rows: one line per reason, its count and first ``file:line``."""
    lines = []
    for reason, found in sorted(stats["malformed"].items(), key=lambda kv: (-kv[1]["count"], kv[0])):
        first = found["examples"][0] if found["examples"] else "?"
        lines.append(f"skipped {found['count']:,} malformed row(s): {reason} (first at {first})")
    return lines
