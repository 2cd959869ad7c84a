"""The Pusher stage: exports the Trainer's model as a new TF Serving version.

The SavedModel goes to ``<serving_dir>/<model_name>/<version>/``
(``serving/export.py``); by default ``serving_dir`` is ``<pipeline root>/serving``,
beside the stage directories, so ``--model_base_path <root>/serving/<model_name>``
serves the pipeline's latest push. The stage's own directory holds
``pushed.json``: ``{"path", "version", "model_name", "serving_dir"}``.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any

import tfseq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from pipeline import artifacts
from tfseq.config import ConfigError

PUSHED = "pushed.json"
DEFAULT_SERVING_SUBDIR = "serving"


@dataclasses.dataclass(frozen=True)
class PusherConfig:
    """Where and how the Pusher exports (field names are ``pipeline.run`` flags).

    Attributes:
      serving_dir: versions go to ``<serving_dir>/<model_name>/``; "" = ``<root>/serving``.
      model_name: the servable name (TF Serving's ``MODEL_NAME``).
      top_k: K, the number of items each request returns (fixed in the signature).
      exclude_history: never return items of the request's history.
      version: the version number to write; 0 = one more than the highest present.
    """

    serving_dir: str = ""
    model_name: str = "tfseq"
    top_k: int = 10
    exclude_history: bool = False
    version: int = 0

    def __post_init__(self) -> None:
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(
                f"PusherConfig.model_name must be a plain directory name, got {self.model_name!r}"
            )
        if self.top_k < 1:
            raise ConfigError(f"PusherConfig.top_k must be >= 1, got {self.top_k}")
        if self.version < 0:
            raise ConfigError(
                f"PusherConfig.version must be >= 0 (0 = next free), got {self.version}"
            )


def default_serving_dir(output_dir: str) -> str:
    """``<root>/serving`` for a stage output directory ``<root>/<anything>``."""
    return artifacts.join(posixpath.dirname(output_dir.rstrip("/")), DEFAULT_SERVING_SUBDIR)


def run_pusher(
    config: PusherConfig, trainer_dir: str, transform_dir: str, output_dir: str
) -> dict[str, Any]:
    """Exports the trained model; writes and returns the ``pushed.json`` record."""
    from serving.export import export_from_trainer

    serving_dir = config.serving_dir or default_serving_dir(output_dir)
    path = export_from_trainer(
        trainer_dir,
        transform_dir,
        serving_dir,
        config.model_name,
        version=config.version or None,
        top_k=config.top_k,
        exclude_history=config.exclude_history,
    )
    pushed = {
        "path": path,
        "version": int(posixpath.basename(path)),
        "model_name": config.model_name,
        "serving_dir": serving_dir,
    }
    artifacts.atomic_write_text(artifacts.join(output_dir, PUSHED), json.dumps(pushed, indent=1))
    print(f"[Pusher] {config.model_name} version {pushed['version']} -> {path}", flush=True)
    return pushed
