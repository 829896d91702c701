"""N-D box grids: coordinates, spacing, ghost-cell padding (boundary conditions) and interpolation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

BOUNDARY_KINDS = ("extrapolate", "periodic")


@dataclass(frozen=True)
class Grid:
    """Regular grid on the box [lo, hi]. A periodic axis excludes its upper end (hi is identified with lo),
    like an angle on [0, 2*pi)."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]
    shape: tuple[int, ...]
    periodic: tuple[bool, ...] = field(default=())

    def __post_init__(self) -> None:
        lo, hi, shape = tuple(map(float, self.lo)), tuple(map(float, self.hi)), tuple(map(int, self.shape))
        periodic = tuple(map(bool, self.periodic)) or (False,) * len(shape)
        if not (len(lo) == len(hi) == len(shape) == len(periodic)) or not shape:
            raise ValueError(
                f"grid: lo, hi, shape and periodic need one entry per dimension, "
                f"got {len(lo)}, {len(hi)}, {len(shape)}, {len(periodic)}"
            )
        for i, (a, b, n) in enumerate(zip(lo, hi, shape, strict=True)):
            if not (np.isfinite(a) and np.isfinite(b) and b > a):
                raise ValueError(f"grid: axis {i} needs finite lo < hi, got [{a}, {b}]")
            if n < 5:
                raise ValueError(f"grid: axis {i} needs at least 5 points, got {n}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "periodic", periodic)

    @classmethod
    def from_box(
        cls, lo: Sequence[float], hi: Sequence[float], shape: Sequence[int], periodic: Sequence[bool] = ()
    ) -> Grid:
        return cls(tuple(lo), tuple(hi), tuple(shape), tuple(periodic))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @cached_property
    def spacing(self) -> np.ndarray:
        return np.array(
            [
                (b - a) / (n if p else n - 1)
                for a, b, n, p in zip(self.lo, self.hi, self.shape, self.periodic, strict=True)
            ]
        )

    @cached_property
    def axes(self) -> tuple[np.ndarray, ...]:
        return tuple(a + d * np.arange(n) for a, d, n in zip(self.lo, self.spacing, self.shape, strict=True))

    @cached_property
    def states(self) -> np.ndarray:
        """Coordinates of every node, shape (*shape, ndim)."""
        return np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)

    def pad(self, values: np.ndarray, axis: int, width: int) -> np.ndarray:
        """Add ``width`` ghost cells on both ends of ``axis``: wrap-around on periodic axes, linear
        extrapolation elsewhere (the value keeps its slope past the edge, which lets outflow leave)."""
        if self.periodic[axis]:
            return np.pad(values, [(width, width) if a == axis else (0, 0) for a in range(values.ndim)], mode="wrap")
        first = np.take(values, [0], axis=axis)
        second = np.take(values, [1], axis=axis)
        last = np.take(values, [-1], axis=axis)
        before_last = np.take(values, [-2], axis=axis)
        shape = [-1 if a == axis else 1 for a in range(values.ndim)]
        outward = np.arange(1, width + 1, dtype=float).reshape(shape)  # distance of each ghost from the edge
        low = first + (first - second) * np.flip(outward, axis=axis)
        high = last + (last - before_last) * outward
        return np.concatenate([low, values, high], axis=axis)

    def fractional_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous node index of each point (..., ndim); non-periodic axes are clamped to the box
        (a successor that leaves the box takes the value on its edge), periodic axes wrap."""
        idx = (np.asarray(points, dtype=float) - np.asarray(self.lo)) / self.spacing
        for i, n in enumerate(self.shape):
            idx[..., i] = np.mod(idx[..., i], n) if self.periodic[i] else np.clip(idx[..., i], 0.0, n - 1)
        return idx

    def interpolation_weights(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Multilinear interpolation stencil: flat node indices and weights, each (..., 2**ndim)."""
        idx = self.fractional_index(points)
        base = np.floor(idx).astype(np.int64)
        frac = idx - base
        corners_idx, corners_w = [], []
        for corner in range(2**self.ndim):
            flat = np.zeros(idx.shape[:-1], dtype=np.int64)
            w = np.ones(idx.shape[:-1])
            for i, n in enumerate(self.shape):
                bit = (corner >> i) & 1
                j = base[..., i] + bit
                j = np.mod(j, n) if self.periodic[i] else np.minimum(j, n - 1)
                flat = flat * n + j
                w = w * (frac[..., i] if bit else 1.0 - frac[..., i])
            corners_idx.append(flat)
            corners_w.append(w)
        return np.stack(corners_idx, axis=-1), np.stack(corners_w, axis=-1)

    def interpolate(self, values: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Multilinear interpolation of node values at arbitrary points (..., ndim)."""
        if values.shape != self.shape:
            raise ValueError(f"values: expected shape {self.shape}, got {values.shape}")
        flat_idx, weights = self.interpolation_weights(points)
        return (values.reshape(-1)[flat_idx] * weights).sum(axis=-1)
