"""One-sided spatial derivatives along one axis: first-order upwind, ENO2 and WENO5.

Each scheme returns (left, right): the backward- and forward-biased approximations of dV/dx_axis at
every node. Ghost cells come from ``Grid.pad`` (the boundary conditions).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reachability.grid import Grid

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


def _weno5_weights_and_stencils(
    s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, eps: np.ndarray
) -> np.ndarray:
    a1 = 0.1 / np.square(s1 + eps)
    a2 = 0.6 / np.square(s2 + eps)
    a3 = 0.3 / np.square(s3 + eps)
    return (a1 * p1 + a2 * p2 + a3 * p3) / (a1 + a2 + a3)


def weno5(grid: Grid, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Jiang-Peng WENO5 for Hamilton-Jacobi equations (Osher and Fedkiw, section 3.4).

    With D[j] the one-sided differences of the padded values, the left derivative at node i uses
    D[i..i+4] and the right one D[i+5..i+1] (mirrored). Smoothness indicators and candidate stencils are
    shared between the two sides, so each is computed once over the whole line and then sliced.
    """
    n, dx = values.shape[axis], grid.spacing[axis]
    d = np.diff(grid.pad(values, axis, 3), axis=axis) / dx  # n + 5 entries

    def at(array: np.ndarray, start: int, count: int) -> np.ndarray:
        return _shifted(array, axis, start, count)

    m = n + 3  # length of three-point combinations D[j], D[j+1], D[j+2]
    d0, d1, d2 = at(d, 0, m), at(d, 1, m), at(d, 2, m)
    curvature = 13.0 / 12.0 * np.square(d0 - 2 * d1 + d2)
    smooth_a = curvature + 0.25 * np.square(d0 - 4 * d1 + 3 * d2)
    smooth_b = curvature + 0.25 * np.square(3 * d0 - 4 * d1 + d2)
    smooth_c = curvature + 0.25 * np.square(d0 - d2)
    stencil_up = (2 * d0 - 7 * d1 + 11 * d2) / 6  # the outermost stencil seen from the left
    stencil_down = (11 * d0 - 7 * d1 + 2 * d2) / 6  # ... and seen from the right
    central_a = (-d0 + 5 * d1 + 2 * d2) / 6
    central_b = (2 * d0 + 5 * d1 - d2) / 6
    # epsilon scaled with the local slope so the weights do not depend on the units of V
    sq = np.square(d)
    pair = np.maximum(at(sq, 0, n + 4), at(sq, 1, n + 4))
    quad = np.maximum(at(pair, 0, n + 2), at(pair, 2, n + 2))
    eps = 1e-6 * np.maximum(at(quad, 0, n), at(pair, 4, n)) + 1e-99
    left = _weno5_weights_and_stencils(
        at(smooth_a, 0, n),
        at(smooth_c, 1, n),
        at(smooth_b, 2, n),
        at(stencil_up, 0, n),
        at(central_a, 1, n),
        at(central_b, 2, n),
        eps,
    )
    right = _weno5_weights_and_stencils(
        at(smooth_b, 3, n),
        at(smooth_c, 2, n),
        at(smooth_a, 1, n),
        at(stencil_down, 3, n),
        at(central_b, 2, n),
        at(central_a, 1, n),
        eps,
    )
    return left, right


SCHEMES: dict[str, Derivative] = {"upwind_first": upwind_first, "eno2": eno2, "weno5": weno5}
