"""Checkpoints and policy files: safetensors tensors plus JSON metadata, written atomically.

One file holds both: the tensors in safetensors layout and our metadata as a JSON string under the
header key ``persist``. Nothing is ever unpickled. Writes go to a temporary file in the same folder,
are fsynced, then renamed over the target, so a reader sees the old file or the new one, never half.

Every file carries a SHA-256 of its metadata string and tensors (name, dtype, shape, bytes) under the
header key ``persist_sha256``; a truncated file fails to parse and a flipped bit fails the digest, both as
CheckpointError. Files written before the digest existed load unverified (refusing them would strand every
policy file already shipped); the next save of such a file adds it. A writer that passes ``keep_previous``
keeps the file it replaces as ``<stem>.prev<suffix>`` (a hard link made before the rename, so a valid file
is at the target at every moment), and :func:`load_newest` falls back to it when the newest is bad.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

META_KEY = "persist"
DIGEST_KEY = "persist_sha256"
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint or policy file that cannot be used; the message names the field and the reason."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via temp file + fsync + rename (and fsync of the folder)."""
    return atomic_write_chunks(path, (data,))


def atomic_write_chunks(path: str | os.PathLike[str], chunks: Iterable[bytes]) -> Path:
    """``atomic_write_bytes`` for data made piece by piece: a large file is never whole in memory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
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


def digest(tensors: Mapping[str, np.ndarray], raw_meta: str) -> str:
    """SHA-256 over the metadata string and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256(raw_meta.encode())
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{t.dtype.str}\0{t.shape}\0".encode())
        h.update(t.reshape(-1).view(np.uint8))
    return h.hexdigest()


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> bytes:
    """Serialise numpy tensors and JSON-able metadata into safetensors bytes, with their digest."""
    arrays = {name: np.ascontiguousarray(t) for name, t in tensors.items()}
    raw_meta = json.dumps(dict(metadata), sort_keys=True)
    return _st_save(arrays, metadata={META_KEY: raw_meta, DIGEST_KEY: digest(arrays, raw_meta)})


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
    stored = header.get("__metadata__", {}).get(DIGEST_KEY)
    if stored is not None and stored != digest(tensors, raw_meta):
        raise CheckpointError(f"{source}: field '__metadata__.{DIGEST_KEY}' does not match the contents "
                              "(the file is corrupt)")
    try:
        metadata = json.loads(raw_meta)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: field '__metadata__.{META_KEY}' is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{source}: field '__metadata__.{META_KEY}' must be a JSON object")
    return dict(tensors), metadata


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where ``save(..., keep_previous=True)`` keeps the file it replaced: ``learner.prev.safetensors``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def save(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], metadata: Mapping[str, Any],
         keep_previous: bool = False) -> Path:
    data = dumps(tensors, metadata)
    target = Path(path)
    if keep_previous and target.exists():
        prev, link = previous_path(target), target.with_name(f".{target.name}.prev.tmp")
        link.unlink(missing_ok=True)
        os.link(target, link)
        os.replace(link, prev)
    return atomic_write_bytes(target, data)


def load_newest(path: str | os.PathLike[str], reader: Callable[[Path], T]) -> tuple[T, Path, list[str]] | None:
    """``reader`` of the newest good one of ``path`` and its previous copy: (result, file used, refusals).

    A missing file is skipped silently; a file ``reader`` refuses with CheckpointError is skipped and its
    reason kept, so the caller can say what it fell back from. None when neither exists; CheckpointError
    naming every refusal when files exist and none is usable.
    """
    refusals: list[str] = []
    for candidate in (Path(path), previous_path(path)):
        if not candidate.exists():
            continue
        try:
            return reader(candidate), candidate, refusals
        except CheckpointError as exc:
            refusals.append(str(exc))
    if refusals:
        raise CheckpointError("; ".join(refusals))
    return None


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
