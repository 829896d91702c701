"""Message base class, the schema registry, and field checks shared by every schema.

A message is a ``msgspec.Struct`` with a ``SCHEMA`` name and ``VERSION``. It travels as a msgpack
map (field names as keys), so any msgpack reader can decode it. numpy arrays travel as msgpack ext
types (see ``persist_rt.codec``). ``__post_init__`` runs on decode as well as on construction, so
the checks below guard every ingress: a failing check raises ``FieldError`` naming the field.
"""

from __future__ import annotations

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


_DTYPE_NAMES: dict[np.dtype, str] = {}  # dtype.name is slow to compute; decoding asks for it on every array


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
    allowed = (dtype,) if isinstance(dtype, str) else dtype
    name = _DTYPE_NAMES.get(value.dtype) or _DTYPE_NAMES.setdefault(value.dtype, value.dtype.name)
    if name not in allowed:
        raise FieldError(field, f"dtype {name}, expected {' or '.join(allowed)}")
    if value.ndim != ndim:
        raise FieldError(field, f"has {value.ndim} dimensions {value.shape}, expected {ndim}")
    if rows is not None and value.shape[0] != rows:
        raise FieldError(field, f"has {value.shape[0]} rows, expected {rows} (one per arena)")
    if cols is not None and value.shape[1] != cols:
        raise FieldError(field, f"has {value.shape[1]} columns, expected {cols}")
    if finite and value.dtype.kind == "f" and value.size and not np.isfinite(value).all():
        bad = int(np.argwhere(~np.isfinite(value))[0][0])
        raise FieldError(field, f"contains NaN or inf (first at row {bad})")


def check_len(value: list[Any], field: str, rows: int) -> None:
    if len(value) != rows:
        raise FieldError(field, f"has {len(value)} entries, expected {rows} (one per arena)")
