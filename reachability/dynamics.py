"""System dynamics x' = f(x, u, d) with a bounded control u and a bounded disturbance d.

Convention (avoid / viability problems): the control tries to keep the value high (stay viable), the
disturbance tries to push it down. The Hamiltonian is H(x, p) = max_u min_d p . f(x, u, d).
States are arrays of shape (..., n); controls and disturbances (..., m) and (..., k).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Box:
    """Axis-aligned set lo <= u <= hi for a control or disturbance."""

    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise ValueError(f"box: lo and hi differ in length ({len(self.lo)} vs {len(self.hi)})")
        if any(b < a for a, b in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"box: need lo <= hi, got {self.lo} and {self.hi}")

    @property
    def dim(self) -> int:
        return len(self.lo)

    def samples(self, per_axis: int = 2) -> Array:
        """Grid of points in the box (vertices when per_axis == 2), shape (count, dim)."""
        if self.dim == 0:
            return np.zeros((1, 0))
        axes = [np.linspace(a, b, per_axis if b > a else 1) for a, b in zip(self.lo, self.hi, strict=True)]
        return np.array(list(product(*axes)), dtype=float)


NO_DISTURBANCE = Box((), ())


class Dynamics(ABC):
    """What the solvers need from a system."""

    control: Box
    disturbance: Box

    @abstractmethod
    def __call__(self, x: Array, u: Array, d: Array) -> Array: ...

    @abstractmethod
    def hamiltonian(self, x: Array, p: Array) -> Array:
        """max_u min_d p . f(x, u, d), shape (...)."""

    @abstractmethod
    def partial_max(self, x: Array) -> Array:
        """Per-axis bound on |dH/dp_i| at x, shape (..., n): the Lax-Friedrichs dissipation and the CFL speed."""

    def control_samples(self) -> Array:
        return self.control.samples(3)

    def disturbance_samples(self) -> Array:
        return self.disturbance.samples(2)


class ControlAndDisturbanceAffineDynamics(Dynamics):
    """x' = f(x) + G(x) u + D(x) d with box-bounded u and d; the Hamiltonian is exact (bang-bang)."""

    def __init__(
        self,
        drift: Callable[[Array], Array],
        control_matrix: Callable[[Array], Array],
        control: Box,
        disturbance_matrix: Callable[[Array], Array] | None = None,
        disturbance: Box = NO_DISTURBANCE,
    ) -> None:
        self.drift = drift
        self.control_matrix = control_matrix  # (..., n, m)
        self.disturbance_matrix = disturbance_matrix  # (..., n, k)
        self.control = control
        self.disturbance = disturbance

    def _disturbance_term(self, x: Array, d: Array) -> Array:
        if self.disturbance_matrix is None or self.disturbance.dim == 0:
            return np.zeros_like(x)
        return np.einsum("...ij,...j->...i", self.disturbance_matrix(x), d)

    def __call__(self, x: Array, u: Array, d: Array) -> Array:
        return self.drift(x) + np.einsum("...ij,...j->...i", self.control_matrix(x), u) + self._disturbance_term(x, d)

    @staticmethod
    def _box_extreme(coeff: Array, box: Box, maximise: bool) -> Array:
        """max (or min) over u in the box of coeff . u, coeff (..., m)."""
        lo, hi = np.asarray(box.lo), np.asarray(box.hi)
        centre, radius = (lo + hi) / 2, (hi - lo) / 2
        sign = 1.0 if maximise else -1.0
        return coeff @ centre + sign * np.abs(coeff) @ radius

    def hamiltonian(self, x: Array, p: Array) -> Array:
        value = np.einsum("...i,...i->...", p, self.drift(x))
        value = value + self._box_extreme(np.einsum("...i,...ij->...j", p, self.control_matrix(x)), self.control, True)
        if self.disturbance_matrix is not None and self.disturbance.dim:
            coeff = np.einsum("...i,...ij->...j", p, self.disturbance_matrix(x))
            value = value + self._box_extreme(coeff, self.disturbance, False)
        return value

    def partial_max(self, x: Array) -> Array:
        def spread(matrix: Array, box: Box) -> Array:
            lo, hi = np.asarray(box.lo), np.asarray(box.hi)
            return np.abs(matrix) @ np.maximum(np.abs(lo), np.abs(hi))

        bound = np.abs(self.drift(x)) + spread(self.control_matrix(x), self.control)
        if self.disturbance_matrix is not None and self.disturbance.dim:
            bound = bound + spread(self.disturbance_matrix(x), self.disturbance)
        return bound


class SampledDynamics(Dynamics):
    """General f(x, u, d); the Hamiltonian is taken over a fine sample of the control and disturbance boxes.
    Use it when the dynamics are not affine in the control (e.g. an effort cost |u|^2)."""

    def __init__(
        self,
        f: Callable[[Array, Array, Array], Array],
        control: Box,
        disturbance: Box = NO_DISTURBANCE,
        samples_per_axis: int = 11,
        speed_bound: Callable[[Array], Array] | None = None,
    ) -> None:
        self.f = f
        self.control = control
        self.disturbance = disturbance
        self.samples_per_axis = samples_per_axis
        self.speed_bound = speed_bound

    def __call__(self, x: Array, u: Array, d: Array) -> Array:
        return self.f(x, u, d)

    def control_samples(self) -> Array:
        return self.control.samples(self.samples_per_axis)

    def hamiltonian(self, x: Array, p: Array) -> Array:
        best = np.full(x.shape[:-1], -np.inf)
        for u in self.control_samples():
            worst = np.full(x.shape[:-1], np.inf)
            for d in self.disturbance_samples():
                ub, db = (
                    np.broadcast_to(u, (*x.shape[:-1], u.size)),
                    np.broadcast_to(d, (*x.shape[:-1], d.size)),
                )
                worst = np.minimum(worst, np.einsum("...i,...i->...", p, self.f(x, ub, db)))
            best = np.maximum(best, worst)
        return best

    def partial_max(self, x: Array) -> Array:
        if self.speed_bound is not None:
            return self.speed_bound(x)
        bound = np.zeros_like(x)
        for u in self.control_samples():
            for d in self.disturbance_samples():
                ub, db = (
                    np.broadcast_to(u, (*x.shape[:-1], u.size)),
                    np.broadcast_to(d, (*x.shape[:-1], d.size)),
                )
                bound = np.maximum(bound, np.abs(self.f(x, ub, db)))
        return bound
