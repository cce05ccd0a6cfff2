"""The one place that turns a ``--device`` value into a :class:`torch.device`."""

from __future__ import annotations

import torch

from s2v_core.errors import S2VError

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(S2VError, ValueError):
    """A device name torch does not know, or CUDA asked for on a machine without it."""


_ALLOWED = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
_HINTS = {"gpu": "; for an NVIDIA GPU use 'cuda'", "tpu": "; TPUs are not supported",
          "cuda0": "; did you mean 'cuda:0'?", "metal": "; for an Apple GPU use 'mps'"}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA when available, else CPU; other values are checked and returned.

    Only the CPU, CUDA (``cuda``, ``cuda:N``) and Apple's MPS are accepted, and only when this
    machine has them: anything else (``gpu``, ``tpu``, ``meta``, ``cuda:7`` on a one-GPU machine)
    is a one-line :class:`DeviceError` instead of a PyTorch assertion deep in model loading.

    Raises
    ------
    DeviceError
        Not one of the accepted names, or the device is not available on this machine.
    """
    if device is None or str(device).strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device).strip()
    try:
        dev = torch.device(text.lower())
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps") or (dev.index is not None and dev.type != "cuda"):
        hint = _HINTS.get(text.lower().replace(":", ""), "")
        raise DeviceError(f"device must be {_ALLOWED}, got {text!r}{hint}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r} asked for, but CUDA is not available on this machine; "
                              "use --device cpu (or auto)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {text!r} asked for, but this machine has {count} CUDA "
                              f"device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {text!r} asked for, but MPS (Apple GPU) is not available on this "
                              "machine; use --device cpu (or auto)")
    return dev
