"""CBF-QP on OSQP: min ||a - a_ref||^2 s.t. A a >= b and -1 <= a <= 1, per arena.

The OSQP problems are set up once with a fixed sparsity (every barrier row has both action
coefficients, zeros included) and afterwards only q, l and the values of A are updated, so each step
pays a warm update and solve, never a set-up. Two layouts:

- ``per_arena`` (default): one small OSQP problem per arena slot, each warm-started from its own
  last solution; arenas whose proposal already satisfies every row are not solved at all.
- ``block``: one block-diagonal problem for the whole batch. One infeasible arena makes the whole
  problem infeasible, so such a step is re-solved per arena to find out which.

Every solution is verified against the rows in float32 (the env's action type); a solution that
fails the check, or a solver status other than solved, is reported as infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import osqp
import scipy.sparse as sp

QPLayout = Literal["per_arena", "block"]


@dataclass(frozen=True)
class QPConfig:
    layout: QPLayout = "per_arena"
    eps_abs: float = 1e-8
    eps_rel: float = 1e-8
    max_iter: int = 4000
    verify_tolerance: float = 1e-6  # a row may miss b by this much (b is tightened by as much upstream)

    def __post_init__(self) -> None:
        if self.layout not in ("per_arena", "block"):
            raise ValueError(f"layout: must be 'per_arena' or 'block', got {self.layout!r}")
        if not (self.eps_abs > 0 and self.eps_rel >= 0):
            raise ValueError(f"eps_abs/eps_rel: must be > 0 and >= 0, got {self.eps_abs}, {self.eps_rel}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 10:
            raise ValueError(f"max_iter: must be an integer >= 10, got {self.max_iter!r}")
        if not self.verify_tolerance >= 0:
            raise ValueError(f"verify_tolerance: must be >= 0, got {self.verify_tolerance!r}")


@dataclass(frozen=True)
class QPResult:
    actions: np.ndarray  # (B, 2) float32; zeros where infeasible
    feasible: np.ndarray  # (B,) bool
    solved: np.ndarray  # (B,) bool: the solver ran (False where the proposal already satisfied every row)
    slack: np.ndarray  # (B, R) A a - b at the returned action (barrier units)


class BarrierQP:
    """Batched CBF-QP with a fixed number of barrier rows per arena; set up once, updated each step."""

    def __init__(self, n_rows: int, cfg: QPConfig | None = None, max_instances: int = 4096) -> None:
        """`max_instances` caps the per-arena problems; arena i then shares problem i % max_instances
        (a shared problem only loses the warm start, never correctness)."""
        if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
            raise ValueError(f"n_rows: must be an integer >= 1, got {n_rows!r}")
        if isinstance(max_instances, bool) or not isinstance(max_instances, int) or max_instances < 1:
            raise ValueError(f"max_instances: must be an integer >= 1, got {max_instances!r}")
        self.max_instances = max_instances
        self.cfg = QPConfig() if cfg is None else cfg
        self.n_rows = n_rows
        self._arena: list[osqp.OSQP] = []  # per-arena problems, grown on demand
        self._block: dict[int, osqp.OSQP] = {}  # block problems by batch size
        self.setups = 0  # OSQP set-ups performed (a set-up per step would be a bug)

    def solve(self, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray) -> QPResult:
        """A: (B, R, 2), b: (B, R), a_ref: (B, 2) proposals (clipped to the box)."""
        A = np.asarray(A, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        a_ref = np.clip(np.asarray(a_ref, dtype=np.float64), -1.0, 1.0)
        n = a_ref.shape[0]
        if A.shape != (n, self.n_rows, 2) or b.shape != (n, self.n_rows) or a_ref.shape != (n, 2):
            raise ValueError(
                f"A/b/a_ref: expected shapes ({n}, {self.n_rows}, 2), ({n}, {self.n_rows}), ({n}, 2); "
                f"got {A.shape}, {b.shape}, {a_ref.shape}"
            )
        tol = self.cfg.verify_tolerance
        ref32 = a_ref.astype(np.float32).astype(np.float64)
        needs = ~np.all(np.einsum("nrk,nk->nr", A, ref32) - b >= -tol, axis=1)
        actions = ref32.copy()
        if needs.any():
            idx = np.flatnonzero(needs)
            if self.cfg.layout == "block" and n > 1:
                x, ok = self._solve_block(A, b, a_ref)
                if not ok.all():  # one infeasible arena poisons the block: find it per arena
                    x, ok = self._solve_per_arena(A, b, a_ref, idx)
                else:
                    x, ok = x[idx], ok[idx]
            else:
                x, ok = self._solve_per_arena(A, b, a_ref, idx)
            actions[idx] = np.where(ok[:, None], x, 0.0)
        actions32 = actions.astype(np.float32)
        slack = np.einsum("nrk,nk->nr", A, actions32.astype(np.float64)) - b
        feasible = np.all(slack >= -tol, axis=1)
        actions32[~feasible] = 0.0
        return QPResult(actions=actions32, feasible=feasible, solved=needs, slack=slack)

    # ------------------------------------------------------------------------------------- per arena

    def _solve_per_arena(
        self, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        while len(self._arena) < min(int(idx.max()) + 1, self.max_instances):
            self._arena.append(self._setup(1))
        x = np.zeros((len(idx), 2))
        ok = np.zeros(len(idx), dtype=bool)
        upper = np.full(self.n_rows + 2, np.inf)
        upper[self.n_rows :] = 1.0
        for out, i in enumerate(idx):
            prob = self._arena[i % self.max_instances]
            lower = np.concatenate([b[i], [-1.0, -1.0]])
            prob.update(q=-a_ref[i], l=lower, u=upper, Ax=_values(A[i : i + 1]))
            res = prob.solve(raise_error=False)
            if res.info.status_val == osqp.SolverStatus.OSQP_SOLVED:
                x[out] = np.clip(res.x, -1.0, 1.0)
                ok[out] = True
        return x, ok

    # ----------------------------------------------------------------------------------------- block

    def _solve_block(self, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = a_ref.shape[0]
        prob = self._block.get(n)
        if prob is None:
            prob = self._block[n] = self._setup(n)
        lower = np.concatenate([b, np.full((n, 2), -1.0)], axis=1).reshape(-1)
        upper = np.concatenate([np.full((n, self.n_rows), np.inf), np.ones((n, 2))], axis=1).reshape(-1)
        prob.update(q=-a_ref.reshape(-1), l=lower, u=upper, Ax=_values(A))
        res = prob.solve(raise_error=False)
        if res.info.status_val != osqp.SolverStatus.OSQP_SOLVED:
            return np.zeros((n, 2)), np.zeros(n, dtype=bool)
        return np.clip(res.x.reshape(n, 2), -1.0, 1.0), np.ones(n, dtype=bool)

    def _setup(self, n: int) -> osqp.OSQP:
        """Problem for n arenas: variables (a_x, a_y) per arena; rows = R barrier rows + 2 box rows each."""
        r = self.n_rows
        m = r + 2
        # CSC, column by column: column 2i holds the R barrier rows then box row x; column 2i+1 the same + box y
        indices = []
        for i in range(n):
            base = np.arange(r) + i * m
            indices += [base, [i * m + r], base, [i * m + r + 1]]
        indices = np.concatenate(indices).astype(np.int64)
        indptr = np.arange(2 * n + 1, dtype=np.int64) * (r + 1)
        data = np.ones(indices.size)  # explicit structure; values arrive with each update
        A = sp.csc_matrix((data, indices, indptr), shape=(n * m, 2 * n))
        lower = np.tile(np.concatenate([np.zeros(r), [-1.0, -1.0]]), n)
        upper = np.tile(np.concatenate([np.full(r, np.inf), [1.0, 1.0]]), n)
        prob = osqp.OSQP()
        prob.setup(
            sp.eye(2 * n, format="csc"),
            np.zeros(2 * n),
            A,
            lower,
            upper,
            verbose=False,
            warm_starting=True,
            polishing=False,  # OSQP prints to stdout when polishing finds no active set
            eps_abs=self.cfg.eps_abs,
            eps_rel=self.cfg.eps_rel,
            max_iter=self.cfg.max_iter,
        )
        self.setups += 1
        return prob


def _values(A: np.ndarray) -> np.ndarray:
    """CSC values for (B, R, 2) rows: per arena column x (R values, box 1) then column y (R values, box 1)."""
    n, r, _ = A.shape
    out = np.ones((n, 2, r + 1))
    out[:, :, :r] = A.transpose(0, 2, 1)
    return out.reshape(-1)
