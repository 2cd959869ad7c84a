"""The Pusher stage: exports one run's trained model as a new TF Serving version.

The SavedModel goes to ``<serving_dir>/<model_name>/<version>/``
(``serving/export.py``); by default ``serving_dir`` is ``<pipeline root>/serving``
(``pipeline.artifacts.serving_dir``), so ``--model_base_path <root>/serving/<model_name>``
serves the pipeline's latest push. History masking is the run's own
(``--exclude_history``), so a model is served as it was evaluated. The stage's
folder ``<root>/runs/<run>/Pusher`` holds ``pushed.json``:
``{"run", "path", "version", "model_name", "serving_dir", "exclude_history"}``.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq.config import ConfigError


@dataclasses.dataclass(frozen=True)
class PusherConfig:
    """Where and how the Pusher exports (field names are ``pipeline.run`` flags).

    Attributes:
      serving_dir: versions go to ``<serving_dir>/<model_name>/``; "" = ``<root>/serving``.
      model_name: the servable name (TF Serving's ``MODEL_NAME``).
      top_k: K, the number of items each request returns (fixed in the signature).
      version: the version number to write; 0 = one more than the highest present.
    """

    serving_dir: str = ""
    model_name: str = "tfseq"
    top_k: int = 10
    version: int = 0

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(
                f"--model_name must be a plain directory name, got {self.model_name!r}"
            )
        if self.top_k < 1:
            raise ConfigError(f"--top_k must be >= 1, got {self.top_k}")
        if self.version < 0:
            raise ConfigError(f"--version must be >= 0 (0 = next free), got {self.version}")


def run_pusher(
    config: PusherConfig,
    trainer_dir: str,
    transform_dir: str,
    output_dir: str,
    *,
    run: str,
    default_serving_dir: str,
    verbose: bool = True,
) -> dict[str, Any]:
    """Exports run ``run``'s trained model; writes and returns the ``pushed.json`` record."""
    from serving.export import export_from_trainer
    from tfseq.experiment import ExperimentConfig

    serving_dir = config.serving_dir or default_serving_dir
    trained = ExperimentConfig.from_json_file(artifacts.join(trainer_dir, artifacts.CONFIG))
    exclude_history = trained.train.exclude_history
    path = export_from_trainer(
        trainer_dir,
        transform_dir,
        serving_dir,
        config.model_name,
        version=config.version or None,
        top_k=config.top_k,
        exclude_history=exclude_history,
    )
    pushed = {
        "run": run,
        "path": path,
        "version": int(posixpath.basename(path)),
        "model_name": config.model_name,
        "serving_dir": serving_dir,
        "exclude_history": exclude_history,
    }
    artifacts.atomic_write_json(artifacts.join(output_dir, artifacts.PUSHED), pushed)
    if verbose:
        print(f"[Pusher] run {run} -> {config.model_name} version {pushed['version']} ({path})", flush=True)
    return pushed
