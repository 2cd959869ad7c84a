"""Serving fixtures: the toy model, a toy servable on free loopback ports, a trained pipeline."""

from __future__ import annotations

import pytest

from serving import server
from tests.serving.common import PIPELINE_FLAGS, Toy, TrainedRun, make_toy


@pytest.fixture
def toy(tmp_path) -> Toy:
    return make_toy(tmp_path / "toy_data")


@pytest.fixture(scope="module")
def toy_served(tmp_path_factory):
    """A toy model exported as version 1 and served on free loopback ports (gRPC + REST)."""
    root = tmp_path_factory.mktemp("served")
    toy = make_toy(root / "data")
    toy.export(root / "serving")
    handle = server.serve(
        str(root / "serving" / "toy"), "toy", port=0, rest_port=0, poll_seconds=0.2, max_workers=8
    )
    yield toy, handle
    handle.stop()


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedRun:
    """The pipeline through the Pusher on a small synthetic log (SASRec, 2 epochs)."""
    from pipeline import run as pipeline_run

    root = tmp_path_factory.mktemp("pipeline") / "run"
    result = pipeline_run.run(
        [*PIPELINE_FLAGS, "--output_dir", str(root), "--stop_after", "Pusher"]
    )
    assert result.stages["Pusher"] == "ran"
    return TrainedRun(root, result.run)
