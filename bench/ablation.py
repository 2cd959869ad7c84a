"""Why does one pass per sequence generalise worse than separate prefixes? Controlled SASRec runs on Beauty.

Each row changes one thing against another row, on the same data, seed, model and loss
(full softmax, RecBole's SASRec), and runs ``python -m pipeline.run`` with the row's flags
through the Evaluator; ``default`` is the command with no flag at all. Results accumulate in
``bench/results/ablation.json``, rewritten after each row, with the row's command so that
anyone can run it again.

    python bench/ablation.py                      # every row not yet in the results
    python bench/ablation.py --rows one_pass prefixes --force
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SOURCES, WORK, command_of, machine, read_results, run_measured, write_results  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Row:
    """One controlled run: ``flags`` on top of the dataset's and :data:`COMMON`'s."""

    name: str
    question: str
    flags: dict
    dataset: str = "beauty"


# The settings these rows were run with that today's sasrec defaults (its train_defaults) change.
BEFORE = {"epochs": 200, "batch_by": "sequences", "lr_decay_patience": 0}
ROWS = (
    Row("one_pass", "the fast layout as it was: 256 whole sequences per step", {**BEFORE}),
    Row("prefixes", "RecBole's layout: 128 separate prefixes per step, a dropout draw each",
        {**BEFORE, "all_positions": False, "batch_size": 128}),
    Row("prefixes_2048", "prefixes with one-pass's step count (~1,800 targets per step)",
        {**BEFORE, "all_positions": False, "batch_size": 2048}),
    Row("one_pass_16", "one pass, 16 sequences per step: as many steps as prefixes, uneven targets",
        {**BEFORE, "batch_size": 16}),
    Row("one_pass_t128", "one pass, 128 targets per step: prefixes' steps and weights, shared dropout",
        {**BEFORE, "batch_by": "targets", "batch_size": 128}),
    Row("one_pass_t256", "one pass, 256 targets per step", {**BEFORE, "batch_by": "targets", "batch_size": 256}),
    Row("one_pass_t512", "one pass, 512 targets per step", {**BEFORE, "batch_by": "targets", "batch_size": 512}),
    Row("one_pass_t256_decay", "one pass, 256 targets per step, learning rate x0.3 after 2 flat epochs",
        {**BEFORE, "batch_by": "targets", "batch_size": 256, "lr_decay_patience": 2}),
    Row("one_pass_t128_decay", "one pass, 128 targets per step, learning rate x0.3 after 2 flat epochs",
        {**BEFORE, "batch_by": "targets", "batch_size": 128, "lr_decay_patience": 2}),
    Row("one_pass_no_dropout", "one pass without dropout (nothing shared between prefixes)",
        {**BEFORE, "batch_by": "targets", "batch_size": 128, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}),
    Row("prefixes_no_dropout", "prefixes without dropout: the control of one_pass_no_dropout",
        {**BEFORE, "all_positions": False, "batch_size": 128, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}),
    Row("default", "today's defaults: the command a user types", {}),
    Row("ml100k_before", "ml-100k: the one-pass defaults as they were", {**BEFORE}, dataset="ml-100k"),
    Row("ml100k_default", "ml-100k: today's defaults", {}, dataset="ml-100k"),
    Row("synthetic_before", "the generated log: the one-pass defaults as they were", {**BEFORE}, dataset="synthetic"),
    Row("synthetic_default", "the generated log: today's defaults", {}, dataset="synthetic"),
)
BY_NAME = {row.name: row for row in ROWS}


def settings_of(row: Row, seed: int) -> dict:
    return {**SOURCES.get(row.dataset, {}), "model": "sasrec", **row.flags, "seed": seed}  # synthetic: no input


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=sorted(BY_NAME), default=[row.name for row in ROWS])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--force", action="store_true", help="run rows already in the results again")
    args = parser.parse_args(argv)
    for name in args.rows:
        row = BY_NAME[name]
        key = f"{name}/seed{args.seed}"
        if key in read_results("ablation").get("rows", {}) and not args.force:
            continue
        settings = settings_of(row, args.seed)
        root = WORK / "ablation" / key
        shutil.rmtree(root, ignore_errors=True)
        print(f"== {key}: {command_of(settings)}", flush=True)
        _, measured = run_measured(settings, root)
        results = read_results("ablation")  # rows another run of this script wrote meanwhile are kept
        results["machine"] = machine()
        results["order"] = [r.name for r in ROWS]
        results.setdefault("rows", {})[key] = {"row": name, "question": row.question, "flags": row.flags,
                                               "seed": args.seed, "command": command_of(settings), **measured}
        write_results("ablation", results)
        print(json.dumps({"row": key, "test_ndcg@10": measured["test"]["ndcg@10"],
                          "wall_seconds": round(measured["wall_seconds"])}), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
