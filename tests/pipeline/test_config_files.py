"""The ready-made settings in ``configs/`` are valid ``pipeline.run --config`` files, and say what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BEAUTY = {"input": "../shared/datasets/amazon-beauty/Beauty.txt", "input_format": "sequence"}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_builds_the_configs_of_a_run(path):
    settings = cli.load_config_file(str(path))
    configs = cli.build_configs({**settings, **BEAUTY}, source=str(path))
    assert configs.experiment.model == settings["model"]


def test_beauty_best_masks_the_history_and_its_twin_does_not():
    settings = cli.load_config_file(str(CONFIGS / "beauty_best.yaml"))
    masked = cli.build_configs({**settings, **BEAUTY}).experiment
    unmasked = cli.build_configs({**settings, **BEAUTY, "exclude_history": False}).experiment
    assert masked.train.exclude_history and not unmasked.train.exclude_history
    # BSARec as its authors train it: positions from the last item, hence separate prefixes
    assert (masked.model, masked.model_config.position_origin, masked.train.learning_rate) == ("bsarec", "last", 5e-4)
    assert masked.train.lr_decay_patience == 0 and masked.train.epochs == 200
