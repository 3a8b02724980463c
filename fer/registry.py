"""Named registries of pluggable things (detectors, ...): one decorated factory is one entry.

Modelled on timm's ``register_model``/``list_models``: adding a detector is one entry in
one place, and everything that lists or validates names (the CLI's choices and help, the
config checks) answers from the registry::

    DETECTORS = Registry("detector")

    @DETECTORS.register("yunet", "YuNet-n (default)", native_size=None)
    def _yunet(**kwargs): ...

    DETECTORS.names()            # ("yunet", ...)
    DETECTORS.create("yunet", min_face=20)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fer.errors import FerError


@dataclass(frozen=True)
class Entry:
    """One registered factory, its one-line description and any facts about it."""

    name: str
    description: str
    factory: Callable[..., Any]
    info: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name -> :class:`Entry`, in registration order. ``kind`` names the option in messages."""

    def __init__(self, kind: str, option: str | None = None):
        self.kind = kind
        self.option = option or f"--{kind}"
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **info: Any) -> Callable:
        """Decorator: register the decorated factory under ``name``."""

        def add(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, description, factory, info)
            return factory

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry:
        """The entry called ``name``; a one-line error names the option, the value and the choices."""
        try:
            return self._entries[name]
        except KeyError:
            raise FerError(f"{self.option}: unknown {self.kind} {name!r}; choose one of {', '.join(self)}") from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name).factory(**kwargs)

    def help(self) -> str:
        """``name: description`` for every entry, for command-line help."""
        return "; ".join(f"{e.name}: {e.description}" for e in self._entries.values())

    def __iter__(self):
        return iter(self._entries)
