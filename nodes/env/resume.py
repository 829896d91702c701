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
_LISTS = {"lengths": np.int64, "returns": np.float64, "task_returns": np.float64, "died": np.bool_,
          "drives": np.float64, "interventions_per_step": np.int64}


def save(path: Path, books: Any, step_id: int, curve: list[tuple[int, int, float]]) -> None:
    tensors = {name: np.asarray(getattr(books, name), dtype) for name, dtype in _LISTS.items()}
    tensors["curve"] = np.asarray(curve, np.float64).reshape(-1, 3)
    counters = {f.name: getattr(books, f.name) for f in fields(books) if f.name not in _LISTS}
    checkpoint.save(path, tensors, {"format": FORMAT, "version": VERSION, "step_id": step_id, "books": counters},
                    keep_previous=True)


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    tensors, meta = checkpoint.load(path)
    checkpoint.check_meta(meta, str(path), format=FORMAT, version=VERSION)
    return tensors, meta


def load(path: Path, books_type: type) -> tuple[Any, int, list[tuple[int, int, float]], Path, list[str]] | None:
    """(books, step counter, curve, file used, refusals skipped) of the newest good copy; None when there is none.
    CheckpointError when every copy is refused."""
    found = checkpoint.load_newest(path, _read)
    if found is None:
        return None
    (tensors, meta), used, refusals = found
    lists = {name: tensors[name].tolist() for name in _LISTS}
    books = books_type(**meta["books"], **lists)
    curve = [(int(a), int(b), float(c)) for a, b, c in tensors["curve"].tolist()]
    return books, int(meta["step_id"]), curve, used, refusals
