"""Registry: one name -> (config dataclass, component class) table per kind of component."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its frozen config dataclass and the class to build.

    Attributes:
      name: the lowercase CLI word.
      config_cls: the config dataclass (importable without the component's dependencies).
      target: ``"package.module:Class"``, the class to build, imported on first use of :attr:`cls`.
    """

    name: str
    config_cls: type
    target: str
    loaded: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def cls(self) -> type[T]:
        """The component class (imports its module, hence TensorFlow, the first time)."""
        if self.loaded is not None:
            return self.loaded
        module_name, _, qualname = self.target.partition(":")
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
        return value


class Registry(Generic[T]):
    """Maps a lowercase CLI word to a config dataclass and a component class.

    Entries are declared by name, config class and ``"module:Class"``
    (:meth:`add`), so the names, defaults and hyperparameters are known (flags,
    ``--help``, config validation) without importing the components' modules and
    TensorFlow; the class is imported when first built. A name that is not
    registered is an error that lists the names that are.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def _check_new(self, name: str, config_cls: type) -> None:
        if name != name.lower() or not name:
            raise ValueError(f"{self.kind} names are lowercase CLI words, got {name!r}")
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"{self.kind} {name!r}: config must be a dataclass, got {config_cls}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def add(self, name: str, config_cls: type, target: str) -> None:
        """Declares ``name``: ``MODELS.add("sasrec", SASRecConfig, "tfseq.models.sasrec:SASRec")``."""
        self._check_new(name, config_cls)
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError(f"{self.kind} {name!r}: target must read 'package.module:Class', got {target!r}")
        self._entries[name] = Entry(name, config_cls, target)

    def register(self, name: str, config_cls: type) -> Callable[[type[T]], type[T]]:
        """Class decorator for a class defined where it is registered (tests, plugins)."""
        self._check_new(name, config_cls)

        def decorate(cls: type[T]) -> type[T]:
            self._check_new(name, config_cls)
            self._entries[name] = Entry(name, config_cls, f"{cls.__module__}:{cls.__qualname__}", loaded=cls)
            return cls

        return decorate

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def build(self, name: str, config: Any = None, **kwargs: Any) -> T:
        """Builds ``name`` from ``config`` (its default config when None)."""
        entry = self.get(name)
        if config is None:
            config = entry.config_cls()
        if not isinstance(config, entry.config_cls):
            raise TypeError(
                f"{self.kind} {name!r} takes a {entry.config_cls.__name__}, "
                f"got {type(config).__name__}"
            )
        factory: Callable[..., T] = entry.cls  # every registered class takes (config, ...)
        return factory(config, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
