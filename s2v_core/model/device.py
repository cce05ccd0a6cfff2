"""The one place that turns a ``--device`` value into a :class:`torch.device`."""

from __future__ import annotations

import torch

from s2v_core.errors import S2VError

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(S2VError, ValueError):
    """A device name torch does not know, or CUDA asked for on a machine without it."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other values are checked and returned.

    Raises
    ------
    DeviceError
        Not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, or CUDA is not available here.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev
