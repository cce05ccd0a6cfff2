"""Exceptions whose messages are shown to users as they are (CLI and app)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ChannelMappingError",
    "HypnogramError",
    "InputFileError",
    "S2VError",
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
