"""One-sided spatial derivatives along one axis: first-order upwind, ENO2 and WENO5.

Each scheme returns (left, right): the backward- and forward-biased approximations of dV/dx_axis at
every node. Ghost cells come from ``Grid.pad`` (the boundary conditions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reachability.grid import Grid
from reachability.weno5_kernel import weno5_along_axis

Derivative = Callable[[Grid, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _shifted(diffs: np.ndarray, axis: int, start: int, count: int) -> np.ndarray:
    index = [slice(None)] * diffs.ndim
    index[axis] = slice(start, start + count)
    return diffs[tuple(index)]


def upwind_first(grid: Grid, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    n, dx = values.shape[axis], grid.spacing[axis]
    diffs = np.diff(grid.pad(values, axis, 1), axis=axis) / dx  # diffs[k] = (V[k] - V[k-1]) / dx
    return _shifted(diffs, axis, 0, n), _shifted(diffs, axis, 1, n)


def eno2(grid: Grid, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order ENO: the first-order difference plus the smaller of the two candidate curvature terms."""
    n, dx = values.shape[axis], grid.spacing[axis]
    diffs = np.diff(grid.pad(values, axis, 2), axis=axis) / dx  # n + 3 entries; node i sits between i+1, i+2
    second = np.diff(diffs, axis=axis)  # n + 2 entries: second[j] is the curvature * dx at node j - 1

    def smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(np.abs(a) <= np.abs(b), a, b)

    left = _shifted(diffs, axis, 1, n) + 0.5 * smaller(_shifted(second, axis, 0, n), _shifted(second, axis, 1, n))
    right = _shifted(diffs, axis, 2, n) - 0.5 * smaller(_shifted(second, axis, 1, n), _shifted(second, axis, 2, n))
    return left, right


def weno5(grid: Grid, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Jiang-Peng WENO5 for Hamilton-Jacobi equations (Osher and Fedkiw, section 3.4), compiled in
    ``weno5_kernel``; ghost slopes follow the grid's boundary condition on ``axis``."""
    left, right = np.empty(values.shape), np.empty(values.shape)
    weno5_along_axis(values, axis, grid.periodic[axis], float(grid.spacing[axis]), left, right)
    return left, right


SCHEMES: dict[str, Derivative] = {"upwind_first": upwind_first, "eno2": eno2, "weno5": weno5}
