"""Message base class, the schema registry, and field checks shared by every schema.

A message is a ``msgspec.Struct`` with a ``SCHEMA`` name and ``VERSION``. It travels as a msgpack
map (field names as keys), so any msgpack reader can decode it. numpy arrays travel as msgpack ext
types (see ``persist_rt.codec``). ``__post_init__`` runs on decode as well as on construction, so
the checks below guard every ingress: a failing check raises ``FieldError`` naming the field.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgspec
import numpy as np


class FieldError(ValueError):
    """A message field that is present but wrong; ``str()`` reads 'field `x`: reason'."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field `{field}`: {reason}")
        self.field = field
        self.reason = reason


class Message(msgspec.Struct, kw_only=True):
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1


SCHEMAS: dict[str, type[Message]] = {}


def schema(name: str, version: int = 1):
    """Class decorator: give a message its wire name and version and register it."""

    def register(cls: type[Message]) -> type[Message]:
        if name in SCHEMAS and SCHEMAS[name] is not cls:
            raise ValueError(f"schema {name!r} is defined twice")
        cls.SCHEMA = name
        cls.VERSION = version
        SCHEMAS[name] = cls
        return cls

    return register


def schema_id(cls: type[Message]) -> str:
    return f"{cls.SCHEMA}@{cls.VERSION}"


_DTYPE_INFO: dict[np.dtype, tuple[str, bool]] = {}  # dtype -> (name, floating): dtype.name is slow to compute


def check_array(
    value: Any,
    field: str,
    *,
    dtype: str | tuple[str, ...],
    ndim: int,
    finite: bool = True,
    rows: int | None = None,
    cols: int | None = None,
) -> None:
    """Check an ndarray field's dtype, rank, row/column count and finiteness."""
    if not isinstance(value, np.ndarray):
        raise FieldError(field, f"expected an array, got {type(value).__name__}")
    info = _DTYPE_INFO.get(value.dtype)
    if info is None:
        info = _DTYPE_INFO.setdefault(value.dtype, (value.dtype.name, value.dtype.kind == "f"))
    name, floating = info
    if name != dtype and (isinstance(dtype, str) or name not in dtype):
        raise FieldError(field, f"dtype {name}, expected {dtype if isinstance(dtype, str) else ' or '.join(dtype)}")
    shape = value.shape
    if len(shape) != ndim:
        raise FieldError(field, f"has {len(shape)} dimensions {shape}, expected {ndim}")
    if rows is not None and shape[0] != rows:
        raise FieldError(field, f"has {shape[0]} rows, expected {rows} (one per arena)")
    if cols is not None and shape[1] != cols:
        raise FieldError(field, f"has {shape[1]} columns, expected {cols}")
    if finite and floating and value.size and not _all_finite(value):
        bad = int(np.argwhere(~np.isfinite(value))[0][0])
        raise FieldError(field, f"contains NaN or inf (first at row {bad})")


def _all_finite(value: np.ndarray) -> bool:
    """For a message's small arrays a Python sum is several times cheaper than np.isfinite: NaN and inf carry
    through a sum, so a finite sum proves every value finite (an overflowing one goes to the exact check). Plain
    arrays only: subclasses such as masked arrays list their values in their own ways."""
    if value.size <= 32 and type(value) is np.ndarray and math.isfinite(sum(value.ravel().tolist())):
        return True
    return bool(np.isfinite(value).all())


def check_len(value: list[Any], field: str, rows: int) -> None:
    if len(value) != rows:
        raise FieldError(field, f"has {len(value)} entries, expected {rows} (one per arena)")
