"""tfseq.load(...).recommend: what it takes, and the strings it refuses (issue 23, case 8)."""

from __future__ import annotations

import pytest

from pipeline import run as pipeline_run
from tests.pipeline.test_run import TINY


@pytest.mark.slow
def test_recommend_refuses_a_string_where_a_list_belongs(tmp_path):
    """``recommend("i1 i2")`` read its characters as items; a string of users (hrm reads users) was read
    the same way, one character per history."""
    import tfseq

    result = pipeline_run.run([*TINY, "--epochs", "1", "--model", "hrm", "--output_dir", str(tmp_path / "out"),
                               "--stop_after", "Trainer"])
    recommender = tfseq.load(result.run_dir)
    answer = recommender.recommend([["i1", "i2"], ["i3"]], k=5)
    assert len(answer.item_ids) == 2 and all(len(row) == 5 for row in answer.item_ids)
    for histories in ("i1 i2", b"i1 i2", ["i1 i2"]):
        with pytest.raises(ValueError, match="list of lists of item IDs"):
            recommender.recommend(histories, k=5)
    with pytest.raises(ValueError, match="users must be a list with one entry per history"):
        recommender.recommend([["i1"], ["i2"]], k=5, users="ab")  # two histories, two characters
    with pytest.raises(ValueError, match="k must be an integer"):
        recommender.recommend([["i1"]], k=2.5)
