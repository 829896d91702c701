"""Control- and disturbance-affine dynamics frozen on the grid, and the compiled Lax-Friedrichs rate built on them.

x' = f(x) + G(x) u + D(x) d does not change during a solve, so f, G and D are evaluated once at every node and
stored component-major (one contiguous array per entry). The Hamiltonian then has a closed form, the optimal
control and disturbance being bang-bang in the sign of the co-state's projection:

    H(x, p) = p.f + sum_j (c_j (p.G)_j + r_j |(p.G)_j|) + sum_k (c_k (p.D)_k - r_k |(p.D)_k|)

with c and r the centre and half-width of the control (disturbance) box. It is accumulated one axis at a time,
so the one-sided derivatives of an axis are used and dropped before the next axis is differentiated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from reachability.dynamics import Box, ControlAndDisturbanceAffineDynamics

_JIT = {"nogil": True, "cache": True, "fastmath": True, "error_model": "numpy"}


@dataclass(frozen=True)
class AffineTerms:
    drift: np.ndarray  # (n, N): f_i at every node
    drift_used: np.ndarray  # (n,) bool: False where f_i vanishes on the whole grid
    control: np.ndarray  # (m, n, N): G_ij as [j, i]
    control_used: np.ndarray  # (m, n) bool
    control_centre: np.ndarray  # (m,)
    control_radius: np.ndarray  # (m,)
    disturbance: np.ndarray  # (k, n, N)
    disturbance_used: np.ndarray  # (k, n) bool
    disturbance_centre: np.ndarray  # (k,)
    disturbance_radius: np.ndarray  # (k,)

    @classmethod
    def at_nodes(cls, dynamics: ControlAndDisturbanceAffineDynamics, states: np.ndarray) -> AffineTerms:
        n = states.shape[-1]
        flat = states.reshape(-1, n)

        def component_major(matrix: np.ndarray | None, width: int) -> np.ndarray:
            if matrix is None or width == 0:
                return np.zeros((0, n, flat.shape[0]))
            entries = np.asarray(matrix, dtype=np.float64).reshape(-1, n, width)
            return np.ascontiguousarray(entries.transpose(2, 1, 0))

        def centre_radius(box: Box) -> tuple[np.ndarray, np.ndarray]:
            lo, hi = np.asarray(box.lo, dtype=np.float64), np.asarray(box.hi, dtype=np.float64)
            return (lo + hi) / 2, (hi - lo) / 2

        drift = np.ascontiguousarray(np.asarray(dynamics.drift(flat), dtype=np.float64).T)
        control = component_major(dynamics.control_matrix(flat), dynamics.control.dim)
        has_disturbance = dynamics.disturbance_matrix is not None and dynamics.disturbance.dim > 0
        disturbance = component_major(
            dynamics.disturbance_matrix(flat) if has_disturbance else None, dynamics.disturbance.dim
        )
        control_centre, control_radius = centre_radius(dynamics.control)
        disturbance_centre, disturbance_radius = centre_radius(dynamics.disturbance)
        return cls(
            drift=drift,
            drift_used=np.any(drift != 0, axis=-1),
            control=control,
            control_used=np.any(control != 0, axis=-1),
            control_centre=control_centre,
            control_radius=control_radius,
            disturbance=disturbance,
            disturbance_used=np.any(disturbance != 0, axis=-1),
            disturbance_centre=disturbance_centre[: disturbance.shape[0]],
            disturbance_radius=disturbance_radius[: disturbance.shape[0]],
        )


@numba.njit(**_JIT)
def _accumulate_axis(
    axis: int,
    left: np.ndarray,
    right: np.ndarray,
    speed: np.ndarray,
    drift: np.ndarray,
    drift_used: np.ndarray,
    control: np.ndarray,
    control_used: np.ndarray,
    disturbance: np.ndarray,
    disturbance_used: np.ndarray,
    rate: np.ndarray,
    control_coeff: np.ndarray,
    disturbance_coeff: np.ndarray,
) -> None:
    """Add axis ``axis``'s share: p_i f_i and the dissipation alpha_i (p+_i - p-_i) / 2 to ``rate``, p_i G_ji to
    ``control_coeff[j]`` and p_i D_ki to ``disturbance_coeff[k]``, with p_i = (p-_i + p+_i) / 2."""
    size = rate.shape[0]
    if drift_used[axis]:
        f = drift[axis]
        for x in range(size):
            rate[x] += 0.5 * ((left[x] + right[x]) * f[x] + speed[x] * (right[x] - left[x]))
    else:
        for x in range(size):
            rate[x] += 0.5 * speed[x] * (right[x] - left[x])
    for j in range(control.shape[0]):
        if control_used[j, axis]:
            g, coeff = control[j, axis], control_coeff[j]
            for x in range(size):
                coeff[x] += 0.5 * (left[x] + right[x]) * g[x]
    for k in range(disturbance.shape[0]):
        if disturbance_used[k, axis]:
            g, coeff = disturbance[k, axis], disturbance_coeff[k]
            for x in range(size):
                coeff[x] += 0.5 * (left[x] + right[x]) * g[x]


@numba.njit(**_JIT)
def _add_box_extremes(rate: np.ndarray, coeff: np.ndarray, centre: np.ndarray, radius: np.ndarray, sign: float) -> None:
    """rate += c . coeff + sign * r . |coeff|: the best (sign +1) or worst (sign -1) input in the box."""
    for j in range(coeff.shape[0]):
        c, r, row = centre[j], sign * radius[j], coeff[j]
        for x in range(rate.shape[0]):
            rate[x] += c * row[x] + r * abs(row[x])


class AffineRate:
    """Accumulates V_tau = H(x, (p- + p+)/2) + sum_i alpha_i (p+_i - p-_i) / 2 axis by axis into reused buffers."""

    def __init__(self, terms: AffineTerms, speeds: np.ndarray) -> None:
        size = terms.drift.shape[1]
        self.terms = terms
        self.speeds = np.ascontiguousarray(speeds.reshape(size, -1).T)  # (n, N)
        self.size = size
        self.rate = np.zeros(size)
        self.control_coeff = np.empty((terms.control.shape[0], size))
        self.disturbance_coeff = np.empty((terms.disturbance.shape[0], size))

    def start(self) -> None:
        self.rate = np.zeros(self.size)  # fresh each time: callers keep the returned rate
        self.control_coeff.fill(0.0)
        self.disturbance_coeff.fill(0.0)

    def add_axis(self, axis: int, left: np.ndarray, right: np.ndarray) -> None:
        t = self.terms
        _accumulate_axis(
            axis,
            left.reshape(-1),
            right.reshape(-1),
            self.speeds[axis],
            t.drift,
            t.drift_used,
            t.control,
            t.control_used,
            t.disturbance,
            t.disturbance_used,
            self.rate,
            self.control_coeff,
            self.disturbance_coeff,
        )

    def finish(self) -> np.ndarray:
        t = self.terms
        _add_box_extremes(self.rate, self.control_coeff, t.control_centre, t.control_radius, 1.0)
        _add_box_extremes(self.rate, self.disturbance_coeff, t.disturbance_centre, t.disturbance_radius, -1.0)
        return self.rate
