"""RecBole's (and older tfseq) spellings of tfseq's settings, mapped to tfseq's names in one place.

A RecBole user can write ``--model SASRec --n_layers 2 --train_batch_size 256
--valid_metric NDCG@10`` or keep their YAML keys: every name here means
exactly what the tfseq name means. Used by the command line
(:mod:`pipeline.cli`), config files, ``tfseq.run(**params)`` and RecBole
``hyper.test`` files (:mod:`tuning.hyper_file`).
"""

from __future__ import annotations

from typing import Any, Mapping

from tfseq.config import ConfigError

# Setting names: RecBole's (or a former tfseq name) -> tfseq's.
KEY_ALIASES = {
    "n_layers": "num_layers",
    "n_heads": "num_heads",
    "MAX_ITEM_LIST_LENGTH": "max_seq_len",
    "train_batch_size": "batch_size",
    "stopping_step": "patience",
    "loss_type": "loss",
    "exclude_seen": "exclude_history",  # tfseq before 2026-12: the evaluation's name for it
}

# Model words: lowercase registry keys, RecBole's class names, and ``core`` for CORE's default variant.
MODEL_ALIASES = {
    "core": "core_trm",  # RecBole's CORE defaults to dnn_type trm
    "sasrecf": "sasrec_f",
    "dif_sr": "difsr",
}

# Loss words: RecBole's loss_type values.
LOSS_ALIASES = {"ce": "softmax", "full_softmax": "softmax"}


def model_name(name: str) -> str:
    """The registry key of a model word: ``SASRec`` -> ``sasrec``, ``CORE`` -> ``core_trm``."""
    lowered = str(name).strip().lower()
    return MODEL_ALIASES.get(lowered, lowered)


def loss_name(name: str) -> str:
    """The registry key of a loss word: ``CE`` -> ``softmax``, ``BPR`` -> ``bpr``."""
    lowered = str(name).strip().lower()
    return LOSS_ALIASES.get(lowered, lowered)


def metric_name(name: str) -> str:
    """RecBole's metric spelling in tfseq's: ``NDCG@10`` -> ``ndcg@10``, ``Hit@5`` -> ``hit@5``."""
    return str(name).strip().lower()


def canonical_values(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """``values`` with every key and model/loss/metric word in tfseq's spelling.

    Raises:
      ConfigError: two spellings of one setting (``n_layers`` and ``num_layers``) are both given.
    """
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in values.items():
        name = KEY_ALIASES.get(key, key)
        if name in out:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}{origin[name]} and {key} set the same setting ({name}); give one")
        if name == "model" and value is not None:
            value = model_name(value)
        elif name == "loss" and value is not None:
            value = loss_name(value)
        elif name == "valid_metric" and value is not None:
            value = metric_name(value)
        out[name] = value
        origin[name] = key
    return out
