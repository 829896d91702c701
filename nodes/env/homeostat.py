"""Homeostat: drive over internal variables and the drive-reduction reward.

Two drive forms over internal state h with setpoints h* and weights w >= 0:
    keramati_gutkin:  D(h) = (sum_i w_i |h*_i - h_i|^n)^(1/m)
    quadratic:        D(h) = sum_i w_i (h*_i - h_i)^2
The homeostatic reward is drive reduction, r_homeo = D(h_t) - D(h_{t+1}), so undiscounted
homeostatic returns telescope to D(h_0) - D(h_T).  Every function is vectorised over leading axes.
"""

from collections.abc import Sequence
from typing import Literal

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
        h = np.asarray(internal, dtype=np.float64)
        if h.shape[-1:] != (self.dim,):
            raise ValueError(f"internal: expected last axis of size {self.dim}, got shape {h.shape}")
        deviation = np.abs(self.setpoints - h)
        if self.form == "quadratic":
            return np.sum(self.weights * deviation**2, axis=-1)
        return np.sum(self.weights * deviation**self.n, axis=-1) ** (1.0 / self.m)

    def reward(self, internal: np.ndarray, internal_next: np.ndarray) -> np.ndarray:
        """Drive-reduction reward r_homeo = D(h_t) - D(h_{t+1})."""
        before, after = self.drive(np.stack([internal, internal_next]))  # one pass: this runs every env step
        return before - after


def total_reward(
    r_task: np.ndarray | float,
    r_homeo: np.ndarray | float,
    r_intr: np.ndarray | float,
    lambda_h: float,
    lambda_i: float,
) -> np.ndarray:
    """r_total = r_task + lambda_h * r_homeo + lambda_i * r_intr (r_intr: intrinsic terms, 0 until used)."""
    return np.asarray(r_task) + lambda_h * np.asarray(r_homeo) + lambda_i * np.asarray(r_intr)


def _finite_vector(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values must be finite, got {array.tolist()}")
    return array
