"""RESULTS.md from the benchmark results in bench/results/*.json: every table, and the notes that explain them.

    python bench/report.py            # prints the page
    python bench/report.py --write    # rewrites RESULTS.md
    python bench/report.py --check    # exits 1 when RESULTS.md is not what the JSON gives

The benchmarks in bench/ write the JSON; ``bench/results/notes.json`` holds the few figures
recorded by hand, each with the command it came from. The text that explains a table lives
here, beside the code that draws it, so RESULTS.md is never edited by hand (a test checks that
it equals this script's output). This module imports only the standard library: neither
TensorFlow nor tfseq.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "RESULTS.md"
MODELS = ("pop", "gru4rec", "sasrec", "bsarec", "core_ave", "core_trm", "sasrec_f", "difsr", "cnn", "lstm", "pooling",
          "hrm")
LOSSES = ("softmax", "sampled_softmax", "bpr", "hinge", "adaptive_hinge")
DATASET_NAMES = {"beauty": "Amazon Beauty", "ml-100k": "ml-100k"}

Results = dict[str, Any]


def load_all(results: Path = RESULTS) -> dict[str, Results]:
    """Every ``results/<name>.json`` by name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(results.glob("*.json"))}


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def f4(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def pct(value: float) -> str:
    return f"{value:+.1%}".replace("-", "−")


def ratio(value: float | None, floor: float | None) -> str:
    return f"{value / floor:.2f}×" if value is not None and floor else "–"


def label(model: str, tag: list[str] | str | None) -> str:
    tag = ", ".join(tag) if isinstance(tag, list) else tag
    return f"`{model}`" + (f" ({tag})" if tag else "")


# --- quality.json -------------------------------------------------------------------------------------

QUALITY_NOTE = """\
`python bench/quality.py` (BUILD.md shows the flags of the tagged rows). RecBole's protocol:
leave-one-out, full ranking over every item, histories of at most 50 items, no history masking
except in the "history masked" column. Learning rate 0.001 and batches of 256 sequences unless
the row's tag says otherwise. Each run is capped by its `epochs` and `patience` (in its
`config` in quality.json), so a best epoch near the cap means the model was still improving.
"× pop" is test NDCG@10 over `pop`'s. "train s" is wall time, some of it beside other jobs:
take speed from [Training speed](#training-speed). Tags: `prefixes` trains RecBole's separate
(prefix, next item) examples (`--all_positions false`), each with its own dropout draw, in
batches of 128 prefixes on Beauty (the batch of RecBole's published runs) and 2,048 on ml-100k;
`bs50` is batches of 50 sequences on ml-100k, about RecBole's 2,048 targets per optimizer step.
`sampled_softmax` has 256 uniform negatives plus in-batch negatives within chunks of at most
2,048 targets; `bpr` one uniform negative per target, as RecBole's BPR."""

LAYOUT_NOTE = """\
The default layout trains every position of a sequence in one pass, with one dropout draw for
all its prefixes: the fast choice for iterating. The `prefixes` layout is RecBole's and is what
reaches RecBole's published figures: use it for final numbers. CORE scores a weighted mean of
the session's own items by cosine, so the items just seen rank near the top, which the unmasked
protocol counts as misses (no Beauty test target is already in its user's history): compare
CORE in the masked column."""


def quality_table(runs: dict[str, Any], dataset: str) -> str:
    rows = []
    pop = runs.get(f"{dataset}/pop/softmax", {}).get("test", {}).get("ndcg@10")
    for key in sorted(k for k in runs if k.startswith(f"{dataset}/")):
        _, model, loss, *tag = key.split("/", 3)
        run = runs[key]
        rows.append((
            MODELS.index(model) if model in MODELS else 99, LOSSES.index(loss) if loss in LOSSES else 9, [
                label(model, tag), loss, f4(run["valid"]["ndcg@10"]), f4(run["test"]["ndcg@10"]),
                ratio(run["test"]["ndcg@10"], pop), f4(run["test"]["recall@10"]), f4(run["test"]["mrr@10"]),
                f4(run.get("test_exclude_seen", {}).get("ndcg@10")), str(run.get("best_epoch", "–")),
                f"{run.get('train_seconds', 0):.0f}",
            ]))
    rows.sort(key=lambda r: (r[0], r[1]))
    header = ["model", "loss", "valid NDCG@10", "test NDCG@10", "× pop", "test Recall@10", "test MRR@10",
              "test NDCG@10, history masked", "best epoch", "train s"]
    return table(header, [r[2] for r in rows])


def dataset_title(runs: dict[str, Any], dataset: str) -> str:
    """``Amazon Beauty (22,363 test users)``, from the test split's user count."""
    users = next((r["test"].get("num_users") for k, r in runs.items() if k.startswith(f"{dataset}/")), None)
    name = DATASET_NAMES.get(dataset, dataset)
    return f"{name} ({users:,.0f} test users)" if users else name


def published_floors(runs: dict[str, Any], notes: Results) -> str:
    floors = notes["published_floors"]
    rows = []
    for floor in floors["rows"]:
        run = runs.get(floor["tfseq_run"])
        if run is None:
            continue
        test = run["test"]
        recall_ok = floor["recall@10"] is None or test["recall@10"] >= floor["recall@10"]
        reached = "yes" if test["ndcg@10"] >= floor["ndcg@10"] and recall_ok else "no"
        _, model, _, *tag = floor["tfseq_run"].split("/", 3)
        rows.append([label(model, tag), f"{f4(floor['ndcg@10'])} / {f4(floor['recall@10'])}",
                     f"{f4(test['ndcg@10'])} / {f4(test['recall@10'])}",
                     f4(run.get("test_exclude_seen", {}).get("ndcg@10")), reached])
    for best in floors.get("best_published", []):
        run = runs.get(best["tfseq_run"])
        if run is None:
            continue
        ours = run["test_exclude_seen" if best["masked"] else "test"]["ndcg@10"]
        _, model, _, *tag = best["tfseq_run"].split("/", 3)
        rows.append([f"{best['what']}: {label(model, tag)}", f"{f4(best['ndcg@10'])} / –",
                     f"{f4(ours)} ({'masked' if best['masked'] else 'unmasked'})", "", pct(ours / best["ndcg@10"] - 1)])
    return (f"Against {floors['source']}, {floors['metric']} (`notes.json`):\n\n"
            + table(["tfseq row", "published", "tfseq", "tfseq, history masked", "reached"], rows))


def recbole_runs(runs: dict[str, Any], notes: Results) -> str:
    entry = notes["recbole_runs"]
    rows = []
    for row in entry["rows"]:
        ours = runs.get(row["tfseq_run"], {}).get("test", {}).get("ndcg@10")
        _, model, _, *tag = row["tfseq_run"].split("/", 3)
        best = "" if row["best_epoch"] is None else f", best epoch {row['best_epoch']}"
        valid = "" if row["valid_ndcg@10"] is None else f" (valid {f4(row['valid_ndcg@10'])}{best})"
        rows.append([row["dataset"], f"`{row['model']}`", f4(row["test_ndcg@10"]) + valid, label(model, tag),
                     f4(ours)])
    return (f"{entry['command']} (recorded by hand, `notes.json`):\n\n"
            + table(["dataset", "RecBole model", "RecBole test NDCG@10", "tfseq row", "tfseq test NDCG@10"], rows)
            + "\n\nRecBole's `Pop` adds one per batch to an item's count however often the batch holds it; "
            "tfseq's `pop` counts every training occurrence, so \"× pop\" here is measured against the "
            "stronger floor. RecBole's own CORE-ave lands where tfseq's does, half its published floor.")


def validation_gap(runs: dict[str, Any], dataset: str, notes: Results) -> str:
    gaps = [r["valid"]["ndcg@10"] / r["test"]["ndcg@10"] - 1 for k, r in runs.items()
            if k.startswith(f"{dataset}/") and r["test"]["ndcg@10"]]
    if not gaps or min(gaps) <= 0:
        return ""
    split = notes.get("beauty_split") if dataset == "beauty" else None
    text = (f"On {DATASET_NAMES.get(dataset, dataset)} validation NDCG@10 is {min(gaps):.0%} to {max(gaps):.0%} "
            "above test for every model, `pop` included")
    if split:
        count, rare = split["median_training_count"], split["share_seen_fewer_than_5_times"]
        text += (f": the test targets are rarer in training than the validation targets (median training count "
                 f"{count['test_targets']} against {count['valid_targets']}; {rare['test_targets']:.0%} against "
                 f"{rare['valid_targets']:.0%} seen fewer than 5 times)")
    return text + "."


def one_user(runs: dict[str, Any], dataset: str) -> str:
    users = next((r["test"].get("num_users") for k, r in runs.items() if k.startswith(f"{dataset}/")), None)
    if not users:
        return ""
    return (f"{DATASET_NAMES.get(dataset, dataset)}'s test split has {users:,.0f} users, so one user's hit at "
            f"rank 1 moves NDCG@10 by {1 / users:.4f}.")


def quality_section(data: dict[str, Results]) -> str | None:
    quality = data.get("quality")
    if not quality:
        return None
    runs = quality["runs"]
    notes = data.get("notes", {})
    datasets = sorted({k.split("/")[0] for k in runs}, key=lambda d: (d != "beauty", d))
    parts = ["## Quality", QUALITY_NOTE]
    for dataset in datasets:
        parts += [f"{dataset_title(runs, dataset)}:", quality_table(runs, dataset)]
    parts.append(LAYOUT_NOTE)
    if "published_floors" in notes:
        parts.append(published_floors(runs, notes))
    if "recbole_runs" in notes:
        parts.append(recbole_runs(runs, notes))
    parts += [t for t in (validation_gap(runs, d, notes) for d in datasets) if t]
    parts += [t for t in (one_user(runs, d) for d in datasets if d != "beauty") if t]
    return "\n\n".join(parts)


# --- families.json ------------------------------------------------------------------------------------

FAMILIES_NOTE = """\
`python bench/families.py`: Spotlight's sequence models (`cnn`, `lstm`, `pooling`, its
`adaptive_hinge` loss) and MetaSpore's `hrm`, beside `gru4rec` and `sasrec`, at most 30 epochs
with patience 5 (or the row's tag). `spotlight-*` is Spotlight's protocol: a seeded user split
(`--split user --valid_fraction 0.1 --test_fraction 0.1`: validation and test users are unseen
in training, each one's last item is the target), Spotlight's best ML-1M settings, and `mrr`
over the whole catalogue. `loo-*` is leave-one-out with MetaSpore's @20 metrics; ml-100k in
batches of 50 sequences, as the quality table's `bs50` rows. s/epoch was taken beside other jobs.
These rows predate Spotlight's item bias, `pooling`'s window and the families' target batches
(`settings` in families.json holds what each ran with); the next section has today's defaults."""


def families_table(runs_by_key: dict[str, Any], experiment: str) -> str:
    """One experiment of bench/families.py: Spotlight's MRR, or MetaSpore's @20 metrics beside NDCG@10 / pop."""
    runs = {k.split("/", 1)[1].replace("/", " (", 1) + (")" if k.count("/") > 1 else ""): v
            for k, v in runs_by_key.items() if k.startswith(f"{experiment}/")}
    pop = runs.get("pop", {}).get("test", {}).get("ndcg@10")
    rows = []
    for model, run in runs.items():
        test, loss = run["test"], run["settings"].get("loss", "softmax")
        speed = f"{run['seconds_per_epoch']:.1f}" if run.get("seconds_per_epoch") else "–"
        epochs = f"{run['best_epoch']} / {run['epochs_run']}"
        name = f"`{model.split(' ')[0]}`" + (model[len(model.split(' ')[0]):])
        if experiment.startswith("spotlight"):
            rows.append((-test.get("mrr", 0), [name, loss, f4(test.get("mrr")), f4(run["valid"].get("mrr")),
                                               f4(test.get("ndcg@10")), epochs, speed]))
        else:
            rows.append((-test["ndcg@10"], [name, loss, f4(test["ndcg@10"]), ratio(test["ndcg@10"], pop),
                                            f4(test.get("precision@20")), f4(test.get("recall@20")),
                                            f4(test.get("map@20")), f4(test.get("ndcg@20")), epochs, speed]))
    rows.sort(key=lambda r: r[0])
    if experiment.startswith("spotlight"):
        header = ["model", "loss", "test MRR", "valid MRR", "test NDCG@10", "best / run epochs", "s/epoch"]
    else:
        header = ["model", "loss", "test NDCG@10", "× pop", "P@20", "R@20", "MAP@20", "NDCG@20",
                  "best / run epochs", "s/epoch"]
    return table(header, [r[1] for r in rows])


def families_references(runs: dict[str, Any], notes: Results) -> str:
    refs = notes.get("references", {})
    lines = []
    spotlight = refs.get("spotlight_ml1m_test_mrr")
    if spotlight:
        rows = [[f"`{m}`", f4(spotlight.get(m)), f4(runs.get(f"spotlight-ml-100k/{m}", {}).get("test", {}).get("mrr"))]
                for m in ("cnn", "lstm", "pooling", "sasrec") if f"spotlight-ml-100k/{m}" in runs]
        lines.append(f"Against {spotlight['source']} (`notes.json`):\n\n"
                     + table(["model", "Spotlight, ML-1M test MRR", "tfseq, ml-100k test MRR"], rows))
    metaspore = refs.get("metaspore_hrm_over_gru4rec_ndcg@20_ml1m")
    if metaspore:
        ratios = []
        for experiment in sorted({k.split("/")[0] for k in runs if k.startswith("loo-")}):
            hrm, gru = (runs.get(f"{experiment}/{m}", {}).get("test", {}).get("ndcg@20") for m in ("hrm", "gru4rec"))
            if hrm and gru:
                ratios.append(f"{hrm / gru:.2f} on {experiment.removeprefix('loo-')} ({f4(hrm)} against {f4(gru)})")
        if ratios:
            lines.append(f"`hrm`'s test NDCG@20 over `gru4rec`'s: {'; '.join(ratios)}; {metaspore['source']} gives "
                         f"{metaspore['ratio']:.2f}.")
    test_users = runs.get("spotlight-ml-100k/sasrec", {}).get("test", {}).get("num_users")
    if test_users:
        lines.append(f"ml-100k's Spotlight test split holds {test_users:,.0f} users, so its MRRs move by about "
                     f"{1 / test_users:.2f} per user hit in the top ranks.")
    lines.append("Like `core_ave`, `pooling` ranks a long history's own items first (a running mean of them), "
                 "which leave-one-out counts as misses.")
    return "\n\n".join(lines)


def families_section(data: dict[str, Results]) -> str | None:
    families = data.get("families")
    if not families:
        return None
    runs = families["runs"]
    experiments = sorted({k.split("/")[0] for k in runs})
    parts = ["## Spotlight's and MetaSpore's families", FAMILIES_NOTE]
    parts += [f"{e}:\n\n{families_table(runs, e)}" for e in experiments]
    parts.append(families_references(runs, data.get("notes", {})))
    return "\n\n".join(parts)


# --- spotlight_defaults.json --------------------------------------------------------------------------

SPOTLIGHT_DEFAULTS_NOTE = """\
`python bench/spotlight_defaults.py` (the commands below): Spotlight's families on tfseq's
leave-one-out split (full ranking, unmasked), one change per row. `before` restores by flags the
families' defaults before this benchmark: no item bias, the whole history's mean for `pooling`,
Adam at 1e-3 in batches of 256 whole sequences, no learning-rate cut. `default` is today's
defaults: Spotlight's per-item bias, `pooling` over the last 3 items, one pass in steps of about 256
targets, the learning rate cut after 2 flat epochs. Other rows name what they change against one
of those two. Every row stops early on validation NDCG@10 (patience 10, at most 50 epochs) but the
`spotlight_settings` rows, which train a fixed number of epochs as Spotlight does. Wall times were
taken beside other jobs."""

SPOTLIGHT_DEFAULTS_FINDINGS = """\
What held the old defaults back was the step count, not the method: ml-100k's 943 users, cut
into windows of 50, fill about ten batches of 256 whole sequences, so an epoch was about ten
optimizer steps and `lstm` stopped early at `pop`'s level. Steps of 256 targets give hundreds of
steps an epoch. With Spotlight's own settings (the `spotlight_settings` rows), tfseq's `cnn`
lands inside the spread of Spotlight's last epochs and tfseq's `lstm` lands above Spotlight's.
`pooling`'s whole-history mean ranks the history's own items first, and leave-one-out counts each
of them as a miss, so no training setting lifts it clearly above `pop`. A short window of recent
items does. The item bias changes `cnn` within the spread of two seeds."""


def spotlight_defaults_table(runs: dict[str, Any], dataset: str) -> str:
    rows = []
    pop = next((r["test"]["ndcg@10"] for k, r in runs.items() if k.startswith(f"{dataset}/pop/")), None)
    order = {"pop": 0, "cnn": 1, "lstm": 2, "pooling": 3}
    for key, run in runs.items():
        if run["dataset"] != dataset:
            continue
        extra = ", ".join(f"{k} {v}" for k, v in run.get("extra", {}).items())
        loss = run["config"].get("loss", "softmax") if "config" in run else "softmax"
        rows.append(((order.get(run["model"], 9), run["row"], run["seed"], extra), [
            f"`{run['row']}`" + (f" ({extra})" if extra else ""), loss, str(run["seed"]),
            f4(run["valid"]["ndcg@10"]), f4(run["test"]["ndcg@10"]), ratio(run["test"]["ndcg@10"], pop),
            f4(run["test"].get("recall@10")), f"{run['best_epoch']} / {run['epochs_run']}",
            minutes(run["wall_seconds"]), run["question"],
        ]))
    rows.sort(key=lambda r: r[0])
    header = ["row", "loss", "seed", "valid NDCG@10", "test NDCG@10", "× pop", "test HR@10", "best / run epochs",
              "wall", "what it asks"]
    return table(header, [r[1] for r in rows])


def spotlight_reference(results: Results) -> str:
    """Spotlight's own implementation on the same split beside tfseq with the same settings and with its defaults."""
    reference = results.get("reference")
    if not reference:
        return ""
    runs = results["runs"]
    rows = []
    for key, ref in reference["runs"].items():
        dataset, model = key.split("/")
        ours = {k: r for k, r in runs.items() if r["dataset"] == dataset and r["model"] == model}
        same = [r["test"]["ndcg@10"] for r in ours.values() if r["row"] == f"{model}/spotlight_settings"]
        default = [r["test"]["ndcg@10"] for r in ours.values() if r["row"] == f"{model}/default"]
        rows.append([f"`{model}`", dataset, f4(ref["final"]["test"]["ndcg@10"]),
                     f"{f4(ref['best_valid']['test']['ndcg@10'])} (epoch {ref['best_valid']['epoch']})",
                     " / ".join(f4(x) for x in same) or "–", " / ".join(f4(x) for x in default) or "–"])
    header = ["model", "data", "Spotlight, last epoch", "Spotlight, best valid epoch",
              "tfseq, Spotlight's settings", "tfseq, defaults (seeds)"]
    return ("Spotlight's own implementation on the same split (test NDCG@10; `reference` in "
            "spotlight_defaults.json says how it was run: " + reference["about"] + ")\n\n" + table(header, rows))


def spotlight_defaults_section(data: dict[str, Results]) -> str | None:
    results = data.get("spotlight_defaults")
    if not results or not results.get("runs"):
        return None
    runs = results["runs"]
    datasets = [d for d in ("ml-100k", "beauty") if any(r["dataset"] == d for r in runs.values())]
    parts = ["## Spotlight's families: defaults that learn", SPOTLIGHT_DEFAULTS_NOTE]
    parts += [f"{DATASET_NAMES.get(d, d)}:\n\n{spotlight_defaults_table(runs, d)}" for d in datasets]
    parts += [spotlight_reference(results), SPOTLIGHT_DEFAULTS_FINDINGS,
              "Commands:\n\n" + "\n".join(f"- `{k}`: `{r['command']}`" for k, r in sorted(runs.items()))]
    return "\n\n".join(p for p in parts if p)


# --- side_features.json -------------------------------------------------------------------------------

SIDE_NOTE = """\
`python bench/side_features.py`: `difsr`, `sasrec_f` and `sasrec` with item side features.
Amazon Beauty with S3-Rec's attributes (`Beauty_item2attributes.json`) and ml-100k with its
genres (`class`), RecBole's protocol. The Beauty "README command" row is the README's `difsr`
command run as written: `difsr`'s defaults (2 layers × 128, 2 heads, attribute width 128,
`gate` fusion, λ 10, RecBole's separate prefixes in batches of 128, learning rate 1e-3 cut to
0.3× after each 3 epochs without a better validation Recall@20, the best epoch by Recall@20, at
most 40 epochs, patience 10). Rows tagged "NDCG@10 selection, 50 epochs" share every training
setting, so they compare the models. The ml-100k rows ran the authors' 4 × 256 shape (`difsr`'s
default before the Beauty work), every position in one pass."""


def side_features_table(runs_by_key: dict[str, Any], dataset: str) -> str:
    """difsr / sasrec_f / sasrec on one dataset: the issue's metrics, masked NDCG@10, s/epoch, peak RSS."""
    order = ("sasrec", "sasrec_f", "difsr")
    rows = []
    for key in sorted(k for k in runs_by_key if k.startswith(f"{dataset}/")):
        _, model, *tag = key.split("/", 2)
        run = runs_by_key[key]
        test = run["test"]
        rows.append((order.index(model) if model in order else 9, [
            label(model, tag),
            f4(test["ndcg@10"]), f4(test["recall@10"]), f4(test["ndcg@20"]), f4(test["recall@20"]),
            f4(run["test_history_masked"]["ndcg@10"]), f"{run['best_epoch']} / {run['epochs_run']}",
            f"{run['seconds_per_epoch']:.1f}" if run.get("seconds_per_epoch") else "–",
            f"{run['peak_rss_mib']:,.0f}",
        ]))
    rows.sort(key=lambda r: r[0])
    header = ["model", "test NDCG@10", "test Recall@10", "test NDCG@20", "test Recall@20",
              "test NDCG@10, history masked", "best / run epochs", "s/epoch", "peak RSS MiB"]
    return table(header, [r[1] for r in rows])


def difsr_against_authors(runs: dict[str, Any], notes: Results) -> str:
    authors = notes["difsr_authors"]
    run = runs.get(authors["tfseq_run"])
    if run is None:
        return ""
    rows = [[metric, f4(theirs), f4(run["test"][metric]), pct(run["test"][metric] / theirs - 1)]
            for metric, theirs in authors["test"].items()]
    rows.append(["valid recall@20", f4(authors["valid_recall@20"]), f4(run["valid"]["recall@20"]),
                 pct(run["valid"]["recall@20"] / authors["valid_recall@20"] - 1)])
    return (f"The \"{authors['tfseq_run'].split('/')[-1]}\" row against {authors['source']} (`notes.json`; test, "
            "unmasked):\n\n" + table(["metric", "authors", "tfseq", "difference"], rows)
            + "\n\nThe authors' log reads RecBole's own `Amazon_Beauty` files (a `categories` field of other "
            "values, and its order of a user's same-day reviews decides the held-out item); S3-Rec's "
            "`Beauty.txt` has the same counts but no timestamps, so whether both hold out the same items cannot "
            "be checked. Their recipe (batches of 2,048 at learning rate 1e-4 for up to 200 epochs) was not run.")


def difsr_top_slots(runs: dict[str, Any]) -> str:
    rows = [[label(k.split("/")[1], k.split("/", 2)[2:]), f"{r['test_top_slots']['first_item_in_history']:.0%}",
             f"{r['test_top_slots']['first_item_is_last']:.0%}",
             f"{r['test_top_slots']['history_items_in_top_20']:.1f}",
             pct(r["test_history_masked"]["ndcg@10"] / r["test"]["ndcg@10"] - 1)]
            for k, r in sorted(runs.items()) if r.get("test_top_slots")]
    if not rows:
        return ""
    return ("Where the recall goes: no held-out Beauty item repeats an item of its user's history, yet `difsr` "
            "puts history items at the top (`test_top_slots`). Its query is built from the history's item "
            "embeddings alone (attributes and positions only weight the attention) and the residual path carries "
            "the last item's embedding to it, so masking the history (`--exclude_history`) lifts it:\n\n"
            + table(["run", "first item from the history", "first item is the last one",
                     "history items in the top 20", "masked NDCG@10 over unmasked"], rows))


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60)} s"


def difsr_readme_command(runs: dict[str, Any], notes: Results) -> str:
    entry = notes["difsr_readme_command"]
    run = runs.get(entry["tfseq_run"], {})
    stages = ", ".join(f"{stage} {seconds:,} s" for stage, seconds in entry["stage_seconds"].items())
    earlier = "; ".join(f"{when}: {minutes(seconds)}" for when, seconds in entry["wall_seconds_earlier"].items())
    wall = run.get("wall_seconds")
    total = minutes(wall) if wall else "–"
    return (f"The README command took {total} wall ({stages}; recorded by hand, `notes.json`); earlier, with the "
            f"same losses and metrics, {earlier} (see [Training speed](#training-speed)).")


def difsr_trials(notes: Results) -> str:
    entry = notes["difsr_trials"]
    rows = [[r["trial"], r["result"], "–" if r["seconds_per_epoch"] is None else str(r["seconds_per_epoch"]),
             r["note"]] for r in entry["rows"]]
    return (f"Other DIF-SR trials on Beauty, not run to the end or untimed ({entry['command']}; recorded by hand, "
            "`notes.json`):\n\n" + table(["trial", "result", "s/epoch", "note"], rows))


def side_section(data: dict[str, Results]) -> str | None:
    side = data.get("side_features")
    if not side:
        return None
    runs, notes = side["runs"], data.get("notes", {})
    datasets = sorted({k.split("/")[0] for k in runs}, key=lambda d: (d != "beauty", d))
    parts = ["## Item side features", SIDE_NOTE]
    parts += [f"{dataset_title(runs, d)}:\n\n{side_features_table(runs, d)}" for d in datasets]
    if "difsr_authors" in notes:
        parts.append(difsr_against_authors(runs, notes))
    parts.append(difsr_top_slots(runs))
    if "difsr_readme_command" in notes:
        parts.append(difsr_readme_command(runs, notes))
    if "difsr_trials" in notes:
        parts.append(difsr_trials(notes))
    return "\n\n".join(p for p in parts if p)


# --- train_speed.json ---------------------------------------------------------------------------------

SPEED_NOTE = """\
`python bench/train_speed.py`: softmax loss, batches of 256 sequences unless "prefixes" (batches
of 128 prefixes), the steady-state epoch (the one after the first, which traces the graphs),
full-ranking evaluation of the validation split after a warm-up pass, and the process's peak
resident memory. The machine's speed varies between days by up to 2×: compare rows of one table,
not rows of different tables."""

FLOOR_NOTE = """\
The full softmax alone, per epoch (random queries of the epoch's shape, 64 wide): every model
trained with `softmax` pays at least this much per epoch whatever its encoder, so a GRU4Rec
epoch on Beauty is mostly the softmax. tfseq keeps float32 (see the bfloat16 row below)."""


def speed_table(results: Results) -> str:
    rows = []
    for key, run in sorted(results["runs"].items()):
        dataset, model, *tag = key.split("/", 2)
        epoch = run.get("seconds_per_epoch")
        rows.append([dataset, label(model, tag), "–" if epoch is None else f"{epoch:.1f}",
                     "–" if epoch is None else f"{run['train_targets_per_second']:,.0f}",
                     f"{run['eval_seconds']:.2f}", f"{run['eval_users_per_second']:,.0f}",
                     f"{run['peak_rss_mib']:,.0f}"])
    return table(["dataset", "model", "s/epoch", "train targets/s", "eval s (valid)", "eval users/s",
                  "peak RSS MiB"], rows)


def floor_table(floors: dict[str, Any]) -> str:
    rows = [[dataset, f"{f['batches']} × {f['targets_per_batch']:,} × {f['items']:,}",
             f"{f['loss_seconds_per_epoch']:.1f}", f"{f['matmul_seconds_per_epoch']:.1f}",
             f"{f['matmul_gflops_per_second']:.0f}"] for dataset, f in sorted(floors.items())]
    return table(["dataset", "batches × targets × items", "loss + gradients s", "its 3 float32 matmuls s",
                  "matmul GFLOP/s"], rows)


def speed_targets(results: Results) -> str:
    """The targets of one-pass Beauty runs: a ``sasrec`` epoch, and full-ranking evaluation of every user."""
    runs = results["runs"]
    parts = []
    sasrec = runs.get("beauty/sasrec", {})
    if sasrec.get("targets", {}).get("sasrec") and sasrec.get("seconds_per_epoch"):
        target, value = sasrec["targets"]["sasrec"], sasrec["seconds_per_epoch"]
        met = "met" if value < target else "missed"
        parts.append(f"a Beauty `sasrec` epoch under {target:g} s ({value:.1f} s, {met})")
    evals = [(r["eval_seconds"], r["targets"]["eval_seconds"], r.get("eval_users")) for k, r in runs.items()
             if k.startswith("beauty/") and "eval_seconds" in r.get("targets", {})]
    if evals:
        slowest, target, users = max(evals)
        who = f"of Beauty's {users:,} users" if users else "of Beauty's users"
        parts.append(f"full-ranking evaluation {who} under {target:g} s (at most {slowest:.2f} s, "
                     f"{'met' if slowest < target else 'missed'})")
    if not parts:
        return ""
    return ("Targets: " + "; ".join(parts) + ". The former 5 s target for a Beauty `gru4rec` epoch was dropped: "
            "the full softmax alone takes most of it.")


def speed_changes(notes: Results) -> str:
    entry = notes["speed_changes"]
    rows = []
    for change, group in itertools.groupby(entry["rows"], key=lambda r: r["change"]):
        for i, r in enumerate(group):
            before = r["before"] if isinstance(r["before"], str) else f"{r['before']:,g}"
            after = "–" if r["after"] is None else r["after"] if isinstance(r["after"], str) else f"{r['after']:,g}"
            rows.append([change if i == 0 else "", r["measure"], before, after])
    return (f"Changes that moved these figures ({entry['command']}; {entry['timings']}; recorded by hand, "
            "`notes.json`):\n\n" + table(["change", "measure", "before", "after"], rows))


def default_command(notes: Results) -> str:
    entry = notes.get("default_command")
    if not entry:
        return ""
    return (f"The README's first command (`{entry['command']}`) took {entry['wall_seconds']:.0f} s from ExampleGen "
            f"to Pusher ({entry['trainer_seconds']:.0f} s of training, {entry['epochs']} epochs), peak memory "
            f"{entry['peak_rss_mib']:,} MiB, on {entry['machine']} ({entry['date']}).")


def speed_section(data: dict[str, Results]) -> str | None:
    speed = data.get("train_speed")
    if not speed:
        return None
    notes = data.get("notes", {})
    parts = ["## Training speed", default_command(notes), SPEED_NOTE, speed_table(speed)]
    if speed.get("softmax_floor"):
        parts += [FLOOR_NOTE, floor_table(speed["softmax_floor"])]
    parts.append(speed_targets(speed))
    if "speed_changes" in notes:
        parts.append(speed_changes(notes))
    return "\n\n".join(p for p in parts if p)


# --- ablation.json ------------------------------------------------------------------------------------

ABLATION_NOTE = """\
`python bench/ablation.py`: SASRec with the full softmax on Amazon Beauty, one seed, each row the
command below it changes against another row (`--rows NAME` runs one). "targets/step" is how a
batch is filled: `N seq` whole sequences (their targets vary), `N tgt` as many sequences as fit in
N targets (`--batch_by targets`), `N pre` separate prefixes (`--all_positions false`). Other jobs
shared the 2 cores, so the wall times are upper bounds."""

ABLATION_FINDINGS = """\
What the rows say:

- **Not the number of steps.** `prefixes_2048` gives an epoch about as few steps as `one_pass`
  (65 against 88) and as many targets per step, yet it reaches the figure of prefixes in batches
  of 128.
- **The weight of a long sequence's targets.** What `one_pass` does differently from
  `prefixes_2048` is how a step weighs its targets. Its batches hold 256 sequences grouped by
  length, and each averages its loss over its own targets: from 2 per sequence to 50 (one window),
  so a target in a batch of long sequences counts up to 25 times less than one in a batch of short
  ones. Batches filled with a fixed number of targets (`one_pass_t512`, `one_pass_t128`) weigh
  every target alike and recover most of the gap.
- **The rest is the shared dropout draw.** With 128 targets per step, one pass has the prefixes'
  weights and about their number of steps; what is left against `prefixes` is that a sequence's
  prefixes share one dropout draw and one step.
- **The rate cut makes it fast.** With 256 targets per step, one pass reaches the prefixes' figure
  after many epochs (`one_pass_t256`); cutting the learning rate after 2 flat epochs
  (`one_pass_t256_decay`) reaches it in about half of them. That is today's default (`default`,
  and on ml-100k `ml100k_default` against `ml100k_before`)."""


ABLATION_EARLIER_PREFIXES = "beauty/sasrec/softmax/prefixes"  # the same settings, run before ablation.py existed
ABLATION_DATASETS = {"amazon-beauty": "Beauty", "ml-100k": "ml-100k"}


def ablation_layout(config: dict[str, Any]) -> str:
    if config.get("all_positions") is False:
        return f"{config['batch_size']} pre"
    return f"{config['batch_size']} {'tgt' if config.get('batch_by') == 'targets' else 'seq'}"


def ablation_section(data: dict[str, Results]) -> str | None:
    results = data.get("ablation")
    if not results or not results.get("rows"):
        return None
    order = {name: i for i, name in enumerate(results.get("order", []))}
    runs = list(results["rows"].values())
    earlier = data.get("quality", {}).get("runs", {}).get(ABLATION_EARLIER_PREFIXES)
    if earlier and not any(run["row"] == "prefixes" for run in runs):
        runs.append({**earlier, "row": "prefixes", "seed": earlier["config"]["seed"], "epochs_run": None,
                     "dataset": "Beauty",
                     "seconds_per_epoch": None, "question": "RecBole's layout: 128 separate prefixes per step "
                     f"(run by bench/quality.py as `{ABLATION_EARLIER_PREFIXES}`)",
                     "command": "python bench/ablation.py --rows prefixes"})
    rows, commands = [], []
    for run in sorted(runs, key=lambda run: (order.get(run["row"], 99), run["seed"])):
        config = run["config"]
        dataset = run.get("dataset") or next(
            (name for key, name in ABLATION_DATASETS.items() if key in run["command"]), "generated")
        per_epoch = run["seconds_per_epoch"]
        rows.append([f"`{run['row']}`", dataset, str(run["seed"]), ablation_layout(config),
                     "yes" if config.get("lr_decay_patience") else "no", f4(run["valid"]["ndcg@10"]),
                     f4(run["test"]["ndcg@10"]), f"{run['best_epoch']} / {run['epochs_run'] or '–'}",
                     "–" if per_epoch is None else f"{per_epoch:.1f}", minutes(run["wall_seconds"]),
                     run["question"]])
        commands.append(f"- `{run['row']}` (seed {run['seed']}): `{run['command']}`")
    header = ["row", "data", "seed", "targets/step", "rate cut", "valid NDCG@10", "test NDCG@10",
              "best / run epochs", "s/epoch", "wall", "what it asks"]
    parts = ["## One pass against separate prefixes", ABLATION_NOTE, table(header, rows),
             beauty_default_command(data.get("notes", {})), ABLATION_FINDINGS,
             "Commands:\n\n" + "\n".join(dict.fromkeys(commands))]
    return "\n\n".join(p for p in parts if p)


def beauty_default_command(notes: Results) -> str:
    """The default Beauty command as a user types it, timed whole (recorded by hand in notes.json)."""
    entry = notes.get("beauty_default_command")
    if not entry:
        return ""
    return (f"The default command as a user types it, `{entry['command']}`, {entry['how']}: test NDCG@10 "
            f"{f4(entry['test_ndcg@10'])} (HR@10 {f4(entry['test_hit@10'])}), best epoch {entry['best_epoch']} of "
            f"{entry['epochs']}, {minutes(entry['wall_seconds'])} in all ({minutes(entry['trainer_seconds'])} of "
            f"it the Trainer), seed {entry['seed']}, commit {entry['commit']}, {entry['date']} (recorded by hand, "
            "`notes.json`).")


# --- defaults.json -------------------------------------------------------------------------------------

DEFAULTS_NOTE = """\
`python bench/defaults.py`: every registry model with its defaults only (`python -m pipeline.run
--input <dataset> --model <model>`; `sasrec_f` and `difsr` also get the dataset's item table),
leave-one-out, full ranking, unmasked. "× pop" is the model's test NDCG@10 over `pop`'s; one user's
hit in the top 10 moves NDCG@10 by at most 1 / users."""


def defaults_section(data: dict[str, Results]) -> str | None:
    results = data.get("defaults")
    if not results or not results.get("runs"):
        return None
    parts = ["## Every model with its defaults", DEFAULTS_NOTE]
    runs = results["runs"]
    for dataset in sorted({run["dataset"] for run in runs.values()}):
        mine = {k: r for k, r in runs.items() if r["dataset"] == dataset}
        pop = next((r["test"]["ndcg@10"] for r in mine.values() if r["model"] == "pop"), None)
        users = next((r["test"].get("num_users") for r in mine.values()), None)
        rows = sorted(([f"`{r['model']}`", str(r["seed"]), f4(r["valid"]["ndcg@10"]), f4(r["test"]["ndcg@10"]),
                        ratio(r["test"]["ndcg@10"], pop), f4(r["test"].get("recall@10")),
                        f"{r['best_epoch']} / {r['epochs_run']}", minutes(r["wall_seconds"])]
                       for r in mine.values()), key=lambda row: (-float(row[3]), row[0]))
        one_user = f" ({users:,.0f} test users: one hit moves NDCG@10 by at most {1 / users:.5f})" if users else ""
        parts.append(f"{DATASET_NAMES.get(dataset, dataset)}{one_user}:\n\n" + table(
            ["model", "seed", "valid NDCG@10", "test NDCG@10", "× pop", "test HR@10", "best / run epochs", "wall"],
            rows))
        capped = sorted(f"`{r['model']}`" for r in mine.values()
                        if r["epochs_run"] > 1 and r["epochs_run"] == r["config"].get("epochs")
                        and r["best_epoch"] >= r["epochs_run"] - 1)
        below = sorted(f"`{r['model']}`" for r in mine.values()
                       if pop is not None and r["model"] != "pop" and r["test"]["ndcg@10"] < pop)
        if capped:
            parts.append(f"Best in the last 2 epochs before the epoch cap stopped them: {', '.join(capped)}.")
        if below:
            parts.append(f"Below `pop`: {', '.join(below)}.")
    parts.append("Commands:\n\n" + "\n".join(f"- `{k}`: `{r['command']}`" for k, r in sorted(runs.items())))
    return "\n\n".join(parts)


# --- beauty_best.json ----------------------------------------------------------------------------------

BEAUTY_BEST_NOTE = """\
`python bench/beauty_best.py`: tfseq's best ID-only settings for Amazon Beauty, the file
`configs/beauty_best.yaml`, run as a user runs it (the commands below), through the Evaluator.
`masked` ranks with each user's history left out (`exclude_history: true`, the protocol of
BSARec's paper); `unmasked` is the same file with `--exclude_history false` (RecBole's protocol).
Each row is held against the best published ID-only figure under its protocol and the goal set
above it (`targets` in beauty_best.json)."""


BEAUTY_BEST_FINDINGS = """\
The file trains BSARec as its authors' code does: separate prefixes in batches of 256, the most
recent item always in the last learned position (`position_origin: last`), Adam at 5e-4 without
decay, early stopping after 10 epochs without a better validation NDCG@10. Its validation
NDCG@10 ends 1–2% under the authors' log and its test figures 4% under the paper's, far from the
goal. Differences left: the authors also
train the empty history to predict each user's first item, and their filter runs over whole
left-padded windows, padding positions included; tfseq's filter is causal and skips padding."""


def beauty_best_section(data: dict[str, Results]) -> str | None:
    results = data.get("beauty_best")
    if not results or not results.get("runs"):
        return None
    targets = results.get("targets", {})
    rows = []
    for key, run in sorted(results["runs"].items()):
        target = targets.get(run["row"], {})
        published, goal = target.get("published", {}), target.get("goal", {})
        rows.append([f"`{run['row']}`", str(run["seed"]), f4(run["valid"]["ndcg@10"]), f4(run["test"]["ndcg@10"]),
                     f4(run["test"].get("recall@10")), f"{run['best_epoch']} / {run['epochs_run']}",
                     minutes(run["wall_seconds"]), f"{f4(published.get('valid_ndcg@10'))} / "
                     f"{f4(published.get('ndcg@10'))} / {f4(published.get('hit@10'))}",
                     f"{f4(goal.get('ndcg@10'))} / {f4(goal.get('hit@10'))}"])
    header = ["row", "seed", "valid NDCG@10", "test NDCG@10", "test HR@10", "best / run epochs", "wall",
              "published: valid / test NDCG@10 / test HR@10", "goal: test NDCG@10 / HR@10"]
    sources = "; ".join(f"`{name}`: {target['published']['source']}" for name, target in targets.items()
                        if target.get("published"))
    settings = ", ".join(f"`{k}: {str(v).lower() if isinstance(v, bool) else v}`"
                         for k, v in results.get("config", {}).items())
    commands = "\n".join(f"- `{key}`: `{run['command']}`" for key, run in sorted(results["runs"].items()))
    parts = ["## Best ID-only model on Beauty", BEAUTY_BEST_NOTE, f"The file's settings: {settings}.",
             table(header, rows), f"Published figures: {sources}.", BEAUTY_BEST_FINDINGS,
             "Commands:\n\n" + commands]
    return "\n\n".join(parts)


# --- recbole_speed.json -------------------------------------------------------------------------------

RECBOLE_SPEED_NOTE = """\
`{command}`: RecBole 1.2.1 (CPU torch, {threads}, in a
virtualenv of its own) and tfseq on Amazon Beauty, one after the other in one run, per model:
RecBole's epoch, then tfseq's in each layout. All use the full softmax (RecBole's `CE`),
histories of at most 50 items and no negative sampling; the other hyperparameters are each
system's defaults (`config` in recbole_speed.json). `prefixes` is RecBole's layout
(`--all_positions false --batch_size 128`) and `one_pass_t128` trains every position of a
sequence in one pass, as many sequences per batch as fit in 128 targets (`--batch_by targets
--batch_size 128`): both take RecBole's 128 targets per optimizer step. `default` is the model's
own training defaults, what `python -m pipeline.run --model M` trains (both models: one pass
in steps of about 256 targets). Training
alone is timed (no evaluation), in the epochs after the first: wall seconds, and CPU seconds of
all the process's threads. "× RecBole" is RecBole's seconds per epoch over tfseq's, both timed
in this run. When other jobs share the cores ("load": the 1-minute load average before and after
the row), the scheduler shares them by thread, so a process with fewer threads (torch's) loses
more wall time: the CPU ratio is then the steadier one."""


RECBOLE_LAYOUTS = ("prefixes", "one_pass_t128", "default")


def recbole_speed_table(runs: dict[str, Any], quality: dict[str, Any]) -> str:
    rows = []
    for key, run in runs.items():
        model, system, *layout = key.split("/")
        entry = quality.get(model, {})
        recorded = entry.get("tfseq", {}).get(layout[0]) if layout else entry.get("recbole_published")
        ndcg = "–" if not recorded else f4(recorded["test_ndcg@10"]) + ("" if layout else " (published)")
        wall, cpu = (("–", "–") if system == "recbole" else
                     (f"{run['speedup_vs_recbole']:.1f}×", f"{run['cpu_speedup_vs_recbole']:.1f}×"))
        order = RECBOLE_LAYOUTS.index(run["layout"]) if run["layout"] in RECBOLE_LAYOUTS else 9
        rows.append(((list(MODELS).index(model) if model in MODELS else 99, system != "recbole", order, key), [
            f"`{model}`", "RecBole" if system == "recbole" else "tfseq", f"`{run['layout']}`",
            f"{run['seconds_per_epoch']:.1f}", f"{run['cpu_seconds_per_epoch']:.1f}",
            f"{run['examples_per_second']:,.0f}", f"{run['train_batches']:,}", wall, cpu, ndcg,
            "–".join(f"{x:.1f}" for x in run["load_average"]),
        ]))
    rows.sort(key=lambda r: r[0])
    header = ["model", "system", "layout", "s/epoch", "CPU s/epoch", "train examples/s", "batches", "× RecBole",
              "× RecBole, CPU", "test NDCG@10", "load"]
    return table(header, [r[1] for r in rows])


def recbole_equal_quality(results: Results) -> str:
    """Per model, the speed at equal quality: the fastest tfseq layout that reaches RecBole's published figure."""
    lines = []
    for model, entry in results.get("equal_quality", {}).items():
        anchor = entry.get("recbole_published_ndcg@10")
        if anchor is None:
            continue
        if entry.get("layout") is None:
            lines.append(f"`{model}`: no tfseq layout with a recorded test NDCG@10 reaches RecBole's published "
                         f"{f4(anchor)} yet, so no ratio at equal quality is claimed.")
            continue
        lines.append(f"`{model}`: `{entry['layout']}` reaches RecBole's published {f4(anchor)} "
                     f"({f4(entry['test_ndcg@10'])}) at {entry['speedup_vs_recbole']:.1f}× RecBole's speed "
                     f"({entry['cpu_speedup_vs_recbole']:.1f}× in CPU seconds).")
    quality = results.get("quality", {}).values()
    sources = sorted({source for entry in quality for layout in entry.get("tfseq", {}).values() if layout
                      for source in layout["sources"]})
    sources += sorted({entry["recbole_published"]["source"] for entry in quality if entry.get("recbole_published")})
    text = ("At equal quality (unmasked test NDCG@10; the fastest tfseq layout whose recorded figure reaches "
            "RecBole's published one):\n\n" + "\n".join(f"- {line}" for line in lines))
    if sources:
        text += ("\n\nThe test NDCG@10 column is not measured by this benchmark: it is read from "
                 + ", ".join(f"`{s}`" for s in sources) + " (a mean where a row has several seeds).")
    return text


def recbole_speed_claim(results: Results) -> str:
    """The README's sentence on training speed against RecBole, built from recbole_speed.json only
    (tests/bench/test_readme_claims.py checks that the README carries it word for word): per model, the
    speedup of its defaults and of the fastest layout whose recorded test NDCG@10 reaches RecBole's."""
    runs, equal = results.get("runs", {}), results.get("equal_quality", {})
    parts = []
    for model in ("sasrec", "gru4rec"):
        default = runs.get(f"{model}/tfseq/default")
        if not default:
            continue
        part = f"`{model}` {default['speedup_vs_recbole']:.1f}× faster with its defaults"
        reached = equal.get(model, {})  # the fastest layout at RecBole's published NDCG@10, if any
        if reached.get("layout") == "default":
            part += ", which reach RecBole's published NDCG@10"
        elif reached.get("layout"):
            part += (f", {reached['speedup_vs_recbole']:.1f}× at RecBole's published NDCG@10 "
                     f"(`{reached['layout']}`)")
        parts.append(part)
    if not parts:
        return ""
    return ("Against RecBole 1.2.1, epoch for epoch on Beauty in one run: " + "; ".join(parts)
            + " ([details](RESULTS.md#speed-against-recbole)).")


def recbole_speed_section(data: dict[str, Results]) -> str | None:
    results = data.get("recbole_speed")
    if not results or not results.get("runs"):
        return None
    dataset = results.get("dataset", {})
    size = (f"{dataset['users']:,} users, {dataset['interactions']:,} interactions; "
            if "users" in dataset else "")
    versions: dict[str, str] = next((r["versions"] for r in results["runs"].values() if "versions" in r), {})
    stack = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "python")
    context = f"Beauty: {size}RecBole side: {stack}; tfseq side: TensorFlow {results['machine']['tensorflow']}."
    threads = results.get("settings", {}).get("threads", "default")
    commands = sorted({run.get("command", results.get("command", "python bench/recbole_speed.py"))
                       for run in results["runs"].values()})
    note = RECBOLE_SPEED_NOTE.format(
        command="`, `".join(commands),
        threads=("as many threads as cores" if threads == "default"
                 else f"{threads} thread{'' if threads == 1 else 's'}, and TensorFlow as many"),
    )
    if threads != "default":
        note += (f" `--threads {threads}` gives each system {threads} compute thread{'' if threads == 1 else 's'}: "
                 "beside other jobs, torch's OpenMP threads wait at every parallel region for whichever of them "
                 "is descheduled, which costs torch far more wall time than it costs TensorFlow.")
    parts = ["## Speed against RecBole", note, context,
             recbole_speed_table(results["runs"], results.get("quality", {})), recbole_equal_quality(results)]
    return "\n\n".join(p for p in parts if p)


# --- preprocess.json, tuning.json ---------------------------------------------------------------------

def preprocess_table(results: Results) -> str:
    rows = []
    for key, case in results["cases"].items():
        if not isinstance(case, dict):
            continue
        rows.append([key.rsplit("/", 1)[0] if case["kcore"] == 0 else key.split("/")[0] + f" + {case['kcore']}-core",
                     case["runner"].replace("_", "-"), f"{case['rows_in']:,}", f"{case['seconds']:.1f}",
                     f"{case['rows_per_second']:,}", f"{case['peak_rss_mib']:,}"])
    return table(["data", "runner", "rows", "Transform s", "rows/s", "peak RSS MiB (process tree)"], rows)


def preprocess_section(data: dict[str, Results]) -> str | None:
    results = data.get("preprocess")
    if not results:
        return None
    identical = [k.split("/")[0] for k, v in results["cases"].items() if k.endswith("/runners_identical") and v]
    target = results.get("target_seconds_1m")
    note = ("`python bench/preprocess.py`: the whole Transform stage (ExampleGen excluded) on Beauty and a "
            "synthetic log of 1M interactions, DirectRunner in memory and in multi-processing mode, and the "
            "DaskRunner on a local 2-worker cluster (`--runners dask`; a cluster runner pays for shipping every "
            "element between processes, so on one machine it is the slowest); peak memory is the whole process "
            "tree, workers included.")
    if identical:
        note += f" The two runners' outputs are byte-identical on {', '.join(identical)}."
    if target:
        met = "met" if results.get("meets_target_1m") else "missed"
        note += f" Target: 1M rows in under {target:g} s ({met})."
    return "\n\n".join(["## Preprocessing", note, preprocess_table(results)])


def tuning_table(results: Results) -> str:
    rows = []
    for name in ("default", "best"):
        trial = results.get(name)
        if trial:
            params = ", ".join(f"{k}={v}" for k, v in trial["params"].items())
            rows.append([name, params, f4(trial["valid_ndcg@10"]), f4(trial["test_ndcg@10"]),
                         f4(trial["test_recall@10"]), f"{trial['seconds']:.0f}"])
    return table(["trial", "params", "valid NDCG@10", "test NDCG@10", "test Recall@10", "seconds"], rows)


def tuning_section(data: dict[str, Results], results_dir: Path) -> str | None:
    tuning = data.get("tuning")
    if not tuning:
        return None
    note = (f"`python bench/tuning.py`: the `{tuning['model']}` {tuning['oracle']} search on {tuning['dataset']}, "
            f"{tuning['trials']} trials capped at {tuning['epochs_cap']} epochs (patience {tuning['patience']}), so "
            "the absolute numbers are those of short runs; the ranking of the grid is what it shows. "
            f"{tuning['completed']} of {tuning['trials']} trials completed, {tuning['seconds_per_trial']} s per trial.")
    parts = ["## Tuning", note, tuning_table(tuning)]
    heatmap = results_dir / "tuning_core_heatmap.png"
    if heatmap.exists():
        parts.append("![CORE grid on Beauty](bench/results/tuning_core_heatmap.png)")
    return "\n\n".join(parts)


# --- scale.json ----------------------------------------------------------------------------------------

SCALE_STEPS = (("data", ("ExampleGen", "Transform")), ("train", ("Trainer",)), ("evaluate", ("Evaluator",)),
               ("export", ("Pusher",)), ("serve", ("serve",)))


def scale_table(sizes: dict[str, Any]) -> str:
    rows = []
    for size in sorted(sizes.values(), key=lambda r: r["items"]):
        cells = [f"{size['vocabulary_items']:,}", f"{size['users']:,}", f"{size['logged_interactions']:,}"]
        for step, stages in SCALE_STEPS:
            seconds = sum(size[step]["seconds"].get(stage, 0.0) for stage in stages)
            cells.append(f"{seconds:.0f} s / {size[step]['peak_rss_mib'] / 1024:.1f}")
        cells.append(f"{size['evaluate']['users_per_second']:,.0f}")
        latency = size["serve"]["latency"]
        cells.append(f"{latency['p50_ms']:.1f} / {latency['p99_ms']:.1f}")
        cells.append(f4(size["test"]["ndcg@10"]))
        rows.append(cells)
    return table(["items", "users", "interactions", "data", "train (1 epoch)", "evaluate", "export", "serve (start)",
                  "eval users/s", "1 client p50 / p99 ms", "test NDCG@10"], rows)


def scale_section(data: dict[str, Results], results_dir: Path) -> str | None:
    scale = data.get("scale")
    if not scale or not scale.get("sizes"):
        return None
    sample = next(iter(scale["sizes"].values()))["eval_users"]
    note = ("`python bench/scale.py`: the synthetic log at each size (users = items / 2, interactions = 10 x "
            "items, long-tailed popularity) through every stage as its own process: ExampleGen + Transform on the "
            "DirectRunner, one epoch of `sasrec` + `sampled_softmax` (popularity negatives from 100,000 items on), "
            f"full-ranking evaluation of a {sample:,}-user sample on valid and test, the export, and "
            "`python -m serving.server` answering one-history requests from one gRPC client. Each cell: seconds / "
            "peak memory of the step's whole process tree in GiB.")
    parts = ["## Scale", note, scale_table(scale["sizes"]), *scale.get("notes", [])]
    if (results_dir / "scale.png").exists():
        parts.append("![time and memory against the catalogue](bench/results/scale.png)")
    return "\n\n".join(parts)


def serving_scale_section(data: dict[str, Results]) -> str | None:
    results = data.get("serving_scale")
    if not results or not results.get("variants"):
        return None
    model = results["model"]
    note = (f"`python bench/serving_scale.py`: a {model['name']} SavedModel over {model['num_items']:,} items "
            f"(width {model['hidden_size']}, K={model['top_k']}), exact brute force against the clustered search "
            f"of `--approximate_clusters` / `--approximate_probes`, served by `python -m serving.server` "
            f"({results['server_max_workers']} workers, {results['intra_op_threads']} intra-op thread), "
            f"one history per request. Item table: {results['embeddings']}. Recall: {results['recall']}.")
    rows = []
    for name, variant in sorted(results["variants"].items(), key=lambda kv: (kv[1]["clusters"] > 0, kv[1]["probes"])):
        search = "exact" if not variant["clusters"] else f"{variant['clusters']} clusters, {variant['probes']} probes"
        recall = variant.get("recall_at_10")
        cells = [search, "1.0000" if not variant["clusters"] else f4(recall)]
        for clients in ("1", "8", "32"):
            grpc = variant["grpc"][clients]
            cells.append(f"{grpc['p50_ms']:.1f} / {grpc['p99_ms']:.1f}")
        cells += [f"{variant['grpc']['32']['throughput_rps']:.0f}", f"{variant['export_seconds']:.0f}",
                  f"{variant['saved_model_bytes'] / 2**20:,.0f}"]
        rows.append(cells)
    parts = ["## Serving a million items", note,
             table(["search", "recall@10", "1 client p50 / p99 ms", "8 clients", "32 clients", "req/s at 32",
                    "export s", "SavedModel MiB"], rows), *results.get("notes", [])]
    return "\n\n".join(parts)


def multi_worker_section(data: dict[str, Results]) -> str | None:
    results = data.get("multi_worker")
    if not results:
        return None
    note = (f"`python bench/multi_worker.py`: the Trainer on {results['dataset']} ({results['flags']}), as one "
            "process and as two worker processes on this machine (`--distribute multi_worker`, TF_CONFIG on "
            "localhost), the same global batch; seconds per epoch after the first. On one 2-core machine the "
            "two workers share the cores and add an all-reduce of every gradient per step, so this shows what "
            "the distribution costs; on separate machines each worker has its own cores.")
    rows = [[str(run["workers"]), str(run["replicas"]), f"{run['seconds_per_epoch']:.1f}",
             f"{run['wall_seconds']:.0f}", f4(next(iter(run["valid_last_epoch"].values()), None))]
            for run in (results["single"], results["two_workers"])]
    header = ["workers", "replicas", "s/epoch", "wall s", "valid NDCG@10 (last epoch)"]
    speed_up = f"Speed-up of two workers over one: {results['speed_up']:.2f}x."
    return "\n\n".join(["## Multi-worker training", note, table(header, rows), speed_up])


# --- serving.json, soak.json --------------------------------------------------------------------------

TARGET_NAMES = {"grpc_over_in_process_p50": "gRPC p50 over in-process p50",
                "p99_ms_at_concurrency_1": "p99 ms at 1 client"}


def serving_section(data: dict[str, Results]) -> str | None:
    serving = data.get("serving")
    if not serving:
        return None
    model, grpc = serving["model"], serving["grpc"]

    def row(name: str, stats: dict[str, Any], rps: float | None = None) -> list[str]:
        return [name, f"{stats['p50_ms']:.2f}", f"{stats['p95_ms']:.2f}", f"{stats['p99_ms']:.2f}",
                "–" if rps is None else f"{rps:,.0f}"]

    rows = [row("SavedModel in process", serving["in_process"])]
    if "1_interleaved" in grpc:
        rows.append(row("gRPC, 1 client, in blocks alternating with the in-process calls", grpc["1_interleaved"]))
    for key in sorted((k for k in grpc if k.isdigit()), key=int):
        clients = grpc[key]["concurrency"]
        rows.append(row(f"gRPC, {clients} client{'s' if clients > 1 else ''}", grpc[key],
                        grpc[key].get("throughput_rps")))
    notes = data.get("notes", {}).get("serving_before_hardening")
    if notes:
        before = notes["grpc_1_client_ms"]
        rows.append([f"gRPC, 1 client, before the request checks (in-process p99 {notes['in_process_p99_ms']:.2f} ms; "
                     "recorded by hand, `notes.json`)",
                     f"{before['p50']:.2f}", f"{before['p95']:.2f}", f"{before['p99']:.2f}", "–"])
    targets = ", ".join(f"{TARGET_NAMES.get(name, name.replace('_', ' '))} < {t['target']:g}: {t['value']:.2f} "
                        f"({'met' if t['met'] else 'missed'})"
                        for name, t in sorted(serving.get("targets", {}).items()))
    note = (f"`python bench/serving.py`: `{model['name']}` ({model['num_layers']} layers, hidden "
            f"{model['hidden_size']}) over {model['num_items']:,} items, K={model['top_k']}, {model['weights']}, "
            f"{serving['requests']}, `python -m serving.server` with {serving['server_max_workers']} workers and "
            "its request checks, on the shared machine (client and server on the same cores).")
    parts = ["## Serving", note, table(["", "p50 ms", "p95 ms", "p99 ms", "requests/s"], rows)]
    if targets:
        parts.append(f"Targets: {targets}.")
    threads = data.get("notes", {}).get("serving_threads")
    if threads:
        times = " against ".join(f"about {ms:g} ms with {how}" for how, ms in threads["latency_ms_about"].items())
        parts.append(f"The server runs each TensorFlow op on one thread by default (`--intra_op_threads`, "
                     f"{serving['intra_op_threads']} above): {threads['model']}, {times} "
                     f"({threads['command']}; recorded by hand, `notes.json`).")
    return "\n\n".join(parts)


def soak_table(results: Results) -> str:
    """Requests by transport and status, then the checks, of bench/results/soak.json."""
    by: dict[str, dict[str, int]] = {"grpc": {}, "rest": {}}
    for key, n in results["requests_by_status"].items():
        transport, status = key.split(":", 1)
        by[transport][status] = n
    closed = by["rest"].pop("stalled-closed-by-server", 0)
    if "stalled" in by["rest"]:
        by["rest"]["half-sent body (closed by the server)"] = by["rest"].pop("stalled")
    grpc_rows = sorted(by["grpc"].items(), key=lambda kv: (kv[0] != "OK", kv[0]))
    rest_rows = sorted(by["rest"].items())
    rows = []
    for g, r in itertools.zip_longest(grpc_rows, rest_rows):
        rest_count = "" if r is None else f"{r[1]:,}" + (f" ({closed:,})" if "half-sent" in r[0] else "")
        rows.append(["" if g is None else g[0], "" if g is None else f"{g[1]:,}", "" if r is None else r[0],
                     rest_count])
    rss, latency = results["rss_mib"], results["latency"]
    pushes = ", ".join(f"{p['version']} {p['how'].replace('_', ' ')}" for p in results["versions_pushed"])
    grpc_good, rest_good = latency["grpc_good"], latency["rest_good"]
    checks = table(["check", "result"], [
        ["wrong answers (vs the in-process SavedModel)",
         f"{results['wrong_answers']} of {results['good_answers_checked']:,} checked"],
        ["unexpected status codes", str(sum(results["unexpected_status_by_kind"].values()))],
        ["server restarts / tracebacks in its log",
         f"{results['server_restarts']} / {results['server_log_tracebacks']}"],
        ["versions pushed (served at the end)", f"{pushes} ({results['final_version']})"],
        ["peak RSS MiB (after load; bound from the limits)",
         f"{rss['peak']:,.0f} ({rss['after_load']:,.0f}; {rss['bound_from_limits']:,.0f})"],
        ["good gRPC requests p50 / p99 ms", f"{grpc_good['p50_ms']:.1f} / {grpc_good['p99_ms']:.1f}"],
        ["good REST requests p50 / p99 ms", f"{rest_good['p50_ms']:.1f} / {rest_good['p99_ms']:.1f}"],
        *_crowd_rows(results.get("slow_crowd") or {}),
    ])
    return (f"{results['requests_sent']:,} requests in {results['seconds']:.0f} s at concurrency "
            f"{results['concurrency']}:\n\n" + table(["gRPC status", "requests", "REST status", "requests"], rows)
            + "\n\n" + checks)


def _crowd_rows(crowd: dict[str, Any]) -> list[list[str]]:
    """The slow-client crowd's checks (soak runs from 2026-12-03 on)."""
    if not crowd:
        return []
    latency = crowd["good_latency_s"]
    return [
        [f"{crowd['slow_clients']} slow clients at once: closed by the server (max after s) / left open",
         f"{crowd['closed_by_server']} ({crowd['closed_after_s_max']}) / {crowd['left_open']}"],
        ["good REST requests meanwhile: answered 200 / sent (p50 / max s)",
         f"{crowd['good_answered_200']} / {crowd['good_requests']} ({latency['p50']} / {latency['max']})"],
    ]


def soak_section(data: dict[str, Results]) -> str | None:
    soak = data.get("soak")
    if not soak:
        return None
    model = soak["model"]
    flags = " ".join(soak["server_flags"])
    note = (f"`python bench/soak.py`, loopback only: `python -m serving.server` with `{flags}`, "
            f"serving a small `{model['name']}` ({model['items']:,} items), gets good, malformed and hostile requests "
            "(unknown names, wrong dtypes and ranks, a tiny tensor declaring a huge shape, requests over every limit, "
            "bad JSON and headers, half-sent bodies; the list is in `bench/soak.py`) over gRPC and REST, while "
            "versions are pushed atomically, copied file by file, and corrupt. Every good answer is compared with "
            "the in-process SavedModel of the version that gave it.")
    return "\n\n".join(["## Serving soak", note, soak_table(soak)])


# --- the page -----------------------------------------------------------------------------------------

def machine_line(data: dict[str, Results]) -> str:
    machines = [r["machine"] for name, r in data.items() if isinstance(r.get("machine"), dict) and name != "notes"]
    dates = sorted({m["date"] for m in machines if "date" in m})
    cpus = sorted({m["cpus"] for m in machines if "cpus" in m})
    versions = sorted({m["tensorflow"] for m in machines if "tensorflow" in m})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "–"
    return (f"The benchmarks ran on a shared CPU machine ({'/'.join(map(str, cpus))} cores, TensorFlow "
            f"{', '.join(versions)}, {when}; each JSON file's `machine` says which).")


HEADER = """\
# Results

<!-- Generated by `python bench/report.py --write` from bench/results/*.json: edit those files or
bench/report.py, never this page (tests/bench/test_results_page.py fails when they disagree). -->

Every figure here comes from `bench/results/*.json`. The scripts in `bench/` write them (BUILD.md
lists the commands); `bench/results/notes.json` holds the few figures recorded by hand, each with
the command or publication it came from."""


def results_page(results_dir: Path = RESULTS) -> str:
    """The whole of RESULTS.md, from the JSON files in ``results_dir``."""
    data = load_all(results_dir)
    builders: list[Callable[[], str | None]] = [
        lambda: quality_section(data),
        lambda: ablation_section(data),
        lambda: beauty_best_section(data),
        lambda: families_section(data),
        lambda: spotlight_defaults_section(data),
        lambda: defaults_section(data),
        lambda: side_section(data),
        lambda: speed_section(data),
        lambda: recbole_speed_section(data),
        lambda: preprocess_section(data),
        lambda: tuning_section(data, results_dir),
        lambda: scale_section(data, results_dir),
        lambda: multi_worker_section(data),
        lambda: serving_section(data),
        lambda: serving_scale_section(data),
        lambda: soak_section(data),
    ]
    sections = [s for s in (build() for build in builders) if s]
    contents = " · ".join(f"[{s.splitlines()[0][3:]}](#{anchor(s.splitlines()[0][3:])})" for s in sections)
    return "\n\n".join([HEADER, machine_line(data), contents, *sections]) + "\n"


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return "".join(c for c in title.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of JSON results")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite {PAGE.name}")
    action.add_argument("--check", action="store_true", help=f"exit 1 when {PAGE.name} is out of date")
    args = parser.parse_args(argv)
    page = results_page(args.results)
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is out of date: run python bench/report.py --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        tmp = PAGE.with_suffix(".md.tmp")
        tmp.write_text(page)
        tmp.replace(PAGE)
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
