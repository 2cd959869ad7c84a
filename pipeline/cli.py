"""The one flag layer: every entry point's command line (and config file) -> typed stage configs.

Each stage owns a frozen config dataclass whose field names are its flags
(``ExampleGenConfig``, ``TransformConfig``, ``TrainConfig``, ``PusherConfig``);
every registered model and loss config adds its hyperparameters. No name
belongs to two stage configs (a test enforces it), so a flag sets exactly one
thing. Help lists every flag with its default and its docstring; model and loss
hyperparameters list the models/losses that take them and each one's default.

Values come, in increasing precedence, from the defaults, a YAML or JSON
config file (``--config``; flat keys, any flag name) and the flags. RecBole's
spellings are accepted (:mod:`tfseq.aliases`). argparse abbreviations are off:
``--learning_rat`` is an error with a suggestion, not ``--learning_rate``.
Everything is validated here, before the first stage runs. Flags no config
knows are handed to Beam's ``PipelineOptions`` only if Beam knows them.

Entry points (``pipeline.run``, ``tuning.search``, ``bench/``) call
:func:`add_config_flags` + :func:`parse` or :func:`build_configs`, then the
functions of :mod:`pipeline.pipeline`; nothing turns configs back into argv.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import re
import typing
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pipeline.configs import ExampleGenConfig, PipelineConfigs, TransformConfig
from pipeline.evaluator import EvaluatorConfig
from pipeline.pusher import PusherConfig
from tfseq import aliases
from tfseq.config import ConfigError, TrainConfig, field_names, from_dict
from tfseq.data.formats import ALL_FORMATS
from tfseq.experiment import DEFAULT_LOSS, DEFAULT_MODEL, ExperimentConfig, model_train_defaults

STAGE_SECTIONS: dict[str, type] = {
    "ExampleGen": ExampleGenConfig,
    "Transform": TransformConfig,
    "Trainer": TrainConfig,
    "Evaluator": EvaluatorConfig,
    "Pusher": PusherConfig,
}
EXPERIMENT_KEYS = ("model", "loss")
CONFIG_FLAG = "config"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# ----------------------------------------------------------------------------- values -> configs


def _section_of(key: str) -> str | None:
    for name, cls in STAGE_SECTIONS.items():
        if key in field_names(cls):
            return name
    return None


def hyperparameter_owners() -> dict[str, list[tuple[str, str, Any]]]:
    """``{name: [("model" | "loss", registry key, default), ...]}`` over every registered config."""
    from tfseq.losses import LOSSES
    from tfseq.models import MODELS

    owners: dict[str, list[tuple[str, str, Any]]] = {}
    for kind, registry in (("model", MODELS), ("loss", LOSSES)):
        for key in registry.names():
            for field in dataclasses.fields(registry.get(key).config_cls):
                if field.name in field_names(TrainConfig):
                    continue  # routed to TrainConfig too (max_seq_len): one value, one flag
                owners.setdefault(field.name, []).append((kind, key, _default(field)))
    return owners


def model_train_defaults_of(name: str) -> dict[str, Any]:
    """``{model: its own default}`` for TrainConfig field ``name``, over the models that set one."""
    from tfseq.models import MODELS

    return {model: defaults[name] for model in MODELS.names()
            if name in (defaults := model_train_defaults(model))}


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _unknown(key: str, known: Iterable[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}unknown setting {_cut(repr(key), 80)}{hint}")


def build_configs(
    values: Mapping[str, Any],
    *,
    sections: Sequence[str] = tuple(STAGE_SECTIONS),
    source: str = "",
) -> PipelineConfigs:
    """Validated configs from flat ``values`` (tfseq's or RecBole's names); unknown keys are errors.

    Args:
      values: ``{"input": ..., "model": "SASRec", "n_layers": 2, ...}``: any field of the
        stage configs, ``model``, ``loss``, and the chosen model's and loss's hyperparameters.
      sections: the stage configs this entry point takes; a key of another is an error.
      source: where the values come from (a file name), for error messages.
    """
    with short_errors():
        return _build_configs(values, sections, source)


def _build_configs(values: Mapping[str, Any], sections: Sequence[str], source: str) -> PipelineConfigs:
    check_lengths(values, source)
    values = aliases.canonical_values(values, source)
    owners = hyperparameter_owners()
    by_section: dict[str, dict[str, Any]] = {name: {} for name in STAGE_SECTIONS}
    experiment: dict[str, Any] = {}
    for key, value in values.items():
        section = _section_of(key)
        if key in EXPERIMENT_KEYS:
            experiment[key] = value
        elif section == "Trainer" or (section is None and (key in owners or key in aliases.WIDTH_ALIASES)):
            experiment[key] = value
        elif section is not None and section in sections:
            by_section[section][key] = value
        elif section is not None:
            raise ConfigError(f"{source + ': ' if source else ''}--{key} ({section}) does not apply here")
        else:
            known = [*EXPERIMENT_KEYS, *owners, *(f for s in sections for f in field_names(STAGE_SECTIONS[s]))]
            raise _unknown(key, known, source)
    example_gen = by_section["ExampleGen"]
    if example_gen.get("input") and "input_format" not in example_gen:
        example_gen["input_format"] = guess_format(str(example_gen["input"]), source)
    model = str(experiment.get("model", DEFAULT_MODEL))
    loss = str(experiment.get("loss", DEFAULT_LOSS))
    _check_registered(model, loss, source)
    try:
        experiment = aliases.model_width_names(experiment, ExperimentConfig.known_keys(model, loss))
    except ConfigError as e:
        raise ConfigError(f"{source + ': ' if source else ''}{e}") from None
    for key in experiment:
        if key in EXPERIMENT_KEYS or key in field_names(TrainConfig):
            continue
        takers = {f"{kind} {name}" for kind, name, _ in owners.get(key, ())}
        if f"model {model}" not in takers and f"loss {loss}" not in takers:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}--{key} is not a setting of model {model} or loss {loss}; "
                f"it belongs to {', '.join(sorted(takers))}"
            )
    if "Transform" in sections and not by_section["Transform"].get("item_features"):
        from tfseq.experiment import uses_item_features

        if uses_item_features(model):
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}model {model} uses item side features: give --item_features PATH "
                              "(S3-Rec *_item2attributes.json, RecBole .item, or csv/parquet with --item_feature_cols)"
                              + _item_file_hint(str(by_section["ExampleGen"].get("input", ""))))
    try:
        return PipelineConfigs(
            example_gen=from_dict(ExampleGenConfig, by_section["ExampleGen"]),
            transform=from_dict(TransformConfig, by_section["Transform"]),
            experiment=ExperimentConfig.from_flat(experiment),
            evaluator=from_dict(EvaluatorConfig, by_section["Evaluator"]),
            pusher=from_dict(PusherConfig, by_section["Pusher"]),
        )
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


# File names whose format is certain; any other input names its --input_format.
_FORMAT_BY_SUFFIX = {".inter": "recbole", ".csv": "csv", ".parquet": "parquet"}
_FORMAT_BY_NAME = {"u.data": "movielens", "ratings.dat": "movielens"}


def _recbole_folder_file(path: str, suffix: str) -> str:
    """``<path>/<its name><suffix>`` when ``path`` is a local folder holding it (a RecBole dataset), else ""."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    candidate = os.path.join(path, name + suffix)
    return candidate if name and "://" not in path and os.path.isfile(candidate) else ""


def _item_file_hint(path: str) -> str:
    item_file = _recbole_folder_file(path, ".item") if path else ""
    return f"; the dataset folder has {item_file}: --item_features {item_file}" if item_file else ""


def guess_format(path: str, source: str = "") -> str:
    """The ``input_format`` of ``path`` when its name says it (``.inter``, ``.csv``, ``u.data`` ...).

    A RecBole dataset folder (``ml-100k/`` holding ``ml-100k.inter``) is ``recbole``.
    """
    if _recbole_folder_file(path, ".inter"):
        return "recbole"
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".bz2", ".zst", ".xz", ".deflate"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name in _FORMAT_BY_NAME:
        return _FORMAT_BY_NAME[name]
    for suffix, fmt in _FORMAT_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    where = f"{source}: " if source else ""
    raise ConfigError(f"{where}--input {path}: name its format with --input_format "
                      f"({', '.join(f for f in ALL_FORMATS if f != 'synthetic')})")


def _check_registered(model: str, loss: str, source: str) -> None:
    from tfseq.losses import LOSSES
    from tfseq.models import MODELS

    where = f"{source}: " if source else ""
    if model not in MODELS:
        raise ConfigError(f"{where}unknown model {model!r}; models: {', '.join(MODELS.names())}")
    if loss not in LOSSES:
        raise ConfigError(f"{where}unknown loss {loss!r}; losses: {', '.join(LOSSES.names())}")


MAX_CONFIG_BYTES = 1 << 20  # a config file is a page of settings, not data
MAX_CONFIG_DEPTH = 3  # flat keys; a value may be a list (e.g. bless_threshold), no deeper


def load_config_file(path: str) -> dict[str, Any]:
    """A flat YAML (``.yaml``/``.yml``) or JSON config file; errors name the file and line.

    A local file is read without TensorFlow (a bad setting is reported at once);
    ``gs://``-style paths through ``tf.io.gfile``. YAML anchors and aliases are
    refused (a few hundred bytes of nested aliases expand to gigabytes), as are
    files over ``MAX_CONFIG_BYTES``, text that is not UTF-8 and nesting deeper
    than ``MAX_CONFIG_DEPTH``.
    """
    if "://" in path:
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise ConfigError(f"{path}: no such config file")
        with tf.io.gfile.GFile(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder, not a config file") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; a config file holds flat settings")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    if path.endswith((".yaml", ".yml")):
        data = _load_yaml(path, text)
    else:
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        except (RecursionError, ValueError) as e:  # nesting, or an integer of thousands of digits
            raise ConfigError(f"{path}: not a usable JSON config: {_cut(str(e))}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting -> value, got {type(data).__name__}")
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise ConfigError(f"{path}: nested deeper than a flat config file (setting: value or a list)")
    if CONFIG_FLAG in data:
        raise ConfigError(f"{path}: a config file cannot name another config file")
    return data


def _load_yaml(path: str, text: str) -> Any:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """SafeLoader without anchors and aliases: the expansion bomb of a tiny file."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted",
                                                  event.start_mark)
            event = self.peek_event()
            if getattr(event, "anchor", None):
                raise yaml.composer.ComposerError(None, None, "anchors (&name) are not accepted",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    try:
        data = yaml.load(text, Loader=NoAliasLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {_cut(str(getattr(e, 'problem', e)))}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested deeper than a flat config file") from None
    return {} if data is None else data


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_CONFIG_DEPTH + 1:
        return level
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level - 1 if level > 1 else 1


def _cut(text: str, limit: int = 200) -> str:
    """An error message echoes at most ``limit`` characters of what it read."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


MAX_VALUE_CHARS = 4096  # the longest path a file system takes (PATH_MAX): no setting is longer


def check_lengths(values: Mapping[str, Any], source: str = "") -> None:
    """Raises ConfigError naming the setting whose text (or an entry of its list) is over ``MAX_VALUE_CHARS``."""
    for key, value in values.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and len(item) > MAX_VALUE_CHARS:
                where = f"{source}: " if source else ""
                raise ConfigError(f"{where}--{_cut(str(key), 80)}: a value of {len(item)} characters; a setting "
                                  f"is at most {MAX_VALUE_CHARS}")


MAX_ERROR_CHARS = 400  # an error line: what is wrong and the hint at its end, not a whole echoed value


def short_message(text: str) -> str:
    """``text`` cut in the middle to about ``MAX_ERROR_CHARS``: its start says what is wrong, its end the hint."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:300]}... ({len(text)} characters) ...{text[-100:]}"


@contextlib.contextmanager
def short_errors() -> Iterator[None]:
    """Cuts the message of a ConfigError raised in the block (a value from a config file may be a
    megabyte long, and every check echoes what it refuses) to :func:`short_message`."""
    try:
        yield
    except ConfigError as e:
        if len(str(e)) <= MAX_ERROR_CHARS:
            raise
        raise ConfigError(short_message(str(e))) from None


# ----------------------------------------------------------------------------- argparse


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag_type(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if args else str
    return kind if kind in (int, float, str) else str


def field_docs(cls: type) -> dict[str, str]:
    """Per-field text of a Google-style ``Attributes:`` docstring section (``a, b: text`` too)."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    body = doc.split("Attributes:", 1)[1]
    docs: dict[str, str] = {}
    current: list[str] = []
    for line in body.splitlines():
        match = re.match(r"^\s{4,8}([a-z_0-9, *]+):\s*(.*)$", line)
        if match and not line.startswith(" " * 9):
            current = [n.strip() for n in match.group(1).split(",") if n.strip()]
            for name in current:
                docs[name] = match.group(2).strip()
        elif line.strip() and current:
            for name in current:
                docs[name] += " " + line.strip()
        elif not line.strip() and docs:
            current = []
    return {k: plain_text(v).replace("%", "%%") for k, v in docs.items()}


def plain_text(docstring_text: str) -> str:
    """Docstring markup as a terminal shows it: ``x`` -> x, :class:`~a.B` -> B, :func:`f` -> f."""
    text = re.sub(r":[a-z]+:`~[\w.]*?\.?(\w+)`", r"\1", docstring_text)
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _add(group: Any, name: str, kind: Any, help_text: str, aliases_of: dict[str, list[str]], **extra: Any) -> None:
    names = [f"--{name}", *(f"--{a}" for a in aliases_of.get(name, ()))]
    if kind is bool:
        group.add_argument(*names, dest=name, nargs="?", const=True, type=_bool, metavar="BOOL",
                           default=argparse.SUPPRESS, help=help_text, **extra)
    else:
        group.add_argument(*names, dest=name, type=extra.pop("type", _flag_type(kind)),
                           default=argparse.SUPPRESS, help=help_text, **extra)


def add_config_flags(
    parser: argparse.ArgumentParser,
    sections: Sequence[str] = tuple(STAGE_SECTIONS),
    model_flag: bool = True,
) -> None:
    """Adds ``--config``, ``--model`` (unless ``model_flag`` is off: the entry point names the model),
    ``--loss`` and every flag of ``sections`` and of every model and loss."""
    from tfseq.losses import LOSSES
    from tfseq.metrics import METRICS
    from tfseq.models import MODELS

    reverse: dict[str, list[str]] = {}
    for alias, name in aliases.KEY_ALIASES.items():
        reverse.setdefault(name, []).append(alias)
    parser.add_argument(f"--{CONFIG_FLAG}", metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML or JSON file of settings (flat keys: any flag name, RecBole's names too); "
                        "flags override it")
    experiment = parser.add_argument_group("model and loss")
    if model_flag:
        experiment.add_argument("--model", type=aliases.model_name, choices=MODELS.names(), default=argparse.SUPPRESS,
                                help=f"model registry key (default {DEFAULT_MODEL}; RecBole's class names "
                                "and core = core_trm accepted)")
    _add(experiment, "loss", str, f"loss registry key (default {DEFAULT_LOSS}; RecBole's CE, BPR accepted)",
         reverse, type=aliases.loss_name, choices=LOSSES.names())
    for section in sections:
        cls = STAGE_SECTIONS[section]
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        group = parser.add_argument_group(f"{section} ({cls.__name__})")
        for field in dataclasses.fields(cls):
            default = _default(field)
            help_text = f"{docs.get(field.name, '')} (default: {default!r})".strip()
            extra: dict[str, Any] = {}
            if field.name == "input_format":
                extra["choices"] = ALL_FORMATS
            if field.name == "bless_threshold":
                extra["action"] = "append"  # --bless_threshold ndcg@10=0.03 --bless_threshold recall@10=0.05
            if field.name in ("topk", "metrics"):
                extra["nargs"] = "+"  # RecBole's --topk 5 10 20 (commas work too)
            if cls is TrainConfig:
                by_model = model_train_defaults_of(field.name)
                if by_model:
                    help_text += "; the models' own: " + ", ".join(f"{m}: {v!r}" for m, v in by_model.items())
            if field.name == "valid_metric":
                extra["type"] = aliases.metric_name
                help_text += f"; metrics: {', '.join(METRICS)}"
            _add(group, field.name, hints[field.name], help_text, reverse, **extra)
    owners = hyperparameter_owners()
    groups = {kind: parser.add_argument_group(f"{kind} hyperparameters (each applies to the {plural} listed)")
              for kind, plural in (("model", "models"), ("loss", "losses"))}
    for name in sorted(owners):
        kinds = {kind for kind, _, _ in owners[name]}
        takers = ", ".join(f"{key}: {default!r}" for _, key, default in owners[name])
        hint_types = set()
        for kind, key, _ in owners[name]:
            registry = MODELS if kind == "model" else LOSSES
            hint_types.add(typing.get_type_hints(registry.get(key).config_cls)[name])
        flag_kind = hint_types.pop() if len(hint_types) == 1 else str
        group = groups["model" if "model" in kinds else "loss"]
        _add(group, name, flag_kind, f"defaults by {'/'.join(sorted(kinds))}: {takers}", reverse)


class FlagParser(argparse.ArgumentParser):
    """An ArgumentParser whose error is two lines: a short usage and the message.

    argparse's own usage line lists every flag (about 70 lines here), which buries the error.
    """

    def short_usage(self) -> str:
        positionals = [a.metavar or a.dest for a in self._actions if not a.option_strings]
        return f"usage: {' '.join([self.prog, *map(str, positionals)])} [flags]  (--help lists them)"

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.short_usage()}\n{self.prog}: error: {short_message(message)}\n")


def make_parser(prog: str, description: str) -> FlagParser:
    """The parser of an entry point: no abbreviations, two-line errors, ``--startup_logs``."""
    parser = FlagParser(
        prog=prog, description=description, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Flags not listed here go to Apache Beam (e.g. --runner=DirectRunner, --direct_num_workers=2, "
        "--direct_running_mode=multi_processing) and must be Beam's.",
    )
    parser.add_argument("--startup_logs", action="store_true",
                        help="keep TensorFlow's and Beam's start-up logs (hidden by default)")
    return parser


@dataclasses.dataclass(frozen=True)
class ParsedValues:
    """A command line before it becomes configs (entry points that add values of their own).

    Attributes:
      own: the entry point's own options (not config fields).
      flags: config values set by flags, in tfseq's spelling.
      values: the config file's values overridden by ``flags``.
      source: the config file ("" without one), for error messages.
      beam_args: flags for Beam's ``PipelineOptions``.
    """

    own: argparse.Namespace
    flags: dict[str, Any]
    values: dict[str, Any]
    source: str
    beam_args: list[str]


def parse_values(
    parser: argparse.ArgumentParser, argv: Sequence[str], sections: Sequence[str] = tuple(STAGE_SECTIONS)
) -> ParsedValues:
    """Parses ``argv`` into the entry point's options and the flat config values (file < flags)."""
    with short_errors():
        return _parse_values(parser, argv, sections)


def _parse_values(
    parser: argparse.ArgumentParser, argv: Sequence[str], sections: Sequence[str]
) -> ParsedValues:
    args, beam_args = parser.parse_known_args(list(argv))
    config_keys = {"model", "loss", *hyperparameter_owners(),
                   *(f for s in sections for f in field_names(STAGE_SECTIONS[s]))}
    flags = {k: v for k, v in vars(args).items() if k in config_keys}
    check_beam_args(beam_args, [a.dest for a in parser._actions])
    beam_args = runner_aliases(beam_args)
    check_lengths(vars(args))
    source = getattr(args, CONFIG_FLAG, None) or ""
    from_file = load_config_file(source) if source else {}
    check_lengths(from_file, source)
    _apply_own_options(parser, args, from_file, argv, config_keys, source)
    values = aliases.canonical_values(from_file, source) if source else {}
    values.update(flags)
    own = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in config_keys and k != CONFIG_FLAG})
    return ParsedValues(own, flags, values, source, beam_args)


def _apply_own_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, from_file: dict[str, Any],
    argv: Sequence[str], config_keys: set[str], source: str,
) -> None:
    """Moves the entry point's own options (``output_dir``, ``stop_after`` ...) out of a config file's
    values into ``args``, unless the command line gave them: a config file takes every flag."""
    for action in parser._actions:
        key = action.dest
        if key in config_keys or key in (CONFIG_FLAG, "help") or key not in from_file:
            continue
        value = from_file.pop(key)
        if any(arg == opt or arg.startswith(opt + "=") for arg in argv for opt in action.option_strings):
            continue  # the flag wins
        try:
            if action.nargs == 0:  # store_true
                value = _bool(str(value))
            elif callable(action.type):
                value = action.type(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            raise ConfigError(f"{source}: {key}: cannot read {value!r}") from None
        if action.choices is not None and value not in action.choices:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
        setattr(args, key, value)


def parse(
    parser: argparse.ArgumentParser, argv: Sequence[str], sections: Sequence[str] = tuple(STAGE_SECTIONS)
) -> tuple[argparse.Namespace, PipelineConfigs, list[str]]:
    """Parses ``argv``: (the entry point's own options, the validated configs, Beam's flags)."""
    parsed = parse_values(parser, argv, sections)
    configs = build_configs(parsed.values, sections=sections, source=parsed.source)
    return parsed.own, configs, parsed.beam_args


def beam_flag_names() -> set[str]:
    """Every flag some registered Beam PipelineOptions class declares (imports Beam, whose optional-client
    warnings are not shown: the answer is about a flag)."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        from apache_beam.options.pipeline_options import PipelineOptions

        try:  # registers DaskOptions (--dask_client_address ...) where the dask extra is installed
            import apache_beam.runners.dask.dask_runner  # noqa: F401
        except ImportError:
            pass
    finally:
        root.setLevel(level)

    def subclasses(cls: type) -> Iterable[type]:
        sub: type
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    names: set[str] = set()
    for options_cls in subclasses(PipelineOptions):
        sub = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
        try:
            options_cls._add_argparse_args(sub)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001  (a third-party options class that cannot register)
            continue
        for action in sub._actions:
            names.update(s.lstrip("-") for s in action.option_strings)
    return names


def check_beam_args(beam_args: Sequence[str], our_flags: Iterable[str]) -> None:
    """Raises ConfigError naming a leftover argument that is not a flag Beam knows."""
    if not beam_args:
        return
    known = beam_flag_names()
    takes_value = False
    for arg in beam_args:
        if not arg.startswith("--"):
            if takes_value:  # the value of "--runner DirectRunner"
                takes_value = False
                continue
            raise ConfigError(f"unexpected argument {arg!r}")
        name = arg[2:].split("=", 1)[0]
        if name == "runner" and "=" in arg:
            check_runner(arg.split("=", 1)[1])
        elif name == "runner":
            index = list(beam_args).index(arg)
            check_runner(beam_args[index + 1] if index + 1 < len(beam_args) else "")
        if name in known:
            takes_value = "=" not in arg
            continue
        close = difflib.get_close_matches(name, [*our_flags, *sorted(known)], n=1)
        hint = f"; did you mean --{close[0]}?" if close else ""
        raise ConfigError(f"unknown flag --{name}{hint}")


DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"  # Beam knows no short name for it
DASK_NAMES = ("dask", "daskrunner")


def runner_aliases(beam_args: Sequence[str]) -> list[str]:
    """``beam_args`` with ``--runner=DaskRunner`` (or ``dask``) spelt as the class path Beam needs."""
    out = list(beam_args)
    for i, arg in enumerate(out):
        if arg.startswith("--runner=") and arg.split("=", 1)[1].lower() in DASK_NAMES:
            out[i] = f"--runner={DASK_RUNNER}"
        elif arg == "--runner" and i + 1 < len(out) and out[i + 1].lower() in DASK_NAMES:
            out[i + 1] = DASK_RUNNER
    return out


def check_runner(name: str) -> None:
    """Raises ConfigError, suggesting the closest known name, when Beam cannot create runner ``name``.

    Accepts what ``apache_beam.runners.runner.create_runner`` accepts: a known runner's
    name in any case, with or without its ``Runner`` suffix, or a dotted class path.
    """
    from apache_beam.options.pipeline_options import StandardOptions

    if "." in name or name.lower() in DASK_NAMES:
        return  # a fully qualified PipelineRunner class (Beam imports it), or Dask (see runner_aliases)
    known = list(StandardOptions.KNOWN_RUNNER_NAMES)
    lowered = {runner.lower(): runner for runner in known}
    if name and (name.lower() in lowered or name.lower() + "runner" in lowered):
        return
    spellings = {**lowered, **{key.removesuffix("runner"): runner for key, runner in lowered.items()}}
    close = difflib.get_close_matches(name.lower(), list(spellings), n=1, cutoff=0.6)
    hint = f"; did you mean --runner={spellings[close[0]]}?" if close else ""
    raise ConfigError(f"unknown Beam runner {name!r}{hint} (runners: {', '.join(known)})")
