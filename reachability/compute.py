"""Solve a registered problem on a grid with the problem's scheme; the result carries its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reachability.accuracy import ACCURACY
from reachability.avoid import Progress, solve_avoid
from reachability.grid import Grid
from reachability.problem import Problem
from reachability.semi_lagrangian import solve_viability


@dataclass(frozen=True)
class KernelResult:
    grid: Grid
    value: np.ndarray  # V on the grid; the kernel is {V >= 0}
    metadata: dict[str, Any]


def compute_kernel(
    problem: Problem,
    shape: tuple[int, ...] | None = None,
    horizon: float | None = None,
    accuracy: str = "high",
    scheme: str | None = None,
    progress: Progress | None = None,
) -> KernelResult:
    if accuracy not in ACCURACY:
        raise ValueError(f"accuracy: must be one of {', '.join(ACCURACY)}, got '{accuracy}'")
    scheme = scheme or problem.scheme
    horizon = problem.default_horizon if horizon is None else float(horizon)
    if not (np.isfinite(horizon) and horizon > 0):
        raise ValueError(f"horizon: must be a positive number, got {horizon}")
    grid = problem.grid(shape)
    constraint = problem.constraint(grid.states)
    if scheme == "pde":
        settings = ACCURACY[accuracy]
        value, steps = solve_avoid(grid, problem.dynamics, constraint, horizon, settings, progress)
        scheme_desc = f"pde/{settings.derivative}/tvd_rk{settings.rk_order}/cfl{settings.cfl}"
    elif scheme == "semi_lagrangian":
        # "low" takes twice the time step of the problem's default: cheaper, coarser
        dt = problem.semi_lagrangian_dt * (2.0 if accuracy == "low" else 1.0)
        value, steps = solve_viability(grid, problem.dynamics, constraint, horizon, dt, 1e-9, progress)
        scheme_desc = f"semi_lagrangian/linear/dt{dt}"
    else:
        raise ValueError(f"scheme: must be 'pde' or 'semi_lagrangian', got '{scheme}'")
    metadata = {
        "problem": problem.name,
        "state_names": list(problem.state_names),
        "grid": list(grid.shape),
        "lo": list(grid.lo),
        "hi": list(grid.hi),
        "periodic": list(grid.periodic),
        "horizon": horizon,
        "scheme": scheme_desc,
        "accuracy": accuracy,
        "steps": int(steps),
    }
    return KernelResult(grid, value, metadata)
