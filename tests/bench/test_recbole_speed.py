"""bench/recbole_speed.py without RecBole: Beauty as RecBole's atomic file, and the quality figures it reads."""

from __future__ import annotations

from pathlib import Path

from bench import recbole_speed


def test_sequences_become_atomic_rows_in_their_order(tmp_path: Path):
    sequences = tmp_path / "Beauty.txt"
    sequences.write_text("1 10 11 12\n2 11 10\n\n3 12 13 14 15 16\n")
    inter = tmp_path / "atomic" / "beauty" / "beauty.inter"

    written = recbole_speed.write_atomic(sequences, inter)

    assert written == {"users": 3, "interactions": 10}  # 3 + 2 + 5 items; the blank line is no user
    lines = inter.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    # the timestamp is the position in the user's sequence, so RecBole's time order is the file's
    assert lines[1:6] == ["1\t10\t0", "1\t11\t1", "1\t12\t2", "2\t11\t0", "2\t10\t1"]
    assert lines[-1] == "3\t16\t4"
    assert not inter.with_suffix(".tmp").exists()


def test_a_smoke_subset_keeps_the_first_users(tmp_path: Path):
    sequences = tmp_path / "Beauty.txt"
    sequences.write_text("1 10 11\n2 11 10\n3 12 13\n")
    inter = tmp_path / "beauty.inter"
    assert recbole_speed.write_atomic(sequences, inter, max_users=2) == {"users": 2, "interactions": 4}
    assert [line.split("\t")[0] for line in inter.read_text().splitlines()[1:]] == ["1", "1", "2", "2"]


def results_with(prefixes: float, one_pass_seeds: list[float]) -> dict:
    return {
        "quality": {"runs": {"beauty/sasrec/softmax/prefixes": {"test": {"ndcg@10": prefixes}}}},
        "ablation": {"rows": {f"one_pass_t128/seed{i}": {"row": "one_pass_t128", "test": {"ndcg@10": v}}
                              for i, v in enumerate(one_pass_seeds)}},
        "notes": {"published_floors": {"source": "RecBole", "rows": [{"model": "sasrec", "ndcg@10": 0.042}]}},
    }


def timed(recbole: float, prefixes: float, one_pass: float) -> dict:
    return {"sasrec/recbole": {"seconds_per_epoch": recbole, "cpu_seconds_per_epoch": 2 * recbole},
            "sasrec/tfseq/prefixes": {"seconds_per_epoch": prefixes, "cpu_seconds_per_epoch": 2 * prefixes},
            "sasrec/tfseq/one_pass_t128": {"seconds_per_epoch": one_pass, "cpu_seconds_per_epoch": 2 * one_pass}}


def test_quality_is_read_from_the_result_files_and_averaged_over_seeds():
    quality = recbole_speed.quality_section(["sasrec", "gru4rec"], results_with(0.0422, [0.040, 0.044]))
    sasrec = quality["sasrec"]
    assert sasrec["recbole_published"]["test_ndcg@10"] == 0.042
    assert sasrec["tfseq"]["prefixes"]["test_ndcg@10"] == 0.0422
    assert abs(sasrec["tfseq"]["one_pass_t128"]["test_ndcg@10"] - 0.042) < 1e-12  # (0.040 + 0.044) / 2
    assert len(sasrec["tfseq"]["one_pass_t128"]["sources"]) == 2
    # nothing recorded for gru4rec: no figure is made up
    assert quality["gru4rec"] == {"recbole_published": None,
                                  "tfseq": {"prefixes": None, "one_pass_t128": None, "default": None}}


def test_equal_quality_is_the_fastest_layout_that_reaches_recboles_figure():
    runs = timed(recbole=200.0, prefixes=40.0, one_pass=10.0)

    # both reach 0.042: the faster one, one pass, at 200 / 10 = 20x
    both = recbole_speed.quality_section(["sasrec"], results_with(0.0422, [0.042]))
    assert recbole_speed.equal_quality(both, runs)["sasrec"]["layout"] == "one_pass_t128"
    assert recbole_speed.equal_quality(both, runs)["sasrec"]["speedup_vs_recbole"] == 20.0

    # one pass falls short (0.0404 < 0.042): prefixes, at 200 / 40 = 5x
    short = recbole_speed.quality_section(["sasrec"], results_with(0.0422, [0.0404]))
    answer = recbole_speed.equal_quality(short, runs)["sasrec"]
    assert (answer["layout"], answer["speedup_vs_recbole"], answer["cpu_speedup_vs_recbole"]) == ("prefixes", 5.0, 5.0)

    # neither reaches it: no ratio is claimed
    none = recbole_speed.quality_section(["sasrec"], results_with(0.0410, [0.0404]))
    assert recbole_speed.equal_quality(none, runs)["sasrec"] == {"layout": None, "recbole_published_ndcg@10": 0.042}
