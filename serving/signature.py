"""The serving contract: signature, input and output names, and the version-directory layout.

``serving_default``: ``history`` (string ``[B, L]``, raw item IDs oldest first,
``""`` = padding) -> ``item_ids`` (string ``[B, K]``) and ``scores`` (float32
``[B, K]``), best first, and ``fallback`` (bool ``[B]``): True where the row
holds no known item and is answered by the popularity fallback rather than
from its history. Models that read users also return ``unknown_user`` (bool
``[B]``): True where a non-empty ``user_id`` is not a training user, so the row
is answered without a user. ``embed``: ``history`` -> ``embedding`` (float32
``[B, D]``), the query vector for an external nearest-neighbour index (zeros
for a history with no known item).

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

from typing import Iterable

SERVING_SIGNATURE = "serving_default"  # TF Serving's default signature key
EMBED_SIGNATURE = "embed"

HISTORY = "history"  # input of both signatures
USER_ID = "user_id"  # the input of side input user_ids (models that read users)
TOP_RAW_IDS = "item_ids"  # [B, K] string: the raw IDs of the top K items (not vocabulary indices)
SCORES = "scores"
FALLBACK = "fallback"  # [B] bool: the row is the popularity fallback (no known item in its history)
UNKNOWN_USER = "unknown_user"  # [B] bool, models that read users: a user_id was given but is not known
EMBEDDING = "embedding"

PAD_TOKEN = ""  # padding in requests, and in responses where fewer than K items are eligible

WARMUP_FILE = (
    "assets.extra/tf_serving_warmup_requests"  # where TF Serving looks for warm-up records
)
MAX_VERSION = 2**63 - 1  # TF Serving's versions are int64; a longer digit string is not a version
EXPORT_INFO_FILE = (
    "assets.extra/tfseq_export.json"  # what was exported, from what (ignored by servers)
)


def side_input_name(key: str) -> str:
    """The signature input that carries side input ``key`` (a ``tfseq.data.schema.SIDE_INPUTS`` name)."""
    from tfseq.data import schema  # TensorFlow's: the names above are read without it (serving.client's flags)

    schema.check_side_inputs([key])
    return USER_ID if key == schema.USER_IDS else schema.EVENT_COLUMNS[key].input_name


def list_versions(model_base_path: str) -> list[int]:
    """The versions under ``model_base_path`` (:func:`version_folders`), ascending; ``[]`` if it is missing."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(model_base_path):
        return []
    folders, _ = version_folders(name.rstrip("/") for name in tf.io.gfile.listdir(model_base_path))
    return sorted(folders)


def version_folders(names: Iterable[str]) -> tuple[dict[int, str], dict[str, str]]:
    """``{version: folder name}`` of the names that are versions, and ``{name: why not}`` of the others.

    A version's name is ASCII digits (``str.isdigit`` alone admits ``²`` and
    ``٣``, which are not versions) of at most int64's largest value; ``0003`` is
    version 3, read from ``0003/``. This is TF Serving's rule: its file system
    source (``file_system_storage_path_source.cc``) parses each child's name
    with ``strings::safe_strto64``, a decimal int64 parse that takes leading
    zeros. That parse also takes spaces around the digits and a leading ``-``;
    here such names are not versions (no export writes them, and a negative
    version is never the highest), so they are ignored like any other name.

    When several names spell one version (``3`` and ``0003``), TF Serving sorts
    the names and keeps the last, with a warning; so does this: version 3 is
    read from ``3/``, and ``0003`` is among the names skipped, its reason naming
    the folder used. Hidden names (``.3.tmp-...``, an export in progress) are
    left out of both.
    """
    folders: dict[int, str] = {}
    skipped: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith("."):
            continue
        if not (name.isascii() and name.isdigit()):
            skipped[name] = "not a version (version folders are named by ASCII digits, such as 1/)"
            continue
        version = int(name)
        if version > MAX_VERSION:
            skipped[name] = f"not a version (past the largest version number, {MAX_VERSION})"
            continue
        if version in folders:
            skipped[folders[version]] = f"also names version {version}; it is loaded from {name}/ instead"
        folders[version] = name
    return folders, skipped
