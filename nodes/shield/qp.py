"""CBF-QP on OSQP: min ||a - a_ref||^2 s.t. A a >= b and -1 <= a <= 1, per arena.

The OSQP problems are set up once with a fixed sparsity (every barrier row has both action
coefficients, zeros included) and afterwards only q, l and the values of A are updated, so each step
pays a warm update and solve, never a set-up. Two layouts:

- ``per_arena`` (default): one small OSQP problem per arena slot, each warm-started from its own
  last solution; arenas whose proposal already satisfies every row are not solved at all.
- ``block``: one block-diagonal problem for the whole batch. Arenas found infeasible up front have their
  rows dropped from it; should the solver still fail, the step is re-solved per arena.

An infeasible problem is found before OSQP sees it: in two variables an exact vertex check is cheap,
while OSQP needs many iterations to certify infeasibility.

Every solution is verified against the rows in float32 (the env's action type); a solution that
fails the check, or a solver status other than solved, is reported as infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import osqp
import scipy.sparse as sp

QPLayout = Literal["per_arena", "block"]
SOLVED = osqp.SolverStatus.OSQP_SOLVED


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
    solved: np.ndarray  # (B,) bool: the proposal broke a row, so the arena needed a projection
    slack: np.ndarray  # (B, R) A a - b at the returned action (barrier units)
    proposal_slack: np.ndarray  # (B, R) A a - b at the proposal (clipped to the box, as float32)


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
        a_ref = box(np.asarray(a_ref, dtype=np.float64))
        n = a_ref.shape[0]
        if A.shape != (n, self.n_rows, 2) or b.shape != (n, self.n_rows) or a_ref.shape != (n, 2):
            raise ValueError(
                f"A/b/a_ref: expected shapes ({n}, {self.n_rows}, 2), ({n}, {self.n_rows}), ({n}, 2); "
                f"got {A.shape}, {b.shape}, {a_ref.shape}"
            )
        tol = self.cfg.verify_tolerance
        # an infeasible problem costs OSQP up to max_iter iterations to certify; in two variables the exact
        # check is cheap, so only problems with a point in the feasible set reach the solver
        actions32, proposal_slack, needs, idx = _screen(A, b, a_ref, tol)
        x, ok = np.zeros((0, 2)), np.zeros(0, dtype=bool)
        if idx.size:
            if self.cfg.layout == "block" and n > 1:
                # the infeasible arenas' rows are dropped, so they cannot poison the block
                b_block = b.copy()
                b_block[np.setdiff1d(np.flatnonzero(needs), idx)] = -np.inf
                x, ok = self._solve_block(A, b_block, a_ref)
                if not ok.all():  # left to the solver's tolerance: find the arena per arena
                    x, ok = self.solve_arenas(A, b, a_ref, idx)
                else:
                    x, ok = x[idx], ok[idx]
            else:
                x, ok = self.solve_arenas(A, b, a_ref, idx)
        slack, feasible = verify_solutions(A, b, actions32, idx, x, ok, tol)
        return QPResult(actions=actions32, feasible=feasible, solved=needs, slack=slack, proposal_slack=proposal_slack)

    # ------------------------------------------------------------------------------------- per arena

    def solve_arenas(
        self, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x (k, 2), solved (k,)) for the arenas idx (non-empty, each with a feasible set), each on its own
        warm-started problem."""
        while len(self._arena) < min(int(idx.max()) + 1, self.max_instances):
            self._arena.append(self._setup(1))
        x = np.zeros((len(idx), 2))
        ok = np.zeros(len(idx), dtype=bool)
        q, lower, values = _problem_data(A, b, a_ref, idx)
        for out, i in enumerate(idx.tolist()):
            # the extension object directly: the wrapper's update/solve bookkeeping costs more than the solve
            solver = self._arena[i % self.max_instances]._solver
            solver.update_data_vec(q=q[out], l=lower[out], u=None)
            solver.update_data_mat(P_x=None, P_i=None, A_x=values[out], A_i=None)
            solver.solve()
            if solver.info.status_val == SOLVED:
                x[out] = solver.solution.x
                ok[out] = True
        return x, ok

    # ----------------------------------------------------------------------------------------- block

    def _solve_block(self, A: np.ndarray, b: np.ndarray, a_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = a_ref.shape[0]
        prob = self._block.get(n)
        if prob is None:
            prob = self._block[n] = self._setup(n)
        lower = np.concatenate([b, np.full((n, 2), -1.0)], axis=1).reshape(-1)
        prob.update(q=-a_ref.reshape(-1), l=lower, Ax=_values(A))
        res = prob.solve(raise_error=False)
        if res.info.status_val != SOLVED:
            return np.zeros((n, 2)), np.zeros(n, dtype=bool)
        return res.x.reshape(n, 2), np.ones(n, dtype=bool)

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


def row_slack(A: np.ndarray, b: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """A a - b per row (B, R) for rows (B, R, 2), (B, R) and actions (B, 2) (float32 actions are taken exactly)."""
    return (A @ actions.astype(np.float64)[:, :, None])[..., 0] - b


def box(a: np.ndarray) -> np.ndarray:
    """a clipped to the action box [-1, 1] (ufuncs: np.clip costs more on the small arrays of one decision)."""
    return np.minimum(np.maximum(a, -1.0), 1.0)


@numba.njit(cache=True, inline="always")
def line_crossing(lx, ly, lb, i, j, eps):  # type: ignore[no-untyped-def]
    """Where lines i and j of ``lx x + ly y = lb`` cross: (True, x, y), or (False, 0, 0) when (nearly) parallel."""
    det = lx[i] * ly[j] - ly[i] * lx[j]
    if abs(det) < eps:
        return False, 0.0, 0.0
    return True, (lb[i] * ly[j] - ly[i] * lb[j]) / det, (lx[i] * lb[j] - lb[i] * lx[j]) / det


@numba.njit(cache=True)
def feasible_one(A, b, tol):  # type: ignore[no-untyped-def]
    """Does some a in [-1, 1]^2 satisfy A a >= b - tol (rows (R, 2), (R,))? The set is a convex polygon inside
    the box, so it is non-empty exactly when one of its candidate vertices (box corners, row lines crossing
    box edges, pairs of row lines crossing) satisfies every row."""
    r = A.shape[0]
    m = r + 4
    # lines: the R rows, then the box edges as rows (x >= -1, -x >= -1, y >= -1, -y >= -1)
    lx, ly, lb = np.empty(m), np.empty(m), np.empty(m)
    lx[:r], ly[:r], lb[:r] = A[:, 0], A[:, 1], b
    lx[r:] = (1.0, -1.0, 0.0, 0.0)
    ly[r:] = (0.0, 0.0, 1.0, -1.0)
    lb[r:] = -1.0
    for i in range(m):
        for j in range(i + 1, m):
            crosses, x, y = line_crossing(lx, ly, lb, i, j, 1e-12)
            if not crosses:
                continue
            inside = True
            for q in range(m):
                if not lx[q] * x + ly[q] * y >= lb[q] - tol:
                    inside = False
                    break
            if inside:
                return True
    return False


@numba.njit(cache=True)
def row_slack_into(A, b, ax, ay, slack, tol):  # type: ignore[no-untyped-def]
    """slack = A a - b for one arena; True when every row holds to tol (a NaN slack never holds)."""
    holds = True
    for row in range(b.shape[0]):
        slack[row] = A[row, 0] * ax + A[row, 1] * ay - b[row]
        if not slack[row] >= -tol:
            holds = False
    return holds


@numba.njit(cache=True)
def _screen(A, b, a_ref, tol):  # type: ignore[no-untyped-def]
    """Proposals clipped to the box as float32 (the env's action type), the row slack there, which arenas
    break a row, and which of those have a feasible set (the ones OSQP solves)."""
    n = b.shape[0]
    actions = np.empty((n, 2), dtype=np.float32)
    slack = np.empty(b.shape)
    needs = np.zeros(n, dtype=np.bool_)
    solvable = np.empty(n, dtype=np.int64)
    count = 0
    for arena in range(n):
        for j in range(2):
            actions[arena, j] = min(max(a_ref[arena, j], -1.0), 1.0)
        ax, ay = np.float64(actions[arena, 0]), np.float64(actions[arena, 1])
        if not row_slack_into(A[arena], b[arena], ax, ay, slack[arena], tol):
            needs[arena] = True
            if feasible_one(A[arena], b[arena], tol):
                solvable[count] = arena
                count += 1
    return actions, slack, needs, solvable[:count].copy()


@numba.njit(cache=True)
def verify_solutions(A, b, actions, idx, x, ok, tol):  # type: ignore[no-untyped-def]
    """Write the solutions (clipped to the box, as float32; 0 where unsolved) into actions, then the row
    slack at every action and whether it holds; actions that do not hold become 0."""
    for k in range(idx.shape[0]):
        for j in range(2):
            actions[idx[k], j] = min(max(x[k, j], -1.0), 1.0) if ok[k] else 0.0
    n = b.shape[0]
    slack = np.empty(b.shape)
    feasible = np.zeros(n, dtype=np.bool_)
    for arena in range(n):
        ax, ay = np.float64(actions[arena, 0]), np.float64(actions[arena, 1])
        feasible[arena] = row_slack_into(A[arena], b[arena], ax, ay, slack[arena], tol)
        if not feasible[arena]:
            actions[arena, 0], actions[arena, 1] = 0.0, 0.0
    return slack, feasible


@numba.njit(cache=True)
def _problem_data(A, b, a_ref, idx):  # type: ignore[no-untyped-def]
    """OSQP's q, lower bounds (rows, then the box) and CSC values of A (see `_values`) for the arenas idx."""
    k, r = idx.shape[0], b.shape[1]
    q = np.empty((k, 2))
    lower = np.full((k, r + 2), -1.0)
    values = np.ones((k, 2 * (r + 1)))
    for out in range(k):
        n = idx[out]
        q[out, 0], q[out, 1] = -a_ref[n, 0], -a_ref[n, 1]
        for row in range(r):
            lower[out, row] = b[n, row]
            values[out, row] = A[n, row, 0]
            values[out, r + 1 + row] = A[n, row, 1]
    return q, lower, values
