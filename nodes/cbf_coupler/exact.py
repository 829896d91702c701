"""Exact projection onto a polygon in two variables: min |a - a_ref|^2 s.t. A a >= b, -1 <= a <= 1.

In two variables the minimiser is a_ref itself, the projection of a_ref onto one constraint line, or a vertex
where two lines cross: it is the nearest of those candidates that keeps every row. Enumerating them costs
O(m^3) for m rows (a few microseconds at the coupler's sizes), gives the optimum to rounding, and proves
infeasibility when no candidate is feasible: no iterations, no tolerance to tune. The coupler's default
solver; `solver="osqp"` runs the same problems through the shield's BarrierQP instead.
"""

from __future__ import annotations

import numba
import numpy as np

from nodes.shield.qp import line_crossing


@numba.njit(cache=True, inline="always")
def _holds(lx, ly, lb, x, y, tol):  # type: ignore[no-untyped-def]
    for q in range(lb.shape[0]):
        if not lx[q] * x + ly[q] * y >= lb[q] - tol:
            return False
    return True


@numba.njit(cache=True)
def project(A, b, a_ref, tol):  # type: ignore[no-untyped-def]
    """A (n, R, 2), b (n, R), a_ref (n, 2) -> actions (n, 2) float32 (0 where infeasible), feasible (n,), and
    solved (n,): the proposal (clipped to the box) broke a row, so it was projected."""
    n, r = b.shape
    m = r + 4
    actions = np.zeros((n, 2), dtype=np.float32)
    feasible = np.zeros(n, dtype=np.bool_)
    solved = np.zeros(n, dtype=np.bool_)
    lx, ly, lb = np.empty(m), np.empty(m), np.empty(m)
    for k in range(n):
        lx[:r], ly[:r], lb[:r] = A[k, :, 0], A[k, :, 1], b[k]
        lx[r:] = (1.0, -1.0, 0.0, 0.0)
        ly[r:] = (0.0, 0.0, 1.0, -1.0)
        lb[r:] = -1.0
        rx, ry = a_ref[k, 0], a_ref[k, 1]
        cx, cy = min(max(rx, -1.0), 1.0), min(max(ry, -1.0), 1.0)
        if _holds(lx, ly, lb, cx, cy, tol):
            actions[k, 0], actions[k, 1] = cx, cy
            feasible[k] = True
            continue
        solved[k] = True
        best, bx, by = np.inf, 0.0, 0.0
        for i in range(m):  # projections onto each line
            norm2 = lx[i] * lx[i] + ly[i] * ly[i]
            if norm2 == 0.0:
                continue
            step = (lb[i] - lx[i] * rx - ly[i] * ry) / norm2
            x, y = rx + step * lx[i], ry + step * ly[i]
            d = (x - rx) ** 2 + (y - ry) ** 2
            if d < best and _holds(lx, ly, lb, x, y, tol):
                best, bx, by = d, x, y
        for i in range(m):  # vertices
            for j in range(i + 1, m):
                crosses, x, y = line_crossing(lx, ly, lb, i, j, 1e-14)
                if not crosses:
                    continue
                d = (x - rx) ** 2 + (y - ry) ** 2
                if d < best and _holds(lx, ly, lb, x, y, tol):
                    best, bx, by = d, x, y
        if best < np.inf:
            actions[k, 0], actions[k, 1] = min(max(bx, -1.0), 1.0), min(max(by, -1.0), 1.0)
            feasible[k] = True
    return actions, feasible, solved
