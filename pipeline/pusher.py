"""The Pusher stage: exports one run's trained model as a new TF Serving version.

The SavedModel goes to ``<serving_dir>/<model_name>/<version>/``
(``serving/export.py``); by default ``serving_dir`` is ``<pipeline root>/serving``
(``pipeline.artifacts.serving_dir``), so ``--model_base_path <root>/serving/<model_name>``
serves the pipeline's latest push. History masking is the run's own
(``--exclude_history``), so a model is served as it was evaluated.

Only a run the Evaluator blessed is pushed (``--push always`` overrides): a
worse model never replaces the served one silently. When another version was
pushed after the Evaluator ran, the run is blessed again against it. The
stage's folder ``<root>/runs/<run>/Pusher`` holds ``pushed.json``:
``{"run", "pushed": true, "path", "version", "model_name", "serving_dir", "exclude_history", "blessing"}``,
or ``{"run", "pushed": false, "model_name", "serving_dir", "blessing"}`` when it was not pushed.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from pipeline.evaluator import EvaluatorConfig, ServingTarget, baseline_of, bless
from serving.signature import MAX_VERSION
from tfseq.config import ConfigError, shown

PUSH_POLICIES = ("blessed", "always")
MAX_TOP_K = 10_000  # K is fixed in the signature; every answer carries K ids and scores
MAX_MODEL_NAME_BYTES = 128  # a folder name, and its lock file's beside it, within the file system's 255
MAX_CLUSTERS = 1 << 20  # k-means clusters of the items; the export also keeps them below the item count


@dataclasses.dataclass(frozen=True)
class PusherConfig:
    """Where and how the Pusher exports (field names are ``pipeline.run`` flags).

    Attributes:
      serving_dir: versions go to ``<serving_dir>/<model_name>/``; "" = ``<root>/serving``.
      model_name: the servable name (TF Serving's ``MODEL_NAME``).
      top_k: K, the number of items each request returns (fixed in the signature).
      version: the version number to write; 0 = one more than the highest present.
      push: ``blessed`` pushes only a run the Evaluator blessed; ``always`` pushes any run.
      approximate_clusters: 0 ranks the whole catalogue exactly; C > 0 exports a search over C
        k-means clusters of the items instead, for catalogues too large to rank at every request.
      approximate_probes: the clusters searched per request (1..C; C answers as the exact search).
    """

    serving_dir: str = ""
    model_name: str = "tfseq"
    top_k: int = 10
    version: int = 0
    push: str = "blessed"
    approximate_clusters: int = 0
    approximate_probes: int = 0

    def __post_init__(self) -> None:
        if (not self.model_name or "/" in self.model_name or self.model_name.startswith(".")
                or len(self.model_name.encode("utf-8")) > MAX_MODEL_NAME_BYTES):
            raise ConfigError(f"--model_name must be a plain directory name of at most {MAX_MODEL_NAME_BYTES} "
                              f"bytes, got {shown(self.model_name)}")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ConfigError(f"--top_k must be in 1..{MAX_TOP_K}, got {self.top_k}")
        if not 0 <= self.version <= MAX_VERSION:
            raise ConfigError(f"--version must be in 0..{MAX_VERSION} (0 = next free), got {self.version}")
        if self.push not in PUSH_POLICIES:
            raise ConfigError(f"--push must be one of {', '.join(PUSH_POLICIES)}, got {self.push!r}")
        if not 0 <= self.approximate_clusters <= MAX_CLUSTERS or not 0 <= self.approximate_probes <= max(
                self.approximate_clusters, 0):
            raise ConfigError(
                f"--approximate_clusters must be in 0..{MAX_CLUSTERS} and --approximate_probes in "
                f"1..--approximate_clusters (both 0: the exact search), got "
                f"clusters={self.approximate_clusters}, probes={self.approximate_probes}"
            )
        if (self.approximate_clusters > 0) != (self.approximate_probes > 0):
            raise ConfigError("give --approximate_clusters and --approximate_probes together (both 0: exact search)")

    def check_data(self, transform_dir: str) -> None:
        """Raises ConfigError when K or the clusters outnumber the items of the Transform output
        ``transform_dir`` (the pipeline checks this before training, not after)."""
        from tfseq.data.vocab import DatasetMetadata

        items = DatasetMetadata.load(transform_dir).num_items - 1  # index 0 is padding
        for name, value in (("top_k", self.top_k), ("approximate_clusters", self.approximate_clusters)):
            if value > items:
                raise ConfigError(f"--{name} {value} is more than the {items} items of {transform_dir}")

    def target(self, default_serving_dir: str) -> ServingTarget:
        """Where this config pushes, given the pipeline's default serving folder."""
        return ServingTarget(self.serving_dir or default_serving_dir, self.model_name)


def run_pusher(
    config: PusherConfig,
    trainer_dir: str,
    transform_dir: str,
    output_dir: str,
    *,
    run: str,
    default_serving_dir: str,
    evaluator_dir: str | None = None,
    evaluator_config: EvaluatorConfig = EvaluatorConfig(),
    verbose: bool = True,
) -> dict[str, Any]:
    """Exports run ``run``'s trained model if it is blessed; writes and returns the ``pushed.json`` record.

    Args:
      evaluator_dir: the run's Evaluator output (its metrics and blessing); None
        pushes without a blessing (an export outside a pipeline run).
      evaluator_config: the blessing settings, to bless again when the served
        version changed since the Evaluator ran.

    Pushers to one model name take turns (a lock beside its folder, released
    even when its holder is killed): each one blesses against, and numbers its
    version after, what the one before it pushed, and a run already exported
    with these settings (a Pusher killed before its record, or a second
    Pusher of the same run) is recorded, not pushed again.
    """
    target = config.target(default_serving_dir)
    with artifacts.exclusive_lock(artifacts.push_lock(target.serving_dir, config.model_name)):
        return _push(config, trainer_dir, transform_dir, output_dir, run, target, evaluator_dir, evaluator_config,
                     verbose)


def _push(
    config: PusherConfig, trainer_dir: str, transform_dir: str, output_dir: str, run: str, target: ServingTarget,
    evaluator_dir: str | None, evaluator_config: EvaluatorConfig, verbose: bool,
) -> dict[str, Any]:
    """:func:`run_pusher` while it holds the model name's push lock: what is served cannot change meanwhile."""
    from serving.export import export_from_trainer
    from tfseq.experiment import ExperimentConfig

    serving_dir = target.serving_dir
    config.check_data(transform_dir)
    blessing = current_blessing(evaluator_dir, evaluator_config, target) if evaluator_dir else None
    if blessing is not None and not blessing["blessed"] and config.push != "always":
        record = {"run": run, "pushed": False, "model_name": config.model_name, "serving_dir": serving_dir,
                  "blessing": blessing}
        artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.PUSHED), record)
        if verbose:
            print(f"[Pusher] not pushed ({blessing['reason']}); the served model is unchanged; "
                  "--push always pushes it anyway", flush=True)
        return record
    for leftover in artifacts.remove_stale_temporaries(target.model_dir):  # an export killed half-way
        if verbose:
            print(f"[Pusher] removed a killed export's temporary folder {leftover}", flush=True)
    trained = ExperimentConfig.from_json_file(artifacts.join(trainer_dir, artifacts.CONFIG))
    exclude_history = trained.train.exclude_history
    search = (config.approximate_clusters, config.approximate_probes)
    path = export_of(target, run, config.top_k, exclude_history, search, version=config.version or None)
    if path is not None and verbose:  # e.g. a Pusher killed between the export and its record
        print(f"[Pusher] run {run} is already exported as {path}; not pushing it twice", flush=True)
    path = path or export_from_trainer(
        trainer_dir,
        transform_dir,
        serving_dir,
        config.model_name,
        version=config.version or None,
        top_k=config.top_k,
        exclude_history=exclude_history,
        approximate_clusters=config.approximate_clusters,
        approximate_probes=config.approximate_probes,
    )
    pushed = {
        "run": run,
        "pushed": True,
        "path": path,
        "version": int(posixpath.basename(path)),
        "model_name": config.model_name,
        "serving_dir": serving_dir,
        "exclude_history": exclude_history,
        "blessing": blessing,
    }
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.PUSHED), pushed)
    if verbose:
        print(f"[Pusher] run {run} -> {config.model_name} version {pushed['version']} ({path})", flush=True)
    return pushed


def current_blessing(evaluator_dir: str, config: EvaluatorConfig, target: ServingTarget) -> dict[str, Any]:
    """The Evaluator's blessing, or a new one when the served version changed since it was made."""
    blessing = artifacts.read_json(artifacts.join(evaluator_dir, artifacts.BLESSING))
    baseline = baseline_of(target)
    then = (blessing.get("baseline") or {}).get("version")
    now = baseline["version"] if baseline else None
    if blessing.get("served") == target.model_dir and then == now:
        return blessing
    metrics = artifacts.read_json(artifacts.join(evaluator_dir, artifacts.METRICS))
    return {**bless(metrics, config, baseline), "served": target.model_dir}


def export_of(
    target: ServingTarget, run: str, top_k: int, exclude_history: bool, search: tuple[int, int] = (0, 0),
    version: int | None = None,
) -> str | None:
    """The version under ``target`` already exported from run ``run`` with these settings (``search``:
    clusters and probes, 0 and 0 exact), if any; with ``version``, only that version counts."""
    from serving.signature import EXPORT_INFO_FILE, list_versions

    versions = list_versions(target.model_dir)
    for found in reversed(versions if version is None else [v for v in versions if v == version]):
        path = artifacts.join(target.model_dir, str(found))
        try:
            info = artifacts.read_json(artifacts.join(path, EXPORT_INFO_FILE))
        except (OSError, ValueError):
            continue
        exported_run = posixpath.basename(posixpath.dirname(str(info.get("trainer_dir", "")).rstrip("/")))
        searched = info.get("top_k_search") or {}
        exported_search = (int(searched.get("clusters", 0)), int(searched.get("probes", 0)))
        if (exported_run, info.get("top_k"), info.get("exclude_history"), exported_search) == (
                run, top_k, exclude_history, search):
            return path
    return None
