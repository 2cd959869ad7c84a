"""tfseq's best ID-only Amazon Beauty run, ``configs/beauty_best.yaml``, as a user runs it: masked and unmasked.

Each row is ``python -m pipeline.run --config configs/beauty_best.yaml --input
../shared/datasets/amazon-beauty/Beauty.txt --input_format sequence``, through the Evaluator:
``masked`` as the file sets it (``exclude_history: true``, the protocol of BSARec's paper), and
``unmasked`` with ``--exclude_history false``, its twin (RecBole's protocol). Results accumulate in
``bench/results/beauty_best.json`` with each row's command, seed and wall time, beside the targets
they are held against (:data:`TARGETS`: the best published ID-only figures and the goals set above
them).

    python bench/beauty_best.py                              # both rows, seed 2020
    python bench/beauty_best.py --rows masked --seeds 2021   # a second seed
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO,
    SOURCES,
    WORK,
    command_of,
    machine,
    read_results,
    run_measured,
    write_results,
)

CONFIG = REPO / "configs" / "beauty_best.yaml"
ROWS = {"masked": {}, "unmasked": {"exclude_history": False}}
# Test NDCG@10 / HR@10 on Beauty: the best published ID-only results (BSARec, Shin et al., AAAI 2024,
# masked; RecBole's SASRec, unmasked) and the goals tfseq set itself above them.
TARGETS = {
    "masked": {"published": {"ndcg@10": 0.0611, "hit@10": 0.1008, "valid_ndcg@10": 0.0753,
                             "source": "BSARec (Shin et al., AAAI 2024); valid: the best epoch of the authors' "
                                       "log, src/output/BSARec_Beauty_best.log in yehjin-shin/BSARec"},
               "goal": {"ndcg@10": 0.065, "hit@10": 0.105}},
    "unmasked": {"published": {"ndcg@10": 0.0443, "source": "DuoRec in RecBole's Beauty setting"},
                 "goal": {"ndcg@10": 0.047}},
}


def main(argv: list[str] | None = None) -> int:
    from pipeline.cli import load_config_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--force", action="store_true", help="run rows already in the results again")
    args = parser.parse_args(argv)
    file_settings = load_config_file(str(CONFIG))
    for seed in args.seeds:
        for name in args.rows:
            key = f"{name}/seed{seed}"
            if key in read_results("beauty_best").get("runs", {}) and not args.force:
                continue
            flags = {**SOURCES["beauty"], **ROWS[name], "seed": seed}
            command = command_of(flags).replace("pipeline.run", "pipeline.run --config configs/beauty_best.yaml", 1)
            root = WORK / "beauty_best" / key
            shutil.rmtree(root, ignore_errors=True)
            print(f"== {key}: {command}", flush=True)
            _, measured = run_measured({**file_settings, **flags}, root)
            results = read_results("beauty_best")
            results.update(machine=machine(), config=file_settings, targets=TARGETS)
            results.setdefault("runs", {})[key] = {"row": name, "seed": seed, "command": command, **measured}
            write_results("beauty_best", results)
            print(json.dumps({"row": key, "test_ndcg@10": round(measured["test"]["ndcg@10"], 4),
                              "test_hit@10": round(measured["test"]["recall@10"], 4),
                              "wall_seconds": round(measured["wall_seconds"])}), flush=True)
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
