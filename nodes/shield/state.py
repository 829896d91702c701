"""The shield's state vector: named columns built from positions (B, 2) and internal states (B, 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STATE_NAMES: tuple[str, ...] = ("pos_x", "pos_y", "energy", "temperature", "integrity")


def state_matrix(pos: np.ndarray, internal: np.ndarray, names: Sequence[str] = STATE_NAMES) -> np.ndarray:
    """Columns in the order of `names` (each one of STATE_NAMES), with broadcasting over leading dims."""
    pos = np.asarray(pos, dtype=np.float64)
    internal = np.asarray(internal, dtype=np.float64)
    shape = np.broadcast_shapes(pos.shape[:-1], internal.shape[:-1])
    columns = {
        "pos_x": pos[..., 0],
        "pos_y": pos[..., 1],
        "energy": internal[..., 0],
        "temperature": internal[..., 1],
        "integrity": internal[..., 2],
    }
    unknown = [n for n in names if n not in columns]
    if unknown:
        raise ValueError(f"state_names: unknown name(s) {unknown}; the shield provides {list(STATE_NAMES)}")
    return np.stack([np.broadcast_to(columns[n], shape) for n in names], axis=-1)
