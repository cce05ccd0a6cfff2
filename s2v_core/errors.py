"""Exceptions whose messages are shown to users as they are (CLI and app).

Also :func:`lazy_exports`, the one lazy re-export of the package ``__init__`` files (its
``AttributeError`` is Python's own): it sits here, at layer 0, so that every package may use it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "ChannelMappingError",
    "HypnogramError",
    "InputFileError",
    "S2VError",
    "lazy_exports",
]


class S2VError(Exception):
    """Base class for every error that sleep2vec studio reports to a user.

    The message must say what is wrong and, where possible, what is allowed.
    """


class InputFileError(S2VError):
    """A file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{Path(self.path).name}: " if self.path else ""
        super().__init__(f"{where}{problem}")


class HypnogramError(InputFileError):
    """A hypnogram cannot be parsed, has unknown labels, or does not fit its signal."""


class ChannelMappingError(S2VError):
    """No usable channel, or an override names a channel or modality that does not exist."""


def lazy_exports(
    package: str,
    where: Mapping[str, str | tuple[str, str]],
    namespace: dict[str, Any],
    *,
    cache: bool = True,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) that import each name on first use.

    ``where`` maps a public name to the module that defines it, or to ``(module, name there)``;
    ``namespace`` is the package's ``globals()``, where a name is kept once loaded (unless
    ``cache=False``) and whose ``__all__`` ``__dir__`` lists. Only the standard library is
    imported here, so binding them costs nothing::

        __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = where[name]
        module, attr = target if isinstance(target, tuple) else (target, name)
        value = getattr(importlib.import_module(module), attr)
        if cache:
            namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace["__all__"]))

    return __getattr__, __dir__
