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


def test_a_folder_is_published_once_even_when_another_takes_its_name_after_the_check(tmp_path, monkeypatch):
    final = tmp_path / "1"
    final.mkdir()
    (final / "saved_model.pb").write_text("the other export")
    staging = tmp_path / ".1.tmp-abc"
    staging.mkdir()
    (staging / "saved_model.pb").write_text("ours")
    with pytest.raises(FileExistsError):
        storage.publish_folder(str(staging), str(final))
    monkeypatch.setattr(os.path, "lexists", lambda path: False)  # the other published between check and rename
    with pytest.raises(FileExistsError):
        storage.publish_folder(str(staging), str(final))
    assert (final / "saved_model.pb").read_text() == "the other export" and staging.is_dir()
    storage.publish_folder(str(staging), str(tmp_path / "2"))
    assert (tmp_path / "2" / "saved_model.pb").read_text() == "ours" and not staging.exists()


def test_the_lock_lets_one_holder_in_at_a_time(tmp_path):
    import threading

    lock = str(tmp_path / ".name.lock")
    order: list[str] = []
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with storage.exclusive_lock(lock):
            order.append("first in")
            inside.set()
            leave.wait(60)
            order.append("first out")

    def second() -> None:
        inside.wait(60)
        with storage.exclusive_lock(lock):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(60)
    leave.set()
    for thread in threads:
        thread.join(60)
    assert order == ["first in", "first out", "second in"]


def test_a_write_out_of_room_is_recognised_whoever_reported_it():
    import tensorflow as tf

    reported = tf.errors.ResourceExhaustedError(
        None, None, "{{function_node SaveV2}} /root/x/part-0.tempstate1; No space left on device [Op:SaveV2]")
    assert str(storage.disk_error(reported)) == "[Errno 28] No space left on device: '/root/x/part-0.tempstate1'"
    try:
        try:
            raise OSError(27, "File too large")  # a worker's write names no file
        except OSError as e:
            raise RuntimeError("OSError: [Errno 27] File too large [while running 'Write']") from e
    except RuntimeError as wrapped:
        assert str(storage.disk_error(wrapped, "/root/ExampleGen")) == "[Errno 27] File too large: '/root/ExampleGen'"
    assert storage.disk_error(ValueError("a bad value")) is None
    assert storage.disk_error(OSError(13, "Permission denied", "/root")) is None
