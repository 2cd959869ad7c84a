"""Every registry model with its defaults only, against ``pop``: does each one learn on a dataset?

Each row is ``python -m pipeline.run --input <dataset> --model <model>`` with no other flag (the
feature models also get the dataset's item table, which they need), through the Evaluator, on
tfseq's leave-one-out split (full ranking, unmasked). The data stages are shared per dataset under
``WORK``; each run trains afresh. Results accumulate in ``bench/results/defaults.json`` with each
row's command, rewritten after every row.

    python bench/defaults.py                          # every model on ml-100k, seed 2020
    python bench/defaults.py --models core_ave pop --seed 2021
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DATASETS,
    SOURCES,
    WORK,
    command_of,
    machine,
    read_results,
    run_measured,
    write_results,
)
from tfseq.models import MODELS  # noqa: E402

# the item table the feature models (sasrec_f, difsr) read, per dataset
ITEM_FEATURES: dict[str, dict[str, Any]] = {
    "ml-100k": {"item_features": str(DATASETS / "ml-100k" / "ml-100k.item")},
    "beauty": {"item_features": str(DATASETS / "amazon-beauty" / "Beauty_item2attributes.json")},
}
KEPT = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "num_users")


def settings_of(model: str, dataset: str, seed: int) -> dict[str, Any]:
    features = ITEM_FEATURES[dataset] if getattr(MODELS.get(model).config_cls, "uses_item_features", False) else {}
    return {**SOURCES[dataset], **features, "model": model, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS.names()), default=sorted(MODELS.names()))
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(SOURCES))
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--force", action="store_true", help="run rows already in the results again")
    args = parser.parse_args(argv)
    for model in args.models:
        key = f"{args.dataset}/{model}/seed{args.seed}"
        if key in read_results("defaults").get("runs", {}) and not args.force:
            continue
        settings = settings_of(model, args.dataset, args.seed)
        root = WORK / "defaults" / args.dataset
        shutil.rmtree(root / "runs", ignore_errors=True)  # the data stages are shared; a run trains afresh
        print(f"== {key}: {command_of(settings)}", flush=True)
        _, measured = run_measured(settings, root)
        for split in ("valid", "test"):
            measured[split] = {k: v for k, v in measured[split].items() if k in KEPT}
        results = read_results("defaults")
        results["machine"] = machine()
        results.setdefault("runs", {})[key] = {"dataset": args.dataset, "model": model, "seed": args.seed,
                                               "command": command_of(settings), **measured}
        write_results("defaults", results)
        print(json.dumps({"row": key, "test_ndcg@10": round(measured["test"]["ndcg@10"], 4),
                          "wall_seconds": round(measured["wall_seconds"])}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
