"""Command-line flags generated from frozen config dataclasses, and Beam flag checking.

Each stage owns a config dataclass; its field names are the flag names. A flag
whose name several dataclasses declare (``num_shards``) sets all of them. What
argparse does not know is handed to Beam's ``PipelineOptions``, after checking
that Beam knows it too, so a typo is an error instead of a silently ignored flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing
from typing import Any, Iterable

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if args else str
    return kind if kind in (int, float, str) else str


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, seen: set[str]) -> None:
    """Adds ``--<field>`` for every field of ``cls`` not already in ``seen`` (default: unset)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        if field.name in seen:
            continue
        seen.add(field.name)
        kind = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"default: {default!r}"
        if kind is bool:
            group.add_argument(
                f"--{field.name}", nargs="?", const=True, type=_bool, default=None, help=help_text
            )
        else:
            group.add_argument(
                f"--{field.name}", type=_flag_type(kind), default=None, help=help_text
            )


def values_for(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The flags the user actually set that belong to ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(namespace).items() if k in names and v is not None}


def _all_subclasses(cls: type) -> Iterable[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def beam_flag_names() -> set[str]:
    """Every flag some registered Beam PipelineOptions class declares."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    names: set[str] = set()
    for options_cls in _all_subclasses(PipelineOptions):
        sub = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
        try:
            options_cls._add_argparse_args(sub)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001  (a third-party options class that cannot register)
            continue
        for action in sub._actions:
            names.update(s.lstrip("-") for s in action.option_strings)
    del parser
    return names


def check_beam_args(beam_args: list[str], our_flags: Iterable[str]) -> None:
    """Raises SystemExit(2) naming any leftover flag that neither we nor Beam know."""
    known = beam_flag_names()
    for arg in beam_args:
        if not arg.startswith("--"):
            continue
        name = arg[2:].split("=", 1)[0]
        if name in known:
            continue
        close = difflib.get_close_matches(name, list(our_flags) + sorted(known), n=1)
        hint = f"; did you mean --{close[0]}?" if close else ""
        raise SystemExit(f"error: unknown flag --{name}{hint}")
