"""bench.common's command lines are the ones a user types on a fresh clone."""

from __future__ import annotations

from bench.common import DATASETS, command_of


def test_every_shared_dataset_path_is_written_beside_the_clone():
    command = command_of({"input": str(DATASETS / "ml-100k" / "ml-100k.inter"), "input_format": "recbole",
                          "item_features": str(DATASETS / "ml-100k" / "ml-100k.item"), "model": "difsr",
                          "exclude_history": True, "output_dir": "/tmp/elsewhere"})
    assert command == ("python -m pipeline.run --input ../shared/datasets/ml-100k/ml-100k.inter --input_format "
                       "recbole --item_features ../shared/datasets/ml-100k/ml-100k.item --model difsr "
                       "--exclude_history true --output_dir /tmp/elsewhere")
