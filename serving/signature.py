"""The serving contract: signature, input and output names, and the version-directory layout.

``serving_default``: ``history`` (string ``[B, L]``, raw item IDs oldest first,
``""`` = padding) -> ``item_ids`` (string ``[B, K]``) and ``scores`` (float32
``[B, K]``), best first. ``embed``: ``history`` -> ``embedding`` (float32
``[B, D]``), the query vector for an external nearest-neighbour index.

Models that read the user (``uses_user``, e.g. ``hrm``) take a second input in
both signatures: ``user_id`` (string ``[B]``, raw user IDs; ``""`` or an
unknown ID = no user). Its SignatureDef default is an empty vector, which
means "no users": TF Serving fills a missing input from that default, so a
request with ``history`` alone is answered as if every user were unknown.
ID-only models keep ``history`` as their only input.

Versions live in ``<model_base_path>/<integer>/`` (TF Serving's layout); any
other name, such as an export's hidden temporary directory, is not a version.
"""

import tensorflow as tf

SERVING_SIGNATURE = "serving_default"  # TF Serving's default signature key
EMBED_SIGNATURE = "embed"

HISTORY = "history"  # input of both signatures
USER_ID = "user_id"  # second input of both signatures, only for models that use users
ITEM_IDS = "item_ids"
SCORES = "scores"
EMBEDDING = "embedding"

PAD_TOKEN = ""  # padding in requests, and in responses where fewer than K items are eligible

WARMUP_FILE = (
    "assets.extra/tf_serving_warmup_requests"  # where TF Serving looks for warm-up records
)
EXPORT_INFO_FILE = (
    "assets.extra/tfseq_export.json"  # what was exported, from what (ignored by servers)
)


def list_versions(model_base_path: str) -> list[int]:
    """Integer-named subdirectories of ``model_base_path``, ascending; ``[]`` if it is missing."""
    if not tf.io.gfile.isdir(model_base_path):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(model_base_path))
    return sorted(int(name) for name in names if name.isdigit())
