"""pipeline.cli: the one flag layer (help, no abbreviations, aliases, config files, validation up front)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys

import pytest

from pipeline import cli
from pipeline import run as pipeline_run
from tfseq.config import ConfigError, TrainConfig
from tfseq.experiment import ROUTED_KEYS
from tfseq.losses import LOSSES
from tfseq.models import MODELS
from tuning import search


def help_text(capsys, main, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_no_field_name_belongs_to_two_configs():
    """One flag sets one thing: stage configs share no name, nor with any model or loss config."""
    stages = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in cli.STAGE_SECTIONS.items()}
    for (a, fa), (b, fb) in itertools.combinations(stages.items(), 2):
        assert not fa & fb, (a, b, fa & fb)
    run_flags = {"output_dir", "stop_after", "force", "quiet", "startup_logs", "config", "model", "loss"}
    for name, fields in stages.items():
        assert not fields & run_flags, (name, fields & run_flags)
    for registry in (MODELS, LOSSES):
        for key in registry.names():
            fields = {f.name for f in dataclasses.fields(registry.get(key).config_cls)}
            for stage, stage_fields in stages.items():
                shared = fields & stage_fields
                # max_seq_len sizes the reader and the positional table: one value, kept equal by ExperimentConfig
                allowed = set(ROUTED_KEYS) if stage == "Trainer" else set()
                assert shared <= allowed, (key, stage, shared)
    for model, loss in itertools.product(MODELS.names(), LOSSES.names()):
        model_fields = {f.name for f in dataclasses.fields(MODELS.get(model).config_cls)}
        loss_fields = {f.name for f in dataclasses.fields(LOSSES.get(loss).config_cls)}
        assert not model_fields & loss_fields, (model, loss)


def test_help_lists_every_stage_model_and_loss_flag_whatever_the_model(capsys):
    text = help_text(capsys, pipeline_run.main, "--model", "gru4rec")
    flags = {"--input", "--input_format", "--epochs", "--learning_rate", "--min_user_inter", "--top_k",
             "--model_name", "--stop_after", "--exclude_history", "--synthetic_seed", "--seed"}
    for registry in (MODELS, LOSSES):
        for key in registry.names():
            flags |= {f"--{f.name}" for f in dataclasses.fields(registry.get(key).config_cls)}
    missing = sorted(f for f in flags if f not in text)
    assert not missing, missing
    for name in MODELS.names() + LOSSES.names():  # the registries' names are the choices
        assert name in text
    assert "--n_layers" in text and "--train_batch_size" in text  # RecBole's spellings, as aliases
    assert "sasrec: 2" in text  # per-model defaults of a shared hyperparameter
    joined = " ".join(text.split())
    assert "difsr: 128" in joined and "sasrec: 256" in joined  # the models' own training defaults


def test_help_is_plain_text():
    """Docstring markup and the "losss" plural stay out of --help."""
    parser = pipeline_run.build_parser()
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert "losss" not in text and "each applies to the losses listed" in text
    assert cli.plain_text("``a`` :class:`~pipeline.ptransforms.SplitSpec` :func:`f`") == "a SplitSpec f"


def test_a_bad_flag_value_is_two_lines_not_the_whole_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pipeline_run.main(["--epochs", "abc"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["usage: python -m pipeline.run [flags]  (--help lists them)",
                     "python -m pipeline.run: error: argument --epochs: invalid int value: 'abc'"]
    with pytest.raises(SystemExit):
        search.main([])
    usage = capsys.readouterr().err.splitlines()[0]
    assert usage == "usage: python -m tuning.search MODEL [flags]  (--help lists them)"


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def imported_by(*command: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Runs ``python -X importtime -m <command>`` from the repository; returns it and the modules it imported."""
    process = subprocess.run([sys.executable, "-X", "importtime", "-m", *command], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    modules = {line.rsplit("|", 1)[1].strip() for line in process.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return process, modules


@pytest.mark.parametrize("command, code, heavy", [
    (("pipeline.run", "--help"), 0, ("tensorflow", "apache_beam")),
    (("pipeline.run", "--epochs", "abc"), 2, ("tensorflow", "apache_beam")),
    (("pipeline.run", "--model", "gru4rec", "--num_heads", "4"), 2, ("tensorflow", "apache_beam")),
    (("pipeline.run", "--learning_rat", "0.1"), 2, ("tensorflow",)),  # Beam's flags decide what is unknown
    (("tuning.search", "--help"), 0, ("tensorflow", "apache_beam")),
    (("tuning.search", "core", "--epochs", "x"), 2, ("tensorflow", "apache_beam")),
    (("serving.client", "--help"), 0, ("tensorflow", "apache_beam")),
    (("serving.client", "--history", "a", "--k", "x"), 2, ("tensorflow", "apache_beam")),
])
def test_help_and_flag_errors_do_not_import_tensorflow(command, code, heavy):
    """Flags are built from config classes importable without TensorFlow, so --help and a bad flag answer at once."""
    process, modules = imported_by(*command)
    assert process.returncode == code, process.stderr[-2000:]
    assert command[0].split(".")[0] in modules  # the import log was read
    assert not modules & set(heavy), sorted(modules & set(heavy))
    if code == 0:
        assert "usage:" in process.stdout


def test_tuning_help_lists_input_and_hyperparameter_flags(capsys):
    text = help_text(capsys, search.main, "core")
    for flag in ("--input", "--input_format", "--epochs", "--temperature", "--oracle", "--max_trials", "--top_k"):
        assert flag in text, flag


@pytest.mark.parametrize("argv, expected", [
    (["--learning_rat", "0.01"], "did you mean --learning_rate"),  # no argparse abbreviations
    (["--epoch", "3"], "did you mean --epochs"),
    (["--min_user_intr", "5"], "did you mean --min_user_inter"),
])
def test_abbreviations_and_typos_are_errors_with_a_suggestion(tmp_path, capsys, argv, expected):
    code = pipeline_run.main([*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--valid_metric", "ndcg@x"], "--valid_metric"),
    (["--valid_metric", "auc@10"], "--valid_metric"),
    (["--model", "gru4rec", "--num_heads", "4"], "--num_heads is not a setting of model gru4rec"),
    (["--loss", "softmax", "--num_negatives", "5"], "--num_negatives is not a setting"),
    (["--epochs", "0"], "epochs"),
    (["--model", "sasrec", "--max_seq_len", "0"], "max_seq_len"),
    (["--input", "log.weird"], "--input_format"),
])
def test_bad_values_fail_before_the_first_stage(tmp_path, capsys, argv, expected):
    """--valid_metric NDCG@x used to fail after a whole epoch; now nothing runs."""
    code = pipeline_run.main([*argv, "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_recbole_spellings_mean_the_same_settings():
    ours = cli.build_configs({"model": "sasrec", "num_layers": 3, "batch_size": 64, "patience": 4,
                              "valid_metric": "ndcg@20", "max_seq_len": 30})
    recbole = cli.build_configs({"model": "SASRec", "n_layers": 3, "train_batch_size": 64, "stopping_step": 4,
                                 "valid_metric": "NDCG@20", "MAX_ITEM_LIST_LENGTH": 30})
    assert ours == recbole
    assert cli.build_configs({"model": "CORE"}).experiment.model == "core_trm"
    assert cli.build_configs({"valid_metric": "MRR"}).experiment.train.valid_metric == "mrr"  # no cut-off
    assert cli.build_configs({"model": "GRU4Rec", "loss_type": "CE"}).experiment.loss == "softmax"
    with pytest.raises(ConfigError, match="n_layers and num_layers"):
        cli.build_configs({"n_layers": 2, "num_layers": 3})


def test_a_models_width_is_embedding_size_and_recboles_hidden_size_means_it_for_transformers():
    # RecBole's SASRec and DIF-SR call the model width hidden_size; GRU4Rec's hidden_size is its GRU state.
    sasrec = cli.build_configs({"model": "SASRec", "hidden_size": 32}).experiment.model_config
    assert sasrec.embedding_size == 32 and not hasattr(sasrec, "hidden_size")
    difsr = cli.build_configs({"model": "difsr", "hidden_size": 32, "attribute_hidden_size": 16},
                              sections=("ExampleGen",)).experiment.model_config
    assert (difsr.embedding_size, difsr.attribute_embedding_size) == (32, 16)
    gru = cli.build_configs({"model": "GRU4Rec", "hidden_size": 32}).experiment.model_config
    assert (gru.hidden_size, gru.embedding_size) == (32, 64)
    with pytest.raises(ConfigError, match="hidden_size and embedding_size set the same setting"):
        cli.build_configs({"model": "sasrec", "hidden_size": 32, "embedding_size": 64})
    # and a run written before the rename still loads
    from tfseq.experiment import ExperimentConfig

    assert ExperimentConfig.from_flat({"model": "sasrec", "hidden_size": 16}).model_config.embedding_size == 16


def test_yaml_and_json_config_files_with_flags_on_top(tmp_path):
    yaml_file = tmp_path / "sasrec.yaml"
    yaml_file.write_text("model: SASRec\nn_layers: 1\nlearning_rate: 0.002\nmin_user_inter: 5\n"
                         "valid_metric: NDCG@10\n")
    json_file = tmp_path / "best.json"
    json_file.write_text(json.dumps({"model": "gru4rec", "hidden_size": 32, "top_k": 5}))
    parser = pipeline_run.build_parser()
    _, configs, _ = cli.parse(parser, ["--config", str(yaml_file), "--learning_rate", "0.01"])
    assert configs.experiment.model == "sasrec" and configs.experiment.model_config.num_layers == 1
    assert configs.experiment.train.learning_rate == 0.01  # the flag wins over the file
    assert configs.transform.min_user_inter == 5
    _, configs, _ = cli.parse(parser, ["--config", str(json_file)])
    assert (configs.experiment.model_config.hidden_size, configs.pusher.top_k) == (32, 5)


@pytest.mark.parametrize("text, expected", [
    ("model: sasrec\nn_layers: [1\n", r"bad\.yaml:\d+: not valid YAML"),
    ("model: sasrec\nhiden_size: 3\n", r"bad\.yaml: unknown setting 'hiden_size'; did you mean hidden_size"),
    ("- a\n- b\n", r"bad\.yaml: expected a mapping"),
])
def test_a_bad_config_file_is_named_with_its_line(tmp_path, capsys, text, expected):
    import re

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = pipeline_run.main(["--config", str(path), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(expected, err), err


def test_beam_flags_pass_through_and_unknown_ones_do_not():
    parser = pipeline_run.build_parser()
    _, _, beam = cli.parse(parser, ["--runner", "DirectRunner", "--direct_num_workers=2", "--epochs", "3"])
    assert beam == ["--runner", "DirectRunner", "--direct_num_workers=2"]
    with pytest.raises(ConfigError, match="unknown flag --direct_num_worker; did you mean --direct_num_workers"):
        cli.parse(parser, ["--direct_num_worker=2"])


def test_field_docs_become_help_text():
    docs = cli.field_docs(TrainConfig)
    assert docs["learning_rate"].startswith("Adam learning rate")
    assert "maximised" in docs["valid_metric"]


def test_recbole_field_names_and_intervals_mean_tfseqs_settings():
    configs = cli.build_configs({"USER_ID_FIELD": "uid", "ITEM_ID_FIELD": "iid", "TIME_FIELD": "ts",
                                 "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "(2,inf)",
                                 "dataset": "log.csv"})
    eg, tr = configs.example_gen, configs.transform
    assert (eg.user_col, eg.item_col, eg.time_col, eg.input) == ("uid", "iid", "ts", "log.csv")
    assert (tr.min_user_inter, tr.min_item_inter) == (5, 3)  # "(2,inf)": more than 2
    with pytest.raises(ConfigError, match=r"lower bound only"):
        cli.build_configs({"user_inter_num_interval": "[5,100]"})


def test_a_config_file_takes_the_entry_points_own_flags_too(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"output_dir: {tmp_path / 'from-file'}\nstop_after: transform\nmodel: gru4rec\n")
    parser = pipeline_run.build_parser()
    own, configs, _ = cli.parse(parser, ["--config", str(path)])
    expected = (str(tmp_path / "from-file"), "Transform", "gru4rec")
    assert (own.output_dir, own.stop_after, configs.experiment.model) == expected
    own, _, _ = cli.parse(parser, ["--config", str(path), "--output_dir", "elsewhere"])
    assert own.output_dir == "elsewhere"  # the flag wins


@pytest.mark.parametrize("content, expected", [
    (b"model: sasrec\nlearning_rate: \xff\xfe\n", r"run\.yaml:2: not UTF-8"),
    (b"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n", r"run\.yaml:1: not valid YAML: anchors"),
    (b"model: " + b"[" * 5000 + b"]" * 5000 + b"\n", r"run\.yaml.*nested"),
    (b"model:\n  inner:\n    deeper:\n      deepest: 1\n", r"run\.yaml: nested deeper"),
])
def test_hostile_config_files_are_one_line_errors(tmp_path, capsys, content, expected):
    import re

    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    code = pipeline_run.main(["--config", str(path), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(expected, err) and len(err.splitlines()) == 1, err


def test_an_unknown_key_is_echoed_cut_short():
    with pytest.raises(ConfigError) as caught:
        cli.build_configs({"x" * 100_000: 1})
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("setting, value", [
    ("learning_rate", float("nan")), ("learning_rate", float("inf")), ("weight_decay", float("nan")),
    ("seed", -1), ("seed", 2**40), ("num_shards", 1_000_000), ("epochs", 10**9)])
def test_numeric_settings_have_ranges_checked_up_front(setting, value):
    with pytest.raises(ConfigError, match=setting):
        cli.build_configs({setting: value})


def test_dask_runner_short_names_become_the_class_beam_needs():
    assert cli.runner_aliases(["--runner=DaskRunner", "--dask_npartitions=2"]) == [
        f"--runner={cli.DASK_RUNNER}", "--dask_npartitions=2"]
    assert cli.runner_aliases(["--runner", "dask"]) == ["--runner", cli.DASK_RUNNER]
    cli.check_runner("DaskRunner")  # accepted, not "unknown Beam runner"
