"""The shield's common case in one compiled call: does every proposal pass unchanged?

A proposal passes when, as the float32 action the env executes, it meets every barrier row (the QP
filter returns it as it is, no solve) and the gatekeeper certifies it (the backup recovers after it).
`ShieldCore.step` asks this first and runs its general path (filter, fallback, gatekeeper, deadlock
books) only when some arena's proposal does not pass. Both give the same decision, array for array
(tests/shield/test_pass_check.py); this one makes a single kernel call where the general path makes a
few dozen numpy and kernel calls on arrays of a row or two, whose overheads dominate a small batch.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from nodes.shield.backup import Gatekeeper, certify_one
from nodes.shield.barriers import GridLifeBarriers, rows_batch
from nodes.shield.qp import row_slack_into


class PassCheck:
    """``check(pos, h, proposals)`` -> None, or (actions, margin_before, margin_after, constraint) when every
    proposal passes. ``proposals`` are float64 in the action box with no NaN (as `ShieldCore` cleans them)."""

    def __init__(self, barriers: GridLifeBarriers, gatekeeper: Gatekeeper, verify_tolerance: float,
                 pass_tolerance: float) -> None:
        self.tables = (barriers.kernel_tables, gatekeeper.params, gatekeeper.tables)
        self.n_rows = barriers.n_rows
        self.row_tightening = barriers.cfg.row_tightening
        self.verify_tolerance = verify_tolerance
        self.pass_tolerance = pass_tolerance
        self.horizon = gatekeeper.cfg.horizon

    def check(self, pos: np.ndarray, h: np.ndarray,
              proposals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        barrier_tables, backup_params, backup_tables = self.tables
        passed, *out = _all_pass(pos, h, proposals, self.n_rows, self.verify_tolerance, self.pass_tolerance,
                                 self.row_tightening, self.horizon, *barrier_tables, backup_params, *backup_tables)
        return tuple(out) if passed else None  # type: ignore[return-value]


@numba.njit(cache=True)
def _all_pass(pos, h, prop, n_rows, tol, pass_tol, tight, horizon, bP, centres, radii, reach, bounds,  # type: ignore[no-untyped-def]
              gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):
    """(True, the general path's result) when every arena passes, else (False, unfinished arrays). Rows and
    slacks come first for every arena (cheap); the rollouts run only once all of them hold."""
    n = pos.shape[0]
    actions = np.empty((n, 2), dtype=np.float32)
    before = np.empty(n)
    after = np.empty(n)
    constraint = np.empty(n, dtype=np.int64)
    none = (False, actions, before, after, constraint)
    for k in range(n):
        if not (math.isfinite(pos[k, 0]) and math.isfinite(pos[k, 1]) and math.isfinite(h[k, 0])
                and math.isfinite(h[k, 1]) and math.isfinite(h[k, 2])):
            return none
    A = np.zeros((n, n_rows, 2))
    b = np.empty((n, n_rows))
    values = np.empty((n, n_rows))
    rows_batch(pos, h, A, b, values, bP, centres, radii, reach, bounds)
    slack = np.empty((n, n_rows))
    for k in range(n):
        for j in range(2):
            actions[k, j] = min(max(prop[k, j], -1.0), 1.0)  # the box, then float32: as the QP filter screens
            if abs(np.float64(actions[k, j]) - prop[k, j]) > pass_tol:
                return none
        if not row_slack_into(A[k], b[k], np.float64(actions[k, 0]), np.float64(actions[k, 1]), slack[k], tol):
            return none
    for k in range(n):
        ok, _ = certify_one(pos[k, 0], pos[k, 1], h[k, 0], h[k, 1], h[k, 2], actions[k, 0], actions[k, 1], horizon,
                            True, gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs)
        if not ok:
            return none
    for k in range(n):
        # margins against the untightened rows, as FilterResult: min then add before, add then min after
        lowest, best = slack[k, 0], 0
        after[k] = slack[k, 0] + tight
        for r in range(1, n_rows):
            if slack[k, r] < lowest:
                lowest = slack[k, r]
            if slack[k, r] + tight < after[k]:
                after[k], best = slack[k, r] + tight, r
        before[k] = lowest + tight
        constraint[k] = best
    return True, actions, before, after, constraint
