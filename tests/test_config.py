"""Config dataclasses, the registry and the flat experiment config."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tfseq.config import ConfigError, TrainConfig, from_dict, to_dict
from tfseq.registry import Registry


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ConfigError, match="learnin_rate"):
        from_dict(TrainConfig, {"learnin_rate": 0.1})


def test_from_dict_coerces_cli_strings_and_round_trips():
    config = from_dict(TrainConfig, {"epochs": "3", "learning_rate": "0.01", "exclude_history": "true"})
    assert (config.epochs, config.learning_rate, config.exclude_history) == (3, 0.01, True)
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_from_dict_names_field_with_bad_value():
    with pytest.raises(ConfigError, match=r"TrainConfig\.epochs"):
        from_dict(TrainConfig, {"epochs": "many"})
    with pytest.raises(ConfigError, match=r"TrainConfig\.batch_size must be in 1\.\."):
        TrainConfig(batch_size=0)


def test_train_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


def test_registry_lists_known_names_on_a_typo():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        size: int = 1

    registry: Registry = Registry("widget")

    @registry.register("small", Cfg)
    class Small:
        def __init__(self, config, scale=1):
            self.value = config.size * scale

    assert registry.build("small", Cfg(size=3), scale=2).value == 6
    assert registry.build("small").value == 1
    with pytest.raises(KeyError, match="unknown widget 'smal'; known: small"):
        registry.get("smal")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("small", Cfg)(Small)
    with pytest.raises(ValueError, match="lowercase"):
        registry.register("Big", Cfg)


def test_a_declared_entry_is_imported_when_first_used():
    """``add`` names the class as "module:Class": the config is known at once, the class's module loads later."""
    registry: Registry = Registry("widget")

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        size: int = 1

    registry.add("fraction", Cfg, "fractions:Fraction")
    assert registry.names() == ["fraction"] and registry.get("fraction").config_cls is Cfg
    import fractions

    assert registry.get("fraction").cls is fractions.Fraction
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("fraction", Cfg, "fractions:Fraction")
    with pytest.raises(ValueError, match="module:Class"):
        registry.add("bad", Cfg, "fractions.Fraction")
    with pytest.raises(TypeError, match="dataclass"):
        registry.add("plain", dict, "builtins:dict")


def test_every_registry_entry_names_its_class_and_the_facts_the_flags_read():
    """The "module:Class" strings resolve to the class the module defines, and what the command line reads
    from the config classes (without TF) is what the model classes use."""
    from pipeline import configs, ptransforms
    from tfseq.losses import LOSSES
    from tfseq.models import MODELS, cnn

    for registry in (MODELS, LOSSES):
        for name in registry.names():
            entry = registry.get(name)
            module, _, qualname = entry.target.partition(":")
            assert entry.cls.__module__ == module and entry.cls.__qualname__ == qualname, name
            assert module.rsplit(".", 1)[0] == f"tfseq.{'models' if registry is MODELS else 'losses'}", name
    for name in MODELS.names():
        cls, config_cls = MODELS.get(name).cls, MODELS.get(name).config_cls
        assert cls.uses_item_features == getattr(config_cls, "uses_item_features", False), name
        assert dict(cls.train_defaults) == dict(getattr(config_cls, "train_defaults", {})), name
    from tfseq.models.configs import NONLINEARITIES

    assert set(cnn.NONLINEARITIES) == set(NONLINEARITIES)
    assert set(ptransforms.COMPRESSIONS) == set(configs.COMPRESSIONS)


def test_experiment_config_routes_flat_keys_and_rejects_unknown(tmp_path):
    from tfseq.experiment import ExperimentConfig
    from tfseq.models import MODELS

    config = ExperimentConfig.from_flat({"model": "sasrec", "learning_rate": 0.003, "max_seq_len": 20})
    assert config.train.learning_rate == 0.003
    # max_seq_len is declared by both the reader's TrainConfig and SASRec's positional table.
    assert config.train.max_seq_len == 20 and config.model_config.max_seq_len == 20
    assert ExperimentConfig.from_flat(config.to_flat()) == config

    with pytest.raises(ConfigError, match="temperatur"):
        ExperimentConfig.from_flat({"model": "core_trm", "temperatur": 0.1})
    with pytest.raises(ConfigError, match="unknown model 'sasrek'"):
        ExperimentConfig.from_flat({"model": "sasrek"})

    path = tmp_path / "best.json"
    path.write_text(json.dumps({"model": "core_ave", "temperature": 0.1, "epochs": 2}))
    loaded = ExperimentConfig.from_json_file(str(path))
    assert (loaded.model, loaded.model_config.temperature, loaded.train.epochs) == ("core_ave", 0.1, 2)
    path.write_text(json.dumps({"model": "core_ave", "bogus": 1}))
    with pytest.raises(ConfigError, match=r"best\.json.*bogus"):
        ExperimentConfig.from_json_file(str(path))
    assert set(MODELS.names()) >= {"gru4rec", "sasrec", "core_ave", "core_trm", "pop"}


def test_model_train_defaults_fill_only_what_the_user_leaves_out(monkeypatch):
    from tfseq.experiment import ExperimentConfig, model_train_defaults
    from tfseq.models.configs import SASRecConfig as SASRec  # the flags read a model's defaults from its config

    monkeypatch.setattr(SASRec, "train_defaults", {"learning_rate": 3e-4, "all_positions": False}, raising=False)
    config = ExperimentConfig.from_flat({"model": "sasrec"})
    assert (config.train.learning_rate, config.train.all_positions) == (3e-4, False)
    given = ExperimentConfig.from_flat({"model": "sasrec", "learning_rate": 0.01})
    assert (given.train.learning_rate, given.train.all_positions) == (0.01, False)
    # config.json holds every value, so a saved run reloads as it was trained, defaults or not.
    assert ExperimentConfig.from_flat(config.to_flat()) == config
    assert ExperimentConfig.from_flat({"model": "gru4rec"}).train.learning_rate == TrainConfig().learning_rate

    monkeypatch.setattr(SASRec, "train_defaults", {"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match="learning_rat"):
        model_train_defaults("sasrec")
    monkeypatch.setattr(SASRec, "train_defaults", {"max_seq_len": 20})  # one value for reader and model
    with pytest.raises(ConfigError, match="max_seq_len"):
        ExperimentConfig.from_flat({"model": "sasrec"})


def test_every_registered_model_train_defaults_are_valid_train_config_values():
    from tfseq.experiment import model_train_defaults
    from tfseq.models import MODELS

    for model in MODELS.names():
        TrainConfig(**model_train_defaults(model))  # names and values both checked


def test_recboles_topk_and_metrics_choose_the_reported_cut_offs_and_metrics():
    from tfseq.metrics import reported

    train = from_dict(TrainConfig, {"topk": "20,5 10", "metrics": ["NDCG", "Recall", "ndcg"]})
    assert (train.topk, train.metrics) == ((5, 10, 20), ("ndcg", "recall"))
    for bad, message in (({"topk": [0]}, "--topk must be cut-offs"), ({"metrics": ["auc"]}, "'auc' is not a metric")):
        with pytest.raises(ConfigError, match=message):
            from_dict(TrainConfig, bad)
    everything = {"ndcg@5": 0.1, "hit@5": 0.2, "mrr": 0.3, "mrr@5": 0.3, "num_users": 7}
    assert reported(everything, ("hit",), keep="ndcg@5") == {"ndcg@5": 0.1, "hit@5": 0.2, "num_users": 7}
    assert reported(everything, (), keep="ndcg@5") == everything
