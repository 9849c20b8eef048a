"""Kubernetes resource quantities (``"500m"``, ``"2"``, ``"128Mi"``, ``"1e3"``) as numbers: pure.

The API server has already validated the quantities it stores; this parser still rejects (ValueError)
anything it cannot read, so a caller can count it as "unknown" rather than guess.
"""

from __future__ import annotations

import math
import re

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
_SUFFIX = {
    None: 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def quantity(value: object) -> float:
    """The quantity's value in base units (cores, bytes); ValueError when it is not a quantity."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a quantity")
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a quantity")
    number = float(match.group(1))
    if match.group(2):
        number *= 10.0 ** int(match.group(2)[1:])
    number *= _SUFFIX[match.group(3)]
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} is not a non-negative finite quantity")
    return number


def millicores(value: object) -> int:
    """CPU in millicores, rounded up (the scheduler's rounding)."""
    return math.ceil(round(quantity(value) * 1000, 6))


def whole(value: object) -> int:
    """Bytes (or any unit-less count), rounded up."""
    return math.ceil(round(quantity(value), 6))
