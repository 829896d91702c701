"""Checks for the fields of the frozen config dataclasses (GridLife, the shield's barriers and backup).

A field's type is the type of its default; ranges are named per field. Each error names the field and the
reason, as every ingress must (a launch file's config reaches these through ``Config.from_params``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _check_tuple(name: str, value: Any, length: int) -> None:
    if not isinstance(value, tuple) or len(value) != length:
        raise ValueError(f"{name}: expected a tuple of {length} numbers, got {value!r}")
    if not all(_is_number(item) and math.isfinite(item) for item in value):
        raise ValueError(f"{name}: every value must be a finite number, got {value!r}")


def check_type(name: str, value: Any, default: Any) -> None:
    """``value`` has the type of ``default``: bool, integer, finite number, tuple of as many finite numbers, str."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected a bool, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    elif isinstance(default, float):
        if not _is_number(value):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name}: must be finite, got {value!r}")
    elif isinstance(default, tuple):
        _check_tuple(name, value, len(default))
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")


def check_types(config: Any) -> None:
    """``check_type`` for every field of a dataclass instance, against the field's default."""
    for field in dataclasses.fields(config):
        check_type(field.name, getattr(config, field.name), field.default)


def check_at_least(config: Any, names: Iterable[str], bound: float, *, strict: bool = False) -> None:
    """Each named field is >= bound (> bound with ``strict``)."""
    for name in names:
        value = getattr(config, name)
        if not (value > bound if strict else value >= bound):
            raise ValueError(f"{name}: must be {'>' if strict else '>='} {bound:g}, got {value!r}")


def check_open_unit(config: Any, names: Iterable[str], *, closed_high: bool = False, closed_low: bool = False) -> None:
    """Each named field lies in (0, 1), with 0 or 1 included where asked."""
    for name in names:
        value = getattr(config, name)
        low_ok = value >= 0.0 if closed_low else value > 0.0
        high_ok = value <= 1.0 if closed_high else value < 1.0
        if not (low_ok and high_ok):
            interval = f"{'[' if closed_low else '('}0, 1{']' if closed_high else ')'}"
            raise ValueError(f"{name}: must lie in {interval}, got {value!r}")


def check_ordered(config: Any, pairs: Iterable[tuple[str, str]]) -> None:
    """For each (low, high): the field ``low`` is below the field ``high``."""
    for low, high in pairs:
        if not getattr(config, low) < getattr(config, high):
            raise ValueError(f"{low}: must be < {high} ({getattr(config, high)!r}), got {getattr(config, low)!r}")
