"""The data flags of issues 22 and 23 at the flag layer: runner names, RecBole folders, new knobs' validation.

Every case fails before any stage runs, so nothing here starts a Beam pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import cli
from pipeline import run as pipeline_run
from pipeline.configs import TransformConfig
from tfseq.config import ConfigError


def recbole_folder(tmp_path: Path, name: str = "ml-tiny") -> Path:
    """A RecBole dataset folder: <name>.inter, <name>.item and <name>.user."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    (folder / f"{name}.item").write_text("item_id:token\tclass:token_seq\ni\tA\n")
    (folder / f"{name}.user").write_text("user_id:token\tage:token\nu\t20\n")
    return folder


@pytest.mark.parametrize("runner, hint", [
    ("DirectRuner", "; did you mean --runner=DirectRunner?"),
    ("Sparks", "; did you mean --runner=SparkRunner?"),
    ("nothing_like_it", ""),
])
def test_a_misspelt_runner_is_one_error_line_before_any_stage(tmp_path, capsys, runner, hint):
    # Issue 22.7: it was a Beam traceback after ExampleGen had started.
    code = pipeline_run.main([f"--runner={runner}", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: unknown Beam runner {runner!r}{hint} (runners: ")
    assert len(err.strip().splitlines()) == 1 and "DirectRunner" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["--runner=DirectRunner"], ["--runner", "direct"], ["--runner=flink"], ["--runner=my.module.MyRunner"],
])
def test_runner_names_beam_accepts_pass(argv):
    cli.check_beam_args(argv, [])


def test_a_recbole_folder_input_is_recbole_and_names_its_item_file_for_feature_models(tmp_path):
    folder = recbole_folder(tmp_path)
    configs = cli.build_configs({"input": f"{folder}/"})
    assert configs.example_gen.input_format == "recbole"
    with pytest.raises(ConfigError, match=(
        r"model sasrec_f uses item side features: give --item_features PATH .*; "
        rf"the dataset folder has {folder}/ml-tiny\.item: --item_features {folder}/ml-tiny\.item$"
    )):
        cli.build_configs({"input": str(folder), "model": "sasrec_f"})
    with pytest.raises(ConfigError, match="name its format with --input_format"):
        cli.build_configs({"input": str(tmp_path)})  # a folder that is not a RecBole dataset


def test_the_new_data_flags_parse_and_are_validated():
    parser = pipeline_run.build_parser()
    _, configs, _ = cli.parse(parser, [
        "--max_attributes_per_item", "8", "--min_feature_coverage", "0.2", "--time_format", "%d/%m/%Y",
        "--check_format", "false",
    ])
    assert (configs.transform.max_attributes_per_item, configs.transform.min_feature_coverage) == (8, 0.2)
    assert (configs.example_gen.time_format, configs.example_gen.check_format) == ("%d/%m/%Y", False)
    defaults = cli.build_configs({})
    assert (defaults.transform.max_attributes_per_item, defaults.transform.min_feature_coverage) == (64, 0.5)
    assert (defaults.example_gen.time_format, defaults.example_gen.check_format) == ("", True)
    with pytest.raises(ConfigError, match="--max_attributes_per_item must be >= 1, got 0"):
        TransformConfig(max_attributes_per_item=0)
    with pytest.raises(ConfigError, match=r"--min_feature_coverage must be in \[0, 1\], got 1.5"):
        TransformConfig(min_feature_coverage=1.5)
