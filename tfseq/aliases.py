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
    "dataset": "input",  # a RecBole dataset folder (<name>/<name>.inter) or a file
    "USER_ID_FIELD": "user_col",
    "ITEM_ID_FIELD": "item_col",
    "TIME_FIELD": "time_col",
    "RATING_FIELD": "rating_col",
    "user_inter_num_interval": "min_user_inter",  # "[5,inf)" -> 5
    "item_inter_num_interval": "min_item_inter",
}
# RecBole's width names, which mean a transformer's model width (tfseq's embedding_size) except in GRU4Rec,
# where hidden_size is the GRU state: renamed only for a model whose config has no field of the old name.
WIDTH_ALIASES = {"hidden_size": "embedding_size", "attribute_hidden_size": "attribute_embedding_size"}

# RecBole's interval settings, read as their lower bound (tfseq's k-core has no upper bound).
INTERVAL_KEYS = ("user_inter_num_interval", "item_inter_num_interval")

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
        elif key in INTERVAL_KEYS and value is not None:
            value = interval_lower_bound(key, value, source)
        out[name] = value
        origin[name] = key
    return out


def model_width_names(values: Mapping[str, Any], fields: set[str] | frozenset[str]) -> dict[str, Any]:
    """``values`` with RecBole's width names in tfseq's for a model whose settings are ``fields``:
    ``hidden_size`` is ``embedding_size`` for SASRec or DIF-SR, and stays ``hidden_size`` for GRU4Rec.

    Raises:
      ConfigError: both spellings are given.
    """
    out = dict(values)
    for old, new in WIDTH_ALIASES.items():
        if old in out and old not in fields and new in fields:
            if new in out:
                raise ConfigError(f"{old} and {new} set the same setting ({new}); give one")
            out[new] = out.pop(old)
    return out


def interval_lower_bound(key: str, value: Any, source: str = "") -> int:
    """RecBole's ``"[5,inf)"`` as tfseq's minimum count 5; a finite upper bound is an error."""
    text = str(value).strip()
    low, sep, high = text.strip("[]()").partition(",")
    where = f"{source}: " if source else ""
    try:
        bound = int(float(low)) if low.strip() else 0
    except ValueError:
        raise ConfigError(f"{where}{key} must look like [5,inf), got {text!r}") from None
    if sep and high.strip().lower() not in ("inf", "+inf", ""):
        raise ConfigError(f"{where}{key} {text!r}: tfseq filters by a lower bound only; use [N,inf)")
    if not (text.startswith("[") or not sep):
        bound += 1  # "(5,inf)": more than 5
    return bound
