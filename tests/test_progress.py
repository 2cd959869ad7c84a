"""tfseq/training.py's progress lines: what a person sees during training, in a terminal or a log."""

from __future__ import annotations

import io
import types

from tfseq import training


def progress(terminal: bool, every_seconds: float = 0.0) -> tuple[training._Progress, io.StringIO]:
    out = io.StringIO()
    best = types.SimpleNamespace(best_epoch=1)
    return training._Progress(3, 4, "val_ndcg@10", best, terminal=terminal, every_seconds=every_seconds,
                              out=out), out


def test_a_log_gets_plain_step_lines_and_an_epoch_line_with_the_metric_and_time_left():
    callback, out = progress(terminal=False)
    callback.on_epoch_begin(0)
    for step in range(4):
        callback.on_train_batch_end(step, {"loss": 5.0 - step})
    callback.on_epoch_end(0, {"loss": 3.5, "val_ndcg@10": 0.0412})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  step 1/4 of epoch 1/3, loss 5.0000, ") and "left in the epoch" in lines[0]
    assert len(lines) == 5 and "\r" not in out.getvalue()
    assert lines[-1].startswith("epoch 1/3: loss 3.5000, valid ndcg@10 0.0412 (best), ")
    assert lines[-1].endswith(" left")  # two more epochs to go


def test_step_lines_in_a_log_are_throttled():
    callback, out = progress(terminal=False, every_seconds=3600)
    callback.on_epoch_begin(0)
    for step in range(4):
        callback.on_train_batch_end(step, {"loss": 1.0})
    assert out.getvalue() == ""


def test_a_terminal_line_is_rewritten_in_place_and_the_last_epoch_has_no_time_left():
    callback, out = progress(terminal=True)
    callback.best.best_epoch = 2
    callback.on_epoch_begin(2)
    callback._last_line = -1.0  # as if the last redraw was long ago
    callback.on_train_batch_end(0, {"loss": 2.0})
    callback.on_epoch_end(2, {"loss": 2.0, "val_ndcg@10": 0.03})
    text = out.getvalue()
    assert text.startswith("\r  step 1/4 of epoch 3/3")
    last = text.rsplit("\r", 1)[1]
    assert last.startswith("epoch 3/3: loss 2.0000, valid ndcg@10 0.0300, ") and "left" not in last
    assert "(best)" not in last


def test_durations_read_as_clock_times():
    assert [training._clock(s) for s in (42, 125, 3723)] == ["42s", "2:05", "1:02:03"]
