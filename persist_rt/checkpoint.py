"""Checkpoints and policy files: safetensors tensors plus JSON metadata, written atomically.

One file holds both: the tensors in safetensors layout and our metadata as a JSON string under the
header key ``persist``. Nothing is ever unpickled. Writes go to a temporary file in the same folder,
are fsynced, then renamed over the target, so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

META_KEY = "persist"


class CheckpointError(ValueError):
    """A checkpoint or policy file that cannot be used; the message names the field and the reason."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via temp file + fsync + rename (and fsync of the folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> bytes:
    """Serialise numpy tensors and JSON-able metadata into safetensors bytes."""
    arrays = {name: np.ascontiguousarray(t) for name, t in tensors.items()}
    return _st_save(arrays, metadata={META_KEY: json.dumps(dict(metadata), sort_keys=True)})


def loads(data: bytes, source: str = "<bytes>") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parse safetensors bytes; raise CheckpointError naming what is wrong."""
    try:
        tensors = _st_load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{source}: not a safetensors file ({exc})") from None
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    raw_meta = header.get("__metadata__", {}).get(META_KEY)
    if raw_meta is None:
        raise CheckpointError(f"{source}: field '__metadata__.{META_KEY}' is missing")
    try:
        metadata = json.loads(raw_meta)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: field '__metadata__.{META_KEY}' is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{source}: field '__metadata__.{META_KEY}' must be a JSON object")
    return dict(tensors), metadata


def save(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> Path:
    return atomic_write_bytes(path, dumps(tensors, metadata))


def load(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror})") from None
    return loads(data, str(p))


def check_meta(metadata: Mapping[str, Any], source: str, **expected: Any) -> None:
    """Refuse metadata whose fields differ from ``expected`` (format, version, architecture), by name."""
    for key, want in expected.items():
        got = metadata.get(key)
        if got != want:
            raise CheckpointError(f"{source}: field '{key}' is {got!r}, expected {want!r}")


def check_tensors(
    tensors: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[tuple[int, ...], str]],
    source: str = "checkpoint",
) -> None:
    """Check names, shapes and dtypes against ``expected`` = {name: (shape, dtype)}."""
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{source}: tensor '{missing[0]}' is missing ({len(missing)} missing in all)")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: tensor '{unexpected[0]}' is not part of this architecture")
    for name, (shape, dtype) in expected.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {tuple(t.shape)}, expected {tuple(shape)}")
        if str(t.dtype) != dtype:
            raise CheckpointError(f"{source}: tensor '{name}' has dtype {t.dtype}, expected {dtype}")
