"""The serving contract: signature, input and output names, and the version-directory layout.

``serving_default``: ``history`` (string ``[B, L]``, raw item IDs oldest first,
``""`` = padding) -> ``item_ids`` (string ``[B, K]``) and ``scores`` (float32
``[B, K]``), best first. ``embed``: ``history`` -> ``embedding`` (float32
``[B, D]``), the query vector for an external nearest-neighbour index.

A model with side inputs (its ``side_inputs``, ``tfseq.data.schema.SIDE_INPUTS``
names) takes one more optional input per side input in both signatures, named
by :func:`side_input_name`:

* ``user_ids`` -> ``user_id`` (string ``[B]``, raw user IDs; ``""`` or an
  unknown ID = no user), e.g. ``hrm``;
* a per-event column -> its ``EventColumn.input_name`` (int64 ``[B, L]``, one
  raw value per ``history`` entry, e.g. ``hour``: 0..23; -1 or out of range =
  unknown).

Each one's SignatureDef default is an empty tensor, which means "not given":
TF Serving fills a missing input from that default, so a request with
``history`` alone is answered as if every side input were unknown. ID-only
models keep ``history`` as their only input.

Versions live in ``<model_base_path>/<integer>/`` (TF Serving's layout); any
other name, such as an export's hidden temporary directory, is not a version.
"""

SERVING_SIGNATURE = "serving_default"  # TF Serving's default signature key
EMBED_SIGNATURE = "embed"

HISTORY = "history"  # input of both signatures
USER_ID = "user_id"  # the input of side input user_ids (models that read users)
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


def side_input_name(key: str) -> str:
    """The signature input that carries side input ``key`` (a ``tfseq.data.schema.SIDE_INPUTS`` name)."""
    from tfseq.data import schema  # TensorFlow's: the names above are read without it (serving.client's flags)

    schema.check_side_inputs([key])
    return USER_ID if key == schema.USER_IDS else schema.EVENT_COLUMNS[key].input_name


def list_versions(model_base_path: str) -> list[int]:
    """Integer-named subdirectories of ``model_base_path``, ascending; ``[]`` if it is missing."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(model_base_path):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(model_base_path))
    return sorted(int(name) for name in names if name.isdigit())
