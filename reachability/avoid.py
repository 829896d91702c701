"""Avoid problem by the Hamilton-Jacobi variational inequality (backward reachable tube of the unsafe set).

    min( l(x) - V(x, tau),  V_tau - H(x, grad V) ) = 0,   V(x, 0) = l(x),   tau = -t in [0, T]

solved by evolving V_tau = H with a Lax-Friedrichs flux and clipping V <- min(V, l) after each step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reachability.accuracy import PdeSettings
from reachability.derivatives import SCHEMES
from reachability.dynamics import Dynamics
from reachability.grid import Grid
from reachability.hamiltonian import LaxFriedrichsRate
from reachability.time_integration import INTEGRATORS, cfl_step

Progress = Callable[[float], None]


def solve_avoid(
    grid: Grid,
    dynamics: Dynamics,
    constraint: np.ndarray,
    horizon: float,
    settings: PdeSettings,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """Value V(., T) on the grid and the number of time steps taken."""
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon: must be a positive number, got {horizon}")
    if settings.derivative not in SCHEMES:
        raise ValueError(f"derivative: unknown scheme '{settings.derivative}', choose from {sorted(SCHEMES)}")
    if settings.rk_order not in INTEGRATORS:
        raise ValueError(f"rk_order: must be one of {sorted(INTEGRATORS)}, got {settings.rk_order}")
    speeds = dynamics.partial_max(grid.states)  # the speed bound depends on x only, so compute it once
    rate = LaxFriedrichsRate(grid, dynamics, SCHEMES[settings.derivative], speeds)
    integrate = INTEGRATORS[settings.rk_order]
    dt_max = cfl_step(speeds, grid.spacing, settings.cfl)
    steps = max(1, int(np.ceil(horizon / dt_max)))
    dt = horizon / steps

    values = constraint.astype(float).copy()
    for step in range(steps):
        values = np.minimum(integrate(values, rate, dt), constraint)
        if progress is not None:
            progress((step + 1) / steps)
    return values, steps
