"""Shared fixtures: the datasets beside the repository and small temporary roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tfseq  # noqa: F401  (selects Keras 2 before any test imports TensorFlow)

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TFSEQ_DATASETS", REPO.parent / "shared" / "datasets"))
ML100K = DATASETS / "ml-100k" / "ml-100k.inter"
BEAUTY = DATASETS / "amazon-beauty" / "Beauty.txt"


def require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"dataset missing in CI: {path}")
        pytest.skip(f"dataset not found: {path}")
    return path


@pytest.fixture
def ml100k() -> Path:
    return require(ML100K)


@pytest.fixture
def beauty() -> Path:
    return require(BEAUTY)
