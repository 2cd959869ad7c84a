"""Every numeric flag has a range, checked before any stage runs; errors echo short (issue 23, cases 6 and 7)."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import resource
import subprocess
import sys

import pytest

from pipeline import cli
from pipeline import run as pipeline_run
from pipeline import trainer as pipeline_trainer
from tests.pipeline.test_run import TINY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = [*TINY, "--epochs", "1", "--stop_after", "ExampleGen"]  # should a value pass, the run stays small
OUT_OF_RANGE = {int: (-1, 2**64), float: (math.nan, math.inf, -math.inf)}
MEMORY_BOUND = 512 << 20  # bytes of address space: the flag layer answers in far less, without TensorFlow


def numeric_flags(parser) -> dict[str, type]:
    return {action.dest: action.type for action in parser._actions if action.type in (int, float)}


def takers(flag: str) -> list[str]:
    """The flags that make ``flag`` apply: a model or loss that has it (one without item features if any)."""
    owners = cli.hyperparameter_owners().get(flag)
    if not owners:
        return []
    from tfseq.experiment import uses_item_features

    kind, key, _ = min(owners, key=lambda owner: owner[0] == "model" and uses_item_features(owner[1]))
    features = ["--item_features", "items.json"] if kind == "model" and uses_item_features(key) else []
    return [f"--{kind}", key, *features]


@pytest.fixture
def parsers(monkeypatch):
    """Each entry point's parser, built once for the whole walk (main builds it at every call)."""
    run_parser = functools.lru_cache(None)(pipeline_run.build_parser)
    trainer_parser = functools.lru_cache(None)(pipeline_trainer.build_parser)
    monkeypatch.setattr(pipeline_run, "build_parser", run_parser)
    monkeypatch.setattr(pipeline_trainer, "build_parser", trainer_parser)
    return {pipeline_run: run_parser(), pipeline_trainer: trainer_parser()}


def test_every_numeric_flag_refuses_out_of_range_values_in_one_line_before_any_stage(tmp_path, capsys, parsers):
    out = tmp_path / "out"
    walked = []
    for entry_point, parser in parsers.items():
        flags = numeric_flags(parser)
        if entry_point is pipeline_trainer:  # its Trainer flags are pipeline.run's: walk only its own
            flags = {k: v for k, v in flags.items() if k not in numeric_flags(parsers[pipeline_run])}
        for flag, kind in flags.items():
            for value in OUT_OF_RANGE[kind]:
                base = BASE if entry_point is pipeline_run else ["--epochs", "1"]
                code = entry_point.main([*base, "--output_dir", str(out), *takers(flag), f"--{flag}={value}"])
                printed = capsys.readouterr()
                err = printed.err.strip()
                assert code == 2, (flag, value, err)
                assert len(err.splitlines()) == 1 and re.search(rf"\b{flag}\b", err), (flag, value, err)
                assert "running" not in printed.out and not out.exists(), (flag, value)
                walked.append(flag)
    assert {"learning_rate", "weight_decay", "seed", "top_k", "num_shards", "synthetic_order", "embedding_size",
            "collective_timeout"} <= set(walked)


@pytest.mark.parametrize("flag, value", [
    ("num_shards", "1000000"),  # one file per shard and split, written until the disk or the user gave up
    ("synthetic_order", "1000000"),  # a chain of 30 million states, built before the first user
    ("synthetic_interactions", "10"),  # below 3 per user: was refused only inside ExampleGen
    ("top_k", "1000000000"),
    ("version", str(2**63)),  # past TF Serving's int64: the server would never load it
    ("learning_rate", "nan"), ("weight_decay", "nan"), ("seed", "-1"), ("synthetic_seed", "-1"),
    ("bless_threshold", "ndcg@10=2"),
    pytest.param("model_name", "m" * 300, id="model_name-300-chars"),  # the file system refused it after training
])
def test_values_that_failed_late_are_refused_up_front(tmp_path, capsys, flag, value):
    code = pipeline_run.main([*BASE, "--output_dir", str(tmp_path / "out"), f"--{flag}", value])
    printed = capsys.readouterr()
    assert code == 2 and f"{flag}" in printed.err and len(printed.err.strip().splitlines()) == 1, printed.err
    assert not (tmp_path / "out").exists() and "running" not in printed.out


def test_a_top_k_past_the_catalogue_is_refused_before_training(tmp_path, capsys):
    """K is checked against the Transform's items before the Trainer runs, not after, with a traceback."""
    root = tmp_path / "out"
    code = pipeline_run.main([*TINY, "--epochs", "1", "--model", "pooling", "--output_dir", str(root),
                              "--top_k", "100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: --top_k 100 is more than the 30 items of {root / 'Transform'}", err
    assert (root / "Transform").is_dir() and not any((root / "runs").glob("*/Trainer"))


@pytest.mark.parametrize("key", ["model", "dedupe", "input", "stop_after", "valid_metric", "metrics", "push",
                                 pytest.param("x" * 5000, id="a-long-unknown-key")])
def test_an_error_echoes_a_short_piece_of_a_long_value(tmp_path, capsys, key):
    """A long value in a config file was echoed whole, in an error line as long as the file."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({key: "v" * 900_000}))
    code = pipeline_run.main([*BASE, "--config", str(path), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) <= cli.MAX_ERROR_CHARS + 100, err[:1000]
    assert str(path) in err


def test_a_long_command_line_value_is_echoed_short(capsys):
    with pytest.raises(SystemExit):
        pipeline_run.main(["--model", "v" * 100_000])
    err = capsys.readouterr().err
    assert "--model" in err and len(err) <= cli.MAX_ERROR_CHARS + 200, err[:1000]


def test_a_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """A few hundred bytes of nested aliases expand to gigabytes, and an error echoed the expansion."""
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")  # 9 ** 9 strings in all
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\nmodel: *i\n")

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))

    process = subprocess.run([sys.executable, "-m", "pipeline.run", "--config", str(path)], cwd=REPO,
                             preexec_fn=bounded, capture_output=True, text=True, timeout=300)
    assert process.returncode == 2 and "anchors (&name) are not accepted" in process.stderr, process.stderr[-2000:]
    assert len(process.stderr.splitlines()) == 1 and len(process.stderr) < 1000


@pytest.mark.parametrize("content, expected", [
    pytest.param(b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", r"run\.json: not a usable JSON config",
                 id="deeply-nested"),
    pytest.param(b'{"epochs": 1' + b"0" * 5000 + b"}", r"run\.json: not a usable JSON config", id="5000-digits"),
    pytest.param(b'{"learning_rate": 1e999}', r"learning_rate must be a number in \(0, 10\], got inf", id="inf"),
    pytest.param(b'\xef\xbb\xbf{"model": "\xe9"}', r"run\.json:1: not UTF-8", id="latin-1"),
])
def test_hostile_json_config_files_are_one_line_errors(tmp_path, capsys, content, expected):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    code = pipeline_run.main([*BASE, "--config", str(path), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(expected, err) and len(err.splitlines()) == 1, err[:2000]


@pytest.mark.parametrize("flag, value", [("top_k", "0"), ("version", "0"), ("version", str(2**63)),
                                         ("approximate_clusters", "-1"), ("approximate_probes", "3")])
def test_the_standalone_export_checks_its_flags_before_loading_anything(tmp_path, capsys, flag, value):
    from serving import export

    with pytest.raises(SystemExit) as exited:
        export.main(["--trainer_dir", str(tmp_path / "missing"), "--transform_dir", str(tmp_path / "missing"),
                     "--serving_dir", str(tmp_path / "serving"), f"--{flag}", value])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"--{flag} must be" in err, err
    assert not (tmp_path / "serving").exists()
