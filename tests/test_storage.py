"""tfseq/storage.py: a file is replaced whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from tfseq import storage


def test_writes_and_replaces_whole_files_leaving_no_temporaries(tmp_path):
    path = tmp_path / "metrics.json"
    storage.atomic_write_json(str(path), {"ndcg@10": 0.05})
    storage.atomic_write_json(str(path), {"ndcg@10": 0.06})
    assert json.loads(path.read_text()) == {"ndcg@10": 0.06}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    storage.atomic_write_text(str(path), "old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        storage.atomic_write_text(str(path), "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_a_missing_folder_is_created(tmp_path):
    storage.atomic_write_bytes(str(tmp_path / "new" / "folder" / "file"), b"x")
    assert (tmp_path / "new" / "folder" / "file").read_bytes() == b"x"
    assert os.listdir(tmp_path / "new" / "folder") == ["file"]


def test_an_unwritable_folder_is_an_os_error_leaving_nothing(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OSError):
        storage.atomic_write_bytes(str(tmp_path / "file" / "inside"), b"x")
    assert os.listdir(tmp_path) == ["file"]
