"""CBF-QP for a Box action space of any dimension: the projection of a proposal onto `A u <= b` within the box.

The agent's actions a live in [-1, 1]^d and the env executes u = c + s a (the box's centre and half-widths,
`nodes.env.node.scale_to_box`); the rows are given in env units. So the problem solved is
`min ||s (a - a_ref)||^2  s.t.  (A s) a <= b - A c,  -1 <= a <= 1`, i.e. the closest action in env units.

As in `qp.py`, every OSQP problem is set up once (per arena slot and row count, dense structure) and then only
updated and warm-started; a proposal that already meets every row is not solved. The rows are tightened for
the solve by `verify_tolerance` (scaled by each row's size), and the answer is verified on what the env will
execute: the float32 action, scaled onto the box as the env does, must meet every row exactly. Anything else
(solver status, a failed check) is reported as infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import osqp
import scipy.sparse as sp

from nodes.env.node import BoxScale
from nodes.shield.qp import SOLVED, QPConfig


@dataclass(frozen=True)
class BoxQPResult:
    action: np.ndarray  # (d,) float32 in [-1, 1]; zeros where infeasible
    feasible: bool
    solved: bool  # the proposal broke a row, so it needed a projection
    slack_before: np.ndarray  # (R,) b - A u at the proposal (env units; >= 0 holds)
    slack_after: np.ndarray  # (R,) b - A u at the returned action


class BoxQP:
    """Projection onto affine rows within a Box action space, one warm-started OSQP problem per arena slot."""

    def __init__(self, space: Any, cfg: QPConfig | None = None) -> None:
        """`space`: the env's gymnasium Box (its low, high, shape and dtype)."""
        self.space = space
        self.low = np.asarray(space.low, np.float64).reshape(-1)
        self.high = np.asarray(space.high, np.float64).reshape(-1)
        if self.low.shape != self.high.shape or not (np.isfinite(self.low).all() and np.isfinite(self.high).all()) \
                or not (self.high > self.low).all():
            raise ValueError(f"low/high: need a bounded box with high > low, got {self.low}, {self.high}")
        self.dim = self.low.size
        self.centre, self.half = (self.low + self.high) / 2, (self.high - self.low) / 2
        self.cfg = QPConfig() if cfg is None else cfg
        self._scale = BoxScale(space)
        self._upper = np.ones(0)  # OSQP's upper bounds: the rows' h, then the box's 1s (reused between solves)
        self._problems: dict[tuple[int, int], osqp.OSQP] = {}
        self.setups = 0

    def executed(self, a: np.ndarray) -> np.ndarray:
        """The env-unit action the env executes for agent action(s) a (float64 of the env's own rounding)."""
        a2 = np.asarray(a, np.float32).reshape(-1, self.dim)
        return self._scale(a2).astype(np.float64).reshape(np.shape(a))

    def slack(self, A: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
        return b - A @ self.executed(a)

    def project(self, slot: int, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray) -> BoxQPResult:
        prop = np.minimum(np.maximum(np.asarray(a_ref, np.float64), -1.0), 1.0).astype(np.float32)
        before = self.slack(A, b, prop)
        if (before >= 0).all():
            return BoxQPResult(prop, True, False, before, before)
        G = A * self.half[None, :]
        h = b - A @ self.centre - self.cfg.verify_tolerance * (1.0 + np.abs(G).sum(axis=1))
        solver = self._problem(slot, A.shape[0])._solver
        weight = self.half**2
        if self._upper.size != h.size + self.dim:
            self._upper = np.ones(h.size + self.dim)
        self._upper[: h.size] = h
        solver.update_data_vec(q=-weight * prop.astype(np.float64), l=None, u=self._upper)
        solver.update_data_mat(P_x=None, P_i=None, A_x=_values(G), A_i=None)
        solver.solve()
        if solver.info.status_val != SOLVED:
            return BoxQPResult(np.zeros(self.dim, np.float32), False, True, before, before)
        action = np.minimum(np.maximum(solver.solution.x, -1.0), 1.0).astype(np.float32)
        after = self.slack(A, b, action)
        if not (after >= 0).all():
            return BoxQPResult(np.zeros(self.dim, np.float32), False, True, before, after)
        return BoxQPResult(action, True, True, before, after)

    def _problem(self, slot: int, n_rows: int) -> osqp.OSQP:
        key = (slot, n_rows)
        prob = self._problems.get(key)
        if prob is None:
            prob = self._problems[key] = self._setup(n_rows)
        return prob

    def _setup(self, r: int) -> osqp.OSQP:
        d = self.dim
        # CSC, column by column: column j holds the R row coefficients, then its box row
        indices = np.concatenate([np.concatenate([np.arange(r), [r + j]]) for j in range(d)]).astype(np.int64)
        indptr = np.arange(d + 1, dtype=np.int64) * (r + 1)
        A = sp.csc_matrix((np.ones(indices.size), indices, indptr), shape=(r + d, d))
        lower = np.concatenate([np.full(r, -np.inf), -np.ones(d)])
        upper = np.concatenate([np.zeros(r), np.ones(d)])
        prob = osqp.OSQP()
        prob.setup(sp.diags(self.half**2, format="csc"), np.zeros(d), A, lower, upper, verbose=False,
                   warm_starting=True, polishing=False, eps_abs=self.cfg.eps_abs, eps_rel=self.cfg.eps_rel,
                   max_iter=self.cfg.max_iter)
        self.setups += 1
        return prob


def _values(G: np.ndarray) -> np.ndarray:
    """CSC values of [G; I], column by column (see `_setup`)."""
    r, d = G.shape
    out = np.ones((d, r + 1))
    out[:, :r] = G.T
    return out.reshape(-1)
