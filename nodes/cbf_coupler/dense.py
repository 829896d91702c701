"""The baseline the coupler is measured against (bench/multi_agent.py): one centralised OSQP problem over all
N agents with the joint row of every pair, near or far (N(N-1)/2 rows), and every agent's own rows.

It is set up once (the sparsity is fixed: every pair has its row) and afterwards only q, l and the values of A
change, so it pays a warm update and solve per step, never a set-up: the dense problem at its best.
"""

from __future__ import annotations

import numpy as np
import osqp
import scipy.sparse as sp

from nodes.cbf_coupler.core import FAR, Coupler
from nodes.shield.qp import SOLVED, box


class DenseCoupler:
    """min sum_i |a_i - a_ref_i|^2 under all pair rows and own rows, for a fixed N and own-row count R."""

    def __init__(self, coupler: Coupler, n_rows: int = 0) -> None:
        self.rows = coupler  # pair rows, arena rows and tightening come from the coupler, so both solve the same rows
        n = coupler.num_agents
        self.pairs = np.argwhere(np.triu(np.ones((n, n), dtype=bool), k=1))
        self.problem = _JointProblem(n, self.pairs, n_rows + (4 if coupler.cfg.arena_size is not None else 0),
                                     coupler.cfg.eps_abs, coupler.cfg.eps_rel, coupler.cfg.max_iter)  # fmt: skip

    def step(self, positions: np.ndarray, proposals: np.ndarray, rows_A: np.ndarray | None = None,
             rows_b: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
        """Joint actions (N, 2) float32, or None when the solver finds none."""
        c = self.rows
        pos, ref, A, b, _ = c._checked(positions, proposals, rows_A, rows_b, None)
        A, b = c._with_arena_rows(pos, A, b)
        coef, pair_b = c._pair_rows(pos, self.pairs)
        x = self.problem.solve(coef, A, c._tightened(np.concatenate([pair_b, b.reshape(-1)])), ref)
        return None if x is None else box(x).astype(np.float32)


class _JointProblem:
    """One OSQP problem: m agents, the given pairs' joint rows, R own rows each; rows: pairs, own rows (agent by
    agent), the box. Set up once; then only q, l and the values of A change."""

    def __init__(self, m: int, pairs: np.ndarray, r: int, eps_abs: float, eps_rel: float, max_iter: int) -> None:
        k = len(pairs)
        pair_rows = np.repeat(np.arange(k), 4)
        pair_cols = np.stack([2 * pairs[:, 0], 2 * pairs[:, 0] + 1, 2 * pairs[:, 1], 2 * pairs[:, 1] + 1], 1)
        own_rows = k + np.repeat(np.arange(m * r), 2)
        own_cols = np.tile([0, 1], m * r) + 2 * np.repeat(np.arange(m), 2 * r)
        box_rows = k + m * r + np.arange(2 * m)
        rows = np.concatenate([pair_rows, own_rows, box_rows])
        cols = np.concatenate([pair_cols.reshape(-1), own_cols, np.arange(2 * m)])
        self.order = np.lexsort((rows, cols))  # canonical order (pairs, own rows, box) -> CSC order
        self.m = m
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=2 * m))])
        A = sp.csc_matrix((np.ones(len(rows)), rows[self.order], indptr), shape=(k + m * r + 2 * m, 2 * m))
        upper = np.concatenate([np.full(k + m * r, np.inf), np.ones(2 * m)])
        lower = np.concatenate([np.zeros(k + m * r), -np.ones(2 * m)])
        self.prob = osqp.OSQP()
        self.prob.setup(sp.eye(2 * m, format="csc"), np.zeros(2 * m), A, lower, upper, verbose=False,
                        warm_starting=True, polishing=False, eps_abs=eps_abs, eps_rel=eps_rel,
                        max_iter=max_iter)  # fmt: skip

    def solve(self, coef: np.ndarray, A: np.ndarray, lower: np.ndarray, target: np.ndarray) -> np.ndarray | None:
        values = np.concatenate([coef.reshape(-1), A.reshape(-1), np.ones(2 * self.m)])[self.order]
        solver = self.prob._solver  # the extension object directly, as nodes/shield/qp.py does
        bounds = np.maximum(np.concatenate([lower, -np.ones(2 * self.m)]), -FAR)
        solver.update_data_vec(q=-box(target).reshape(-1), l=bounds, u=None)
        solver.update_data_mat(P_x=None, P_i=None, A_x=values, A_i=None)
        solver.solve()
        if solver.info.status_val != SOLVED:
            return None
        return np.asarray(solver.solution.x).reshape(self.m, 2)
