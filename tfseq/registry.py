"""Registry: one name -> (class, config dataclass) table per kind of component."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: the class to build and its frozen config dataclass."""

    name: str
    cls: type[T]
    config_cls: type


class Registry(Generic[T]):
    """Maps a lowercase CLI word to a component class and its config dataclass.

    Entries are added by explicit imports (``tfseq.models`` imports every model
    module), so a name that is not registered is a programming error reported
    with the list of names that are.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config_cls: type) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@MODELS.register("sasrec", SASRecConfig)``."""
        if name != name.lower() or not name:
            raise ValueError(f"{self.kind} names are lowercase CLI words, got {name!r}")
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"{self.kind} {name!r}: config must be a dataclass, got {config_cls}")

        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, cls, config_cls)
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
