"""Homeostat: drive over internal variables and the drive-reduction reward.

Two drive forms over internal state h with setpoints h* and weights w >= 0:
    keramati_gutkin:  D(h) = (sum_i w_i |h*_i - h_i|^n)^(1/m)
    quadratic:        D(h) = sum_i w_i (h*_i - h_i)^2
The homeostatic reward is drive reduction, r_homeo = D(h_t) - D(h_{t+1}), so undiscounted
homeostatic returns telescope to D(h_0) - D(h_T).  Every function is vectorised over leading axes.
The drive is compiled: the env computes it twice per step, where numpy's per-call overhead would
cost many times the arithmetic.
"""

import math
from collections.abc import Sequence
from typing import Literal

import numba
import numpy as np

DriveForm = Literal["keramati_gutkin", "quadratic"]
DRIVE_FORMS: tuple[str, ...] = ("keramati_gutkin", "quadratic")


class Homeostat:
    """Drive and drive-reduction reward for a fixed set of setpoints."""

    def __init__(
        self,
        setpoints: Sequence[float],
        weights: Sequence[float] | None = None,
        form: DriveForm = "keramati_gutkin",
        n: float = 2.0,
        m: float = 2.0,
    ) -> None:
        self.setpoints = _finite_vector("setpoints", setpoints)
        if self.setpoints.size == 0:
            raise ValueError("setpoints: must hold at least one value")
        if weights is None:
            self.weights = np.ones_like(self.setpoints)
        else:
            self.weights = _finite_vector("weights", weights)
            if self.weights.shape != self.setpoints.shape:
                raise ValueError(f"weights: need one per setpoint ({self.setpoints.size}), got {self.weights.size}")
            if np.any(self.weights < 0):
                raise ValueError(f"weights: must be >= 0, got {self.weights.tolist()}")
        if form not in DRIVE_FORMS:
            raise ValueError(f"form: must be one of {DRIVE_FORMS}, got {form!r}")
        for name, value in (("n", n), ("m", m)):
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
        self.form: DriveForm = form
        self.n = float(n)
        self.m = float(m)

    @property
    def dim(self) -> int:
        return int(self.setpoints.size)

    def drive(self, internal: np.ndarray) -> np.ndarray:
        """D(h) for h of shape (..., dim); returns shape (...)."""
        out = _drive_rows(self._rows(internal, "internal"), self.setpoints, self.weights, self.form == "quadratic",
                          self.n, self.m)
        return out.reshape(np.shape(internal)[:-1])[()]

    def reward(self, internal: np.ndarray, internal_next: np.ndarray) -> np.ndarray:
        """Drive-reduction reward r_homeo = D(h_t) - D(h_{t+1})."""
        if np.shape(internal) != np.shape(internal_next):
            raise ValueError(f"internal_next: expected shape {np.shape(internal)}, got {np.shape(internal_next)}")
        before, after = self._rows(internal, "internal"), self._rows(internal_next, "internal_next")
        quadratic = self.form == "quadratic"
        out = _reward_rows(before, after, self.setpoints, self.weights, quadratic, self.n, self.m)
        return out.reshape(np.shape(internal)[:-1])[()]

    def _rows(self, internal: np.ndarray, name: str) -> np.ndarray:
        h = np.asarray(internal, dtype=np.float64)
        if h.shape[-1:] != (self.dim,):
            raise ValueError(f"{name}: expected last axis of size {self.dim}, got shape {h.shape}")
        return np.ascontiguousarray(h).reshape(-1, self.dim)  # a view when it already is


@numba.njit(cache=True)
def _power(x, p):  # type: ignore[no-untyped-def]
    """x ** p as numpy computes it (exact square and square root for p = 2 and 0.5), so compiled and numpy
    drives agree to the bit."""
    if p == 2.0:
        return x * x
    if p == 0.5:
        return math.sqrt(x)
    if p == 1.0:
        return x
    return x**p


@numba.njit(cache=True)
def _drive_one(h, a, setpoints, weights, quadratic, n, m):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in range(setpoints.shape[0]):
        deviation = abs(setpoints[i] - h[a, i])
        total += weights[i] * (deviation * deviation if quadratic else _power(deviation, n))
    return total if quadratic else _power(total, 1.0 / m)


@numba.njit(cache=True)
def _drive_rows(h, setpoints, weights, quadratic, n, m):  # type: ignore[no-untyped-def]
    out = np.empty(h.shape[0])
    for a in range(h.shape[0]):
        out[a] = _drive_one(h, a, setpoints, weights, quadratic, n, m)
    return out


@numba.njit(cache=True)
def _reward_rows(h, h_next, setpoints, weights, quadratic, n, m):  # type: ignore[no-untyped-def]
    out = np.empty(h.shape[0])
    for a in range(h.shape[0]):
        out[a] = _drive_one(h, a, setpoints, weights, quadratic, n, m) - \
            _drive_one(h_next, a, setpoints, weights, quadratic, n, m)
    return out


def _finite_vector(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values must be finite, got {array.tolist()}")
    return array
