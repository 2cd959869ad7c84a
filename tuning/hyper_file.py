"""RecBole ``hyper.test`` files -> search spaces (``--params_file``).

One hyperparameter per line, ``name kind values``, as RecBole's ``run_hyper.py``
reads them, so a RecBole user's file works unchanged::

    learning_rate loguniform -8,0
    dropout_prob uniform 0.0,0.5
    hidden_size quniform 64,256,64
    num_layers choice [1,2,3]
    attn_dropout_prob choice [0.2, 0.5]

(``loguniform`` bounds are exponents: the first line draws ``exp(uniform(-8, 0))``;
the third is one of 64, 128, 192, 256.) Bounds may be separated by commas (RecBole's form) or spaces; ``choice`` takes
a Python list literal (read with ``ast.literal_eval``, never ``eval``). Blank
lines and lines starting with ``#`` are skipped. RecBole's names for the same settings are
translated (``n_layers`` -> ``num_layers``, ``n_heads`` -> ``num_heads``,
``MAX_ITEM_LIST_LENGTH`` -> ``max_seq_len``, ``train_batch_size`` ->
``batch_size``, ``stopping_step`` -> ``patience``); any other name must be a
tfseq hyperparameter of the model and loss (checked by
:func:`tuning.spaces.check_space`). Every error names ``file:line``.
"""

from __future__ import annotations

import ast
import re

from tfseq.aliases import KEY_ALIASES
from tfseq.config import ConfigError
from tuning.spaces import KINDS, Param

_NUMBERS = {"uniform": 2, "loguniform": 2, "quniform": 3}


def parse_line(line: str, source: str) -> Param | None:
    """The :class:`Param` of one ``hyper.test`` line (None for a blank or comment line)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split(None, 2)
    if len(parts) < 3:
        raise ConfigError(f"{source}: expected 'name kind values' (e.g. 'learning_rate choice [0.001, 0.01]'), "
                          f"got {line.strip()!r}")
    name, kind, rest = parts
    name = KEY_ALIASES.get(name, name)
    if kind not in KINDS:
        raise ConfigError(f"{source}: unknown kind {kind!r} for {name}; kinds: {', '.join(KINDS)}")
    if kind == "choice":
        try:
            values = ast.literal_eval(rest)
        except (ValueError, SyntaxError):
            raise ConfigError(f"{source}: {name} choice needs a list like [0.1, 0.2], got {rest!r}") from None
        if not isinstance(values, (list, tuple)):
            raise ConfigError(f"{source}: {name} choice needs a list like [0.1, 0.2], got {rest!r}")
        return Param(name, kind, tuple(values), source=source)
    fields = [f for f in re.split(r"[,\s]+", rest.strip()) if f]
    expected = _NUMBERS[kind]
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        numbers = []
    if len(numbers) != expected:
        form = "low,high,q" if kind == "quniform" else "low,high"
        raise ConfigError(f"{source}: {name} {kind} needs {expected} numbers ({form}), got {rest!r}")
    q = numbers[2] if kind == "quniform" else 0.0
    return Param(name, kind, low=numbers[0], high=numbers[1], q=q, source=source)


def parse_text(text: str, path: str = "hyper.test") -> tuple[Param, ...]:
    """Every param of a ``hyper.test`` text; ``path`` names it in errors."""
    params = []
    seen: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        source = f"{path}:{number}"
        param = parse_line(line, source)
        if param is None:
            continue
        if param.name in seen:
            raise ConfigError(f"{source}: {param.name} is already defined at {seen[param.name]}")
        seen[param.name] = source
        params.append(param)
    if not params:
        raise ConfigError(f"{path}: no hyperparameters (expected lines like 'learning_rate choice [0.001, 0.01]')")
    return tuple(params)


def read_params_file(path: str) -> tuple[Param, ...]:
    """Reads a ``hyper.test`` file (any TF filesystem path)."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{path}: params file not found")
    with tf.io.gfile.GFile(path, "r") as f:
        return parse_text(f.read(), path)
