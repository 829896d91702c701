"""Discrete viability kernel by semi-Lagrangian value iteration (Saint-Pierre style):

    V_{k+1}(x) = min( l(x), max_u min_d V_k(x + dt f(x, u, d)) )

Successors are interpolated multilinearly, never snapped to the nearest node (snapping over-approximates
the kernel by a fixed share at every resolution). A successor is fixed for a node and a (u, d) pair, so
each pair becomes one sparse interpolation matrix built once; an iteration is then a few sparse products.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

from reachability.dynamics import Dynamics
from reachability.grid import Grid

Progress = Callable[[float], None]


def successor(dynamics: Dynamics, states: np.ndarray, u: np.ndarray, d: np.ndarray, dt: float) -> np.ndarray:
    """One Heun (RK2) step with u and d held fixed: second order, so the flow error stays below the
    interpolation error even for curved trajectories."""
    ub = np.broadcast_to(u, (*states.shape[:-1], u.size))
    db = np.broadcast_to(d, (*states.shape[:-1], d.size))
    k1 = dynamics(states, ub, db)
    k2 = dynamics(states + dt * k1, ub, db)
    return states + 0.5 * dt * (k1 + k2)


def transition_matrix(grid: Grid, points: np.ndarray) -> sparse.csr_matrix:
    """Sparse matrix A with (A @ V.ravel())[i] = V interpolated at points[i]."""
    flat_idx, weights = grid.interpolation_weights(points.reshape(-1, grid.ndim))
    rows = np.repeat(np.arange(flat_idx.shape[0]), flat_idx.shape[1])
    size = int(np.prod(grid.shape))
    return sparse.csr_matrix((weights.ravel(), (rows, flat_idx.ravel())), shape=(size, size))


def solve_viability(
    grid: Grid,
    dynamics: Dynamics,
    constraint: np.ndarray,
    horizon: float,
    dt: float,
    tolerance: float = 0.0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """Value after ceil(horizon / dt) iterations, or earlier once no value moves by more than
    ``tolerance`` (the fixed point: the infinite-horizon kernel). Returns (value, iterations)."""
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon: must be a positive number, got {horizon}")
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt: must be a positive number, got {dt}")
    states = grid.states
    controls, disturbances = dynamics.control_samples(), dynamics.disturbance_samples()
    matrices = [
        [transition_matrix(grid, successor(dynamics, states, u, d, dt)) for d in disturbances] for u in controls
    ]
    limit = constraint.astype(float).ravel()
    values = limit.copy()
    iterations = max(1, int(np.ceil(horizon / dt)))
    for k in range(iterations):
        best = np.full_like(values, -np.inf)
        for per_control in matrices:
            worst = np.full_like(values, np.inf)
            for matrix in per_control:
                np.minimum(worst, matrix @ values, out=worst)
            np.maximum(best, worst, out=best)
        updated = np.minimum(limit, best)
        change = float(np.max(np.abs(updated - values)))
        values = updated
        if progress is not None:
            progress((k + 1) / iterations)
        if change <= tolerance:
            if progress is not None:
                progress(1.0)
            return values.reshape(grid.shape), k + 1
    return values.reshape(grid.shape), iterations
