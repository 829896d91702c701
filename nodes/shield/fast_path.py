"""The shield's ordinary QP step: a few compiled calls around the OSQP solves.

With the QP filter and the gatekeeper on, most decisions need no degraded mode but the QP's own: every state is
finite and fresh, and no estimate's uncertainty, OOD detector or deadlock hold is in play. `ShieldCore.step`
then asks `FastPath.decide` first. Its contract is narrow: a `FastDecision` for the whole step, or None ("not
mine"), and then the general path decides the step from the start, as if it had not been asked.

1. `_screen` (one kernel): the barrier rows at every state and each proposal's row slack, as the float32
   action the env executes. When every proposal meets every row and the gatekeeper certifies it, every arena
   passes and the step is decided. An arena whose proposal breaks a row gets the exact two-variable
   feasibility check. A state outside the plausible bounds, or an arena whose deadlock streak this step could
   complete (streak `deadlock_steps` - 1 and a pushing proposal), declines the step before anything is solved:
   a deadlock is the general path's to detect and hold, and nothing solved here has moved the warm starts.
2. OSQP solves the feasible arenas that need a projection (`BarrierQP.solve_arenas`, as the QP filter does).
3. `verify_solutions`, the QP filter's own float32 verification of the solutions, then `_settle` (one kernel):
   the filter's margins and the deadlock streaks.
4. An arena without a verified action (an infeasible QP, or a solution that fails verification) gets the
   declared fallback, the same `Fallback.act` call the general path makes for cause `infeasible`.
5. `_conclude` (one kernel): the gatekeeper's certificate for every action (and the backup where it fails),
   and the modes.

Both paths give the same decision, array for array, and the same books (tests/shield/test_fast_path.py).
This one makes a handful of kernel calls and the solves where the general path makes a few dozen numpy and
kernel calls on arrays of a row or two, whose overheads dominate a small batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from nodes.shield.backup import Gatekeeper, backup_action, certify_one
from nodes.shield.barriers import GridLifeBarriers, rows_batch
from nodes.shield.fallback import Fallback, fallback_margins
from nodes.shield.qp import BarrierQP, feasible_one, row_slack_into, verify_solutions
from protocols import MODE_FALLBACK, MODE_FILTERED, MODE_PASS

PASSED, SOLVE, GENERAL = range(3)  # outcomes of `_screen`


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a microsecond more to build, once per decision
class FastDecision:
    """What the general path would decide for a step whose only degraded arenas are the QP's (cause `infeasible`)."""

    actions: np.ndarray  # (B, 2) float32, the gatekeeper's backup where it replaced the filter's action
    mode: np.ndarray  # (B,) int64: MODE_PASS, MODE_FILTERED or MODE_FALLBACK (protocols)
    margin_before: np.ndarray  # (B,)
    margin_after: np.ndarray  # (B,) nan where the backup replaced the action
    constraint: np.ndarray  # (B,) int64 index into the barrier names
    backup: np.ndarray  # (B,) bool
    stuck: np.ndarray  # (B,) int64, the deadlock streaks after this step
    infeasible: np.ndarray  # (k,) int64: the arenas without a verified action, which got the fallback
    books: np.ndarray  # (4,) int64: arenas filtered, arenas on the fallback, backups, uncertified backups


class FastPath:
    """``decide(pos, h, proposals, stuck)`` -> the step's `FastDecision`, or None: the general path decides it
    from the start. ``proposals`` are float64 in the action box with no NaN (as `ShieldCore` cleans them);
    ``stuck`` are the deadlock streaks so far."""

    def __init__(self, barriers: GridLifeBarriers, gatekeeper: Gatekeeper, qp: BarrierQP, fallback: Fallback,
                 pass_tolerance: float, deadlock_action_eps: float, deadlock_proposal_eps: float, deadlock_steps: int,
                 plausible: tuple[np.ndarray, np.ndarray]) -> None:
        self.barrier_tables = barriers.kernel_tables
        self.backup_tables = (gatekeeper.params, *gatekeeper.tables)
        self.qp = qp
        self.fallback = fallback
        self.n_rows = barriers.n_rows
        # floats whatever the configs hold, so that the kernels' signatures never change with them
        self.row_tightening = float(barriers.cfg.row_tightening)
        self.verify_tolerance = float(qp.cfg.verify_tolerance)
        self.pass_tolerance = float(pass_tolerance)
        self.horizon = int(gatekeeper.cfg.horizon)
        # the general path compares float32 squared norms with the squared eps cast to float32 (numpy's rule for
        # a Python float against a float32 array), the float64 proposals' with the float64 one
        self.action_eps2 = np.float32(deadlock_action_eps**2)
        self.proposal_eps2 = float(deadlock_proposal_eps**2)
        self.deadlock_steps = int(deadlock_steps)
        self.per_arena = qp.cfg.layout == "per_arena"  # a block layout solves its own way: only passes come here
        self.low, self.high = plausible  # float64 bounds of (x, y, E, T, I)

    def decide(self, pos: np.ndarray, h: np.ndarray, proposals: np.ndarray, stuck: np.ndarray) -> FastDecision | None:
        pos, h = np.ascontiguousarray(pos), np.ascontiguousarray(h)  # the layout the kernels are compiled for
        status, A, b, actions, proposal_slack, solve = _screen(
            pos, h, proposals, stuck, self.low, self.high, self.n_rows, self.verify_tolerance, self.pass_tolerance,
            self.action_eps2, self.proposal_eps2, self.deadlock_steps, self.horizon, *self.barrier_tables,
            *self.backup_tables)  # fmt: skip
        n = len(actions)
        if status == PASSED:
            before, after, constraint = _margins(proposal_slack, proposal_slack, self.row_tightening)
            return FastDecision(actions=actions, mode=np.zeros(n, dtype=np.int64), margin_before=before,
                                margin_after=after, constraint=constraint, backup=np.zeros(n, dtype=bool),
                                stuck=np.zeros(n, dtype=np.int64), infeasible=np.zeros(0, dtype=np.int64),
                                books=np.zeros(4, dtype=np.int64))
        if status == GENERAL or not self.per_arena:
            return None
        if solve.size:
            x, ok = self.qp.solve_arenas(A, b, proposals, solve)
        else:  # every row holds, yet an action is not its proposal, is uncertified or stands still while pushing
            x, ok = np.zeros((0, 2)), np.zeros(0, dtype=bool)
        slack, feasible = verify_solutions(A, b, actions, solve, x, ok, self.verify_tolerance)  # as the QP filter
        before, after, constraint, stuck_after = _settle(
            actions, proposals, proposal_slack, slack, feasible, stuck, self.row_tightening, self.action_eps2,
            self.proposal_eps2)  # fmt: skip
        infeasible = np.flatnonzero(~feasible)
        if infeasible.size:  # the declared fallback, as the general path runs it for cause `infeasible`
            fallback_actions, fallback_slack = self.fallback.act(
                pos[infeasible], h[infeasible], infeasible, np.ones(infeasible.size, dtype=bool))
            actions[infeasible] = fallback_actions
            after[infeasible], constraint[infeasible] = fallback_margins(fallback_slack)
        gated, backup, mode, books = _conclude(
            pos, h, proposals, actions, after, infeasible, self.pass_tolerance, self.horizon,
            *self.backup_tables)  # fmt: skip
        return FastDecision(actions=gated, mode=mode, margin_before=before, margin_after=after, constraint=constraint,
                            backup=backup, stuck=stuck_after, infeasible=infeasible, books=books)


@numba.njit(cache=True)
def _margins_into(before_slack, after_slack, tight, before, after, constraint):  # type: ignore[no-untyped-def]
    """Margins against the untightened rows, as `QPFilter` takes them: the proposal's slack minimum plus the
    tightening (before); the minimum of the action's slack plus the tightening, and its first row (after,
    constraint)."""
    for k in range(after_slack.shape[0]):
        lowest = before_slack[k, 0]
        after[k], best = after_slack[k, 0] + tight, 0
        for r in range(1, after_slack.shape[1]):
            lowest = min(lowest, before_slack[k, r])
            if after_slack[k, r] + tight < after[k]:
                after[k], best = after_slack[k, r] + tight, r
        before[k] = lowest + tight
        constraint[k] = best


@numba.njit(cache=True)
def _margins(before_slack, after_slack, tight):  # type: ignore[no-untyped-def]
    """`_margins_into` into new arrays: (before, after, constraint)."""
    n = after_slack.shape[0]
    before, after, constraint = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
    _margins_into(before_slack, after_slack, tight, before, after, constraint)
    return before, after, constraint


@numba.njit(cache=True)
def _not_mine(pos, h, prop, stuck, low, high, proposal_eps2, deadlock_steps):  # type: ignore[no-untyped-def]
    """Whether the step is the general path's: a state outside [low, high] (x, y, E, T, I) or not finite, or an
    arena whose streak is one short of `deadlock_steps` with a pushing proposal (`_settle` would complete it)."""
    for k in range(pos.shape[0]):
        for j in range(5):  # NaN fails the comparison too
            value = pos[k, j] if j < 2 else h[k, j - 2]
            if not low[j] <= value <= high[j]:
                return True
        if stuck[k] + 1 >= deadlock_steps and prop[k, 0] * prop[k, 0] + prop[k, 1] * prop[k, 1] > proposal_eps2:
            return True
    return False


@numba.njit(cache=True)
def _screen(pos, h, prop, stuck, low, high, n_rows, tol, pass_tol,  # type: ignore[no-untyped-def]
            action_eps2, proposal_eps2, deadlock_steps, horizon,
            bP, centres, radii, reach, bounds, gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):
    """(status, A, b, actions, slack, solve): the rows, the proposals as float32 actions in the box and their
    row slack. PASSED: every arena passes (and none stands still while pushing, which would extend a deadlock
    streak). SOLVE: some arena does not; `solve` lists those that break a row and have a feasible set.
    GENERAL: a state lies outside [low, high] (x, y, E, T, I) or is not finite, or an arena's streak could reach
    `deadlock_steps` this step (it is one short and the proposal pushes: `_settle` would extend it)."""
    n = pos.shape[0]
    A = np.zeros((n, n_rows, 2))
    b = np.empty((n, n_rows))
    actions = np.empty((n, 2), dtype=np.float32)
    slack = np.empty((n, n_rows))
    solve = np.empty(n, dtype=np.int64)
    if _not_mine(pos, h, prop, stuck, low, high, proposal_eps2, deadlock_steps):
        return GENERAL, A, b, actions, slack, solve[:0].copy()
    values = np.empty((n, n_rows))
    rows_batch(pos, h, A, b, values, bP, centres, radii, reach, bounds)
    passes = True
    count = 0
    for k in range(n):
        for j in range(2):
            actions[k, j] = min(max(prop[k, j], -1.0), 1.0)  # the box, then float32: as the QP filter screens
            if abs(np.float64(actions[k, j]) - prop[k, j]) > pass_tol:
                passes = False
        # with the deadlock eps a hair apart, a pushing proposal can round to a standstill (float32, as _settle)
        if (actions[k, 0] * actions[k, 0] + actions[k, 1] * actions[k, 1] < action_eps2
                and prop[k, 0] * prop[k, 0] + prop[k, 1] * prop[k, 1] > proposal_eps2):
            passes = False
        if not row_slack_into(A[k], b[k], np.float64(actions[k, 0]), np.float64(actions[k, 1]), slack[k], tol):
            passes = False
            if feasible_one(A[k], b[k], tol):  # an infeasible arena is left unsolved, as the QP filter leaves it
                solve[count] = k
                count += 1
    if passes:
        passes = _all_certified(pos, h, actions, horizon, gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs)
    return (PASSED if passes else SOLVE), A, b, actions, slack, solve[:count].copy()


@numba.njit(cache=True)
def _all_certified(pos, h, actions, horizon,  # type: ignore[no-untyped-def]
                   gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):
    """Whether the gatekeeper certifies every arena's action (stops at the first it does not)."""
    for k in range(pos.shape[0]):
        ok, _ = certify_one(pos[k, 0], pos[k, 1], h[k, 0], h[k, 1], h[k, 2], actions[k, 0], actions[k, 1],
                            horizon, True, gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs)
        if not ok:
            return False
    return True


@numba.njit(cache=True)
def _settle(actions, prop, proposal_slack, slack, feasible, stuck, tight,  # type: ignore[no-untyped-def]
            action_eps2, proposal_eps2):
    """The QP filter's margins of its verified actions, and the deadlock streaks after them: an arena that stands
    still (float32) while its proposal pushes extends its streak, any other starts afresh, and so does one without
    a verified action (as `ShieldCore` counts). No streak reaches `deadlock_steps` here: `_screen` declined every
    step where one could. (before, after, constraint, streaks)."""
    n = actions.shape[0]
    before, after, constraint = _margins(proposal_slack, slack, tight)
    stuck_after = np.zeros(n, dtype=np.int64)
    for k in range(n):
        stopped = actions[k, 0] * actions[k, 0] + actions[k, 1] * actions[k, 1] < action_eps2  # in float32
        pushing = prop[k, 0] * prop[k, 0] + prop[k, 1] * prop[k, 1] > proposal_eps2
        if stopped and pushing and feasible[k]:
            stuck_after[k] = stuck[k] + 1
    return before, after, constraint, stuck_after


@numba.njit(cache=True)
def _conclude(pos, h, prop, actions, after, infeasible, pass_tol, horizon,  # type: ignore[no-untyped-def]
              gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs):
    """What `ShieldCore` makes of the actions (the filter's, the fallback's in the arenas `infeasible`): the
    gatekeeper (on a copy of the actions; `after` becomes nan where the backup replaces one), modes. (gated,
    backup, mode, books: filtered, fallback, backups, uncertified)."""
    n = pos.shape[0]
    gated = actions.copy()
    backup = np.zeros(n, dtype=np.bool_)
    mode = np.zeros(n, dtype=np.int64)
    books = np.zeros(4, dtype=np.int64)
    for j in range(infeasible.shape[0]):
        mode[infeasible[j]] = MODE_FALLBACK
    for k in range(n):
        px, py, e, t, i = pos[k, 0], pos[k, 1], h[k, 0], h[k, 1], h[k, 2]
        certified, _ = certify_one(px, py, e, t, i, gated[k, 0], gated[k, 1], horizon, True,
                                   gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs)
        if not certified:
            gated[k, 0], gated[k, 1] = backup_action(px, py, e, t, i, gP, sc, sr, sk, geo, heading, hops, hubs)
            backup[k] = True
            after[k] = np.nan
            books[2] += 1
            safe, _ = certify_one(px, py, e, t, i, gated[k, 0], gated[k, 1], horizon, True,
                                  gP, sc, sr, sk, hc, hr, zc, zr, geo, heading, hops, hubs)
            if not safe:
                books[3] += 1
        if mode[k] != MODE_FALLBACK:
            gap = max(abs(np.float64(gated[k, 0]) - prop[k, 0]), abs(np.float64(gated[k, 1]) - prop[k, 1]))
            mode[k] = MODE_FILTERED if gap > pass_tol else MODE_PASS
        if mode[k] == MODE_FILTERED:
            books[0] += 1
        elif mode[k] == MODE_FALLBACK:
            books[1] += 1
    return gated, backup, mode, books
