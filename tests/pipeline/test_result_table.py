"""The result table pipeline.run prints: each figure once, named so that no two rows read alike."""

from __future__ import annotations

from pipeline.evaluator import format_table
from pipeline.pipeline import PipelineResult


def metrics(hit_equals_recall: bool) -> dict:
    split = {"recall@10": 0.1, "hit@10": 0.1 if hit_equals_recall else 0.3, "mrr@10": 0.05, "map@10": 0.05,
             "ndcg@10": 0.06, "mrr": 0.07, "num_users": 5}
    return {"model": "sasrec", "loss": "softmax", "best_epoch": 3, "train_seconds": 1.0,
            "valid": dict(split), "test": dict(split)}


def test_rows_equal_with_one_target_are_shown_once_and_explained():
    table = format_table(metrics(hit_equals_recall=True))
    labels = [line[:16].split() for line in table.splitlines()[2:] if line.startswith(("valid", "test"))]
    assert len(labels) == len({tuple(x) for x in labels})  # no row printed twice
    assert ["valid", "hit"] not in labels and ["test", "map"] not in labels
    assert ["test", "mrr@all"] in labels and "hit = recall, map = mrr" in table


def test_a_row_that_differs_is_kept():
    labels = format_table(metrics(hit_equals_recall=False))
    assert "valid hit " in labels and "hit = recall" not in labels


def test_a_data_only_run_prints_no_run_folder(tmp_path):
    result = PipelineResult(root=str(tmp_path), run="sasrec-softmax-00000000",
                            stages={"ExampleGen": "ran", "Transform": "ran"}, metrics=None, pushed=None)
    assert result.summary() == f"data: {tmp_path}/Transform"


def test_evaluation_progress_says_how_many_users_are_ranked_and_how_long_is_left(capsys):
    from pipeline.evaluator import _SplitProgress

    clock = iter([10.0, 40.0, 41.0])
    progress = _SplitProgress("valid", users=1000, items=5000, every=30.0)
    progress._clock = lambda: next(clock)
    progress.start = progress.last = 0.0
    progress(100)  # 10 s: too soon for a line
    progress(400)  # 40 s: 400 of 1000 in 40 s, so about 60 s left
    progress.done()  # 41 s
    assert capsys.readouterr().out.splitlines() == [
        "[Evaluator] valid: 400 of 1,000 users ranked, 40 s, about 60 s left",
        "[Evaluator] valid: 400 users ranked against 5,000 items in 41.0 s",
    ]
