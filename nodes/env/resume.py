"""The env's training books on disk, so that a respawned env (after kill -9) carries on with the run's books.

Saved every `books_every_s` during training (and at shutdown) as a checkpoint (safetensors + JSON, checksummed,
atomic, previous copy kept): the per-episode lists and the per-step intervention counts as tensors, the counters
in the metadata, with the step counter and the learning curve. What a kill loses is bounded: the steps executed
since the last save are neither in the books nor re-counted; the arenas themselves restart from new episodes
(their simulation state is not saved), so the books stay consistent (executed + fallback = env steps) and a
violation in the lost window would still be in the log file (`violation_executed` lines are written as they
happen).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from persist_rt import checkpoint

FORMAT = "persist.env_books"
VERSION = 1
_DTYPES = {"list[int]": np.int64, "list[float]": np.float64, "list[bool]": np.bool_}  # list fields -> tensors


def _lists(books_type: type) -> dict[str, Any]:
    return {f.name: _DTYPES[str(f.type)] for f in fields(books_type) if str(f.type) in _DTYPES}


def save(path: Path, books: Any, step_id: int, curve: list[tuple[Any, ...]]) -> None:
    lists = _lists(type(books))
    tensors = {name: np.asarray(getattr(books, name), dtype) for name, dtype in lists.items()}
    tensors["curve"] = np.asarray(curve, np.float64).reshape(len(curve), len(curve[0]) if curve else 0)
    counters = {f.name: getattr(books, f.name) for f in fields(books) if f.name not in lists}
    checkpoint.save(path, tensors, {"format": FORMAT, "version": VERSION, "step_id": step_id, "books": counters},
                    keep_previous=True)


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    tensors, meta = checkpoint.load(path)
    checkpoint.check_meta(meta, str(path), format=FORMAT, version=VERSION)
    return tensors, meta


def load(path: Path, books_type: type) -> tuple[Any, int, list[tuple[Any, ...]], Path, list[str]] | None:
    """(books, step counter, curve, file used, refusals skipped) of the newest good copy; None when there is none.
    CheckpointError when every copy is refused. A curve row is (env steps, length, figures...)."""
    found = checkpoint.load_newest(path, _read)
    if found is None:
        return None
    (tensors, meta), used, refusals = found
    try:
        books = books_type(**meta["books"], **{name: tensors[name].tolist() for name in _lists(books_type)})
    except (KeyError, TypeError) as exc:  # written by another version of the books
        raise checkpoint.CheckpointError(f"{used}: books do not match this env ({exc})") from None
    curve = [(int(row[0]), int(row[1]), *map(float, row[2:])) for row in tensors["curve"].tolist()]
    return books, int(meta["step_id"]), curve, used, refusals
