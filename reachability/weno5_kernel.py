"""Compiled WENO5 (Jiang-Peng, for Hamilton-Jacobi equations) along one axis of an N-D array.

The array is seen as (outer, n, inner) with the derivative taken along n. For each outer index the one-sided
differences of the line (with ghost differences from the boundary condition) go into a buffer, then every node
is reconstructed in one pass over a contiguous run, so the loop vectorises: over ``inner`` when the axis is
not the last one, over the nodes of the line when it is.

Formulas (Osher and Fedkiw, section 3.4, written with second differences a, b, c, d):
    D- V_i = central_i - phi(a, b, c, d),  D+ V_i = central_i + phi(e, d, c, b)
    central_i = (-D_{i-2} + 7 D_{i-1} + 7 D_i - D_{i+1}) / 12 with D_j = (V_{j+1} - V_j) / dx
    phi(a, b, c, d) = w0 (a - 2b + c) / 3 + (w2 - 1/2) (b - 2c + d) / 6
The nonlinear weights are formed with a single division per side (products of the squared smoothness
indicators instead of three reciprocals).
"""

from __future__ import annotations

import numba
import numpy as np

GHOSTS = 3  # differences needed beyond each end of a line
# epsilon relative to the largest squared slope in the stencil, so the weights do not depend on the units of V;
# the floor keeps the products of squared indicators away from underflow where V is flat
EPS_RELATIVE, EPS_FLOOR = 1e-6, 1e-60
_JIT = {"nogil": True, "cache": True, "fastmath": True, "error_model": "numpy"}


@numba.njit(inline="always", **_JIT)
def _phi(a: float, b: float, c: float, d: float, eps: float) -> float:
    is0 = 13.0 * (a - b) * (a - b) + 3.0 * (a - 3.0 * b) * (a - 3.0 * b) + eps
    is1 = 13.0 * (b - c) * (b - c) + 3.0 * (b + c) * (b + c) + eps
    is2 = 13.0 * (c - d) * (c - d) + 3.0 * (3.0 * c - d) * (3.0 * c - d) + eps
    sq0, sq1, sq2 = is0 * is0, is1 * is1, is2 * is2
    # weights 1 : 6 : 3 over the squared indicators, i.e. w_k = c_k / sq_k / sum_j c_j / sq_j
    w0 = sq1 * sq2
    w2 = 3.0 * sq0 * sq1
    scale = 1.0 / (w0 + 6.0 * sq0 * sq2 + w2)
    return w0 * scale * (a - 2.0 * b + c) / 3.0 + (w2 * scale - 0.5) * (b - 2.0 * c + d) / 6.0


@numba.njit(inline="always", **_JIT)
def _node(d0: float, d1: float, d2: float, d3: float, d4: float, d5: float) -> tuple[float, float]:
    """(left, right) derivative at the node whose six surrounding slopes are D_{i-3} .. D_{i+2}."""
    largest = max(max(max(d0 * d0, d1 * d1), max(d2 * d2, d3 * d3)), max(d4 * d4, d5 * d5))
    # the indicators above are 12 times those of the textbook form, so is epsilon
    eps = 12.0 * (EPS_RELATIVE * largest + EPS_FLOOR)
    s0, s1, s2, s3, s4 = d1 - d0, d2 - d1, d3 - d2, d4 - d3, d5 - d4
    central = (-d1 + 7.0 * d2 + 7.0 * d3 - d4) / 12.0
    return central - _phi(s0, s1, s2, s3, eps), central + _phi(s4, s3, s2, s1, eps)


@numba.njit(inline="always", **_JIT)
def _ghost_source(slot: int, n: int, periodic: bool) -> int:
    """Slot of the buffer whose slope a ghost slot copies. Slot s holds D_{s - GHOSTS}, D_j = (V_{j+1} - V_j) / dx.
    Periodic: D_j = D_{j mod n}. Otherwise the edge slope continues past the ends (linear extrapolation of V)."""
    if periodic:
        return (slot - GHOSTS) % n + GHOSTS
    return min(max(slot, GHOSTS), n + GHOSTS - 2)


@numba.njit(**_JIT)
def _weno5_lines(
    values: np.ndarray, periodic: bool, inv_dx: float, left: np.ndarray, right: np.ndarray, slopes: np.ndarray
) -> None:
    outer, n, inner = values.shape
    slots = n + 2 * GHOSTS - 1
    for o in range(outer):
        line = values[o]
        for j in range(n - 1):
            lo, hi, row = line[j], line[j + 1], slopes[j + GHOSTS]
            for q in range(inner):
                row[q] = (hi[q] - lo[q]) * inv_dx
        if periodic:  # the slope that closes the loop, D_{n-1} = V_0 - V_{n-1}
            lo, hi, row = line[n - 1], line[0], slopes[n - 1 + GHOSTS]
            for q in range(inner):
                row[q] = (hi[q] - lo[q]) * inv_dx
        for g in range(GHOSTS):
            for slot in (g, slots - 1 - g):
                row, copy = slopes[slot], slopes[_ghost_source(slot, n, periodic)]
                for q in range(inner):
                    row[q] = copy[q]
        for i in range(n):
            r0, r1, r2 = slopes[i], slopes[i + 1], slopes[i + 2]
            r3, r4, r5 = slopes[i + 3], slopes[i + 4], slopes[i + 5]
            out_left, out_right = left[o, i], right[o, i]
            for q in range(inner):
                out_left[q], out_right[q] = _node(r0[q], r1[q], r2[q], r3[q], r4[q], r5[q])


@numba.njit(**_JIT)
def _weno5_last_axis(
    values: np.ndarray, periodic: bool, inv_dx: float, left: np.ndarray, right: np.ndarray, slopes: np.ndarray
) -> None:
    outer, n = values.shape
    slots = n + 2 * GHOSTS - 1
    for o in range(outer):
        line = values[o]
        for j in range(n - 1):
            slopes[j + GHOSTS] = (line[j + 1] - line[j]) * inv_dx
        if periodic:
            slopes[n - 1 + GHOSTS] = (line[0] - line[n - 1]) * inv_dx
        for g in range(GHOSTS):
            slopes[g] = slopes[_ghost_source(g, n, periodic)]
            slopes[slots - 1 - g] = slopes[_ghost_source(slots - 1 - g, n, periodic)]
        out_left, out_right = left[o], right[o]
        for i in range(n):
            out_left[i], out_right[i] = _node(
                slopes[i], slopes[i + 1], slopes[i + 2], slopes[i + 3], slopes[i + 4], slopes[i + 5]
            )


def weno5_along_axis(
    values: np.ndarray, axis: int, periodic: bool, spacing: float, left: np.ndarray, right: np.ndarray
) -> None:
    """Write the left- and right-biased WENO5 derivatives of ``values`` along ``axis`` into ``left``/``right``
    (float64, C-contiguous, same shape as ``values``)."""
    shape = values.shape
    n = shape[axis]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    values = np.ascontiguousarray(values, dtype=np.float64)
    if inner == 1:
        slopes = np.empty(n + 2 * GHOSTS - 1)
        _weno5_last_axis(
            values.reshape(outer, n), periodic, 1.0 / spacing, left.reshape(outer, n), right.reshape(outer, n), slopes
        )
    else:
        slopes = np.empty((n + 2 * GHOSTS - 1, inner))
        lines = (outer, n, inner)
        _weno5_lines(values.reshape(lines), periodic, 1.0 / spacing, left.reshape(lines), right.reshape(lines), slopes)
