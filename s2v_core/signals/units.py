"""Physical-unit conversion: biopotentials to microvolts, SpO2 to percent."""

from __future__ import annotations

import logging
import re

import numpy as np

__all__ = [
    "to_percent",
    "unit_scale_to_uV",
]

log = logging.getLogger(__name__)

# Normalised dimension string -> multiplier to microvolts. Keys are lower case, no spaces,
# micro sign and Greek mu written "u", trailing plural "s" removed (see _normalise_unit).
_TO_MICROVOLT: dict[str, float] = {
    "uv": 1.0,
    "mcv": 1.0,
    "microv": 1.0,
    "microvolt": 1.0,
    "uvolt": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "mvolt": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "nv": 1e-3,
    "nanovolt": 1e-3,
}

_PERCENT_NAMES = {"%", "percent", "pct", "%sat", "%spo2", "%sao2"}


def _normalise_unit(dimension: str) -> str:
    text = dimension.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    text = re.sub(r"\s+", "", text)
    if len(text) > 2 and text.endswith("s"):
        text = text[:-1]
    return text


def unit_scale_to_uV(dimension: str | None) -> float | None:
    """Multiplier that turns a biopotential in ``dimension`` into microvolts.

    Parameters
    ----------
    dimension : str or None
        EDF "physical dimension" text, e.g. ``"uV"``, ``"µV"``, ``" mV "``, ``"Volts"``.

    Returns
    -------
    float or None
        ``1`` for uV/µV/mcV/microV, ``1e3`` for mV, ``1e6`` for V, ``1e-3`` for nV;
        ``None`` when the text is empty or unknown (the caller decides and warns).

    Examples
    --------
    >>> unit_scale_to_uV("µV"), unit_scale_to_uV("mV"), unit_scale_to_uV("V"), unit_scale_to_uV("")
    (1.0, 1000.0, 1000000.0, None)
    """
    if dimension is None:
        return None
    return _TO_MICROVOLT.get(_normalise_unit(dimension))


def to_percent(x: np.ndarray, dimension: str | None) -> tuple[np.ndarray, str | None]:
    """Bring an SpO2 signal to percent, detecting 0-1 fractions by their range.

    Parameters
    ----------
    x : np.ndarray, any shape
        Oxygen saturation as stored in the file; NaN allowed.
    dimension : str or None
        Its physical dimension text (``"%"``, ``"percent"``, ``""``...).

    Returns
    -------
    x_percent : np.ndarray, same shape, float32
        ``x * 100`` when the finite values look like a fraction (median in (0.5, 1] and
        maximum <= 1.0), otherwise ``x`` unchanged.
    note : str or None
        A human-readable note when something was changed or the unit is not percent,
        else ``None``.

    Examples
    --------
    >>> y, note = to_percent(np.array([0.95, 0.97]), "%")
    >>> y.round(1).tolist(), note is not None
    ([95.0, 97.0], True)
    """
    x = np.asarray(x, dtype=np.float32)
    unit = _normalise_unit(dimension or "")
    finite = x[np.isfinite(x)]
    notes: list[str] = []
    if finite.size and 0.5 < float(np.median(finite)) <= 1.0 and float(finite.max()) <= 1.0:
        notes.append(
            f"SpO2 values look like a 0-1 fraction (median {float(np.median(finite)):.3g}, "
            f"unit {dimension!r}); multiplied by 100 to get %"
        )
        x = x * np.float32(100.0)
    elif unit not in _PERCENT_NAMES:
        notes.append(f"SpO2 unit {dimension!r} is not '%'; values kept as they are")
    note = "; ".join(notes) if notes else None
    if note:
        log.info(note)
    return x, note
