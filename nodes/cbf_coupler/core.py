"""CBF coupler: joint collision avoidance on top of each agent's own shield (docs/coupler.md).

    coupler = Coupler(CouplerConfig(min_separation=0.4), step_len)     # step_len: dt * vmax per agent (N,)
    decision = coupler.step(positions, proposals, rows_A, rows_b, priority)
    env.step(decision.actions)

Single-integrator agents, p_i' = p_i + s_i a_i with a_i in [-1, 1]^2. For each close pair (nodes/cbf_coupler/
grid.py) the separation barrier h_ij = |p_i - p_j| - d gets the row (n = (p_i - p_j) / |p_i - p_j|)

    s_i n.a_i - s_j n.a_j >= -gamma h_ij          =>   h_ij(p') >= (1 - gamma) h_ij(p)

(|p_i' - p_j'| >= n.(p_i' - p_j'), so the row is exact, not linearised): the discrete form of the pairwise
certificates of Wang, Ames and Egerstedt (2017). Responsibility is shared as in their decentralised form:
agent i keeps s_i n.a_i >= -alpha_i gamma h_ij and agent j keeps -s_j n.a_j >= -alpha_j gamma h_ij, with
alpha_i = s_i / (s_i + s_j) (the faster agent takes more; with `right_of_way` k and a priority, s_i is weighted
by exp(-k prio_i), so the agent nearer its own limits takes more); the two halves add up to the joint row. So each
agent solves one small QP, min |a_i - a_ref_i|^2 over its own rows (its shield's A_i a_i >= b_i and the arena
rows 0 <= p_i + s_i a_i <= L) plus its halves of its close pairs (nodes/shield/qp.py's BarrierQP, batched
over the agents, each problem set up once and warm-started): the coupler never undoes an individual shield,
and agents whose proposal already keeps every row are not solved at all.

An agent whose QP is infeasible (its own rows against its halves) sends its group (the agents joined to it
by close pairs) to the declared fallback, a priority-ordered stop: in priority order (smallest value first:
the agent closest to its own limits) each agent takes the action nearest its proposal under its own rows
and the full pair rows against the actions already fixed (agents not yet fixed counted as stopped); an
agent left without one stops. A stop never breaks a pair row from a separated state, so the pair rows
always hold; an own row the stop breaks is counted (`own_rows_broken`). Deadlock (an agent held near
standstill while it proposes to move, for `deadlock_steps` steps) is counted and resolved by yielding: for
`deadlock_hold_steps` steps every deadlocked agent but the first in priority of its group turns its
proposal 90 degrees to its right, through the same QP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nodes.cbf_coupler import exact, grid
from nodes.shield.qp import BarrierQP, QPConfig, box

VERIFY_TOLERANCE = 0.0  # every row is checked, untightened, at the returned (float32) actions to this
FAR = 1e20  # a -inf bound (padding row), as the solvers take it
SOLVERS: tuple[str, str] = ("exact", "osqp")


@dataclass(frozen=True)
class CouplerConfig:
    min_separation: float = 0.4  # d, metres between agent centres
    gamma: float = 0.5  # pair rows keep h' >= (1 - gamma) h
    arena_size: float | None = 10.0  # arena rows 0 <= p + s a <= L per agent; None: no walls
    tightening: float = 1e-5  # rows are solved tightened by this, then checked untightened
    deadlock_steps: int = 8
    deadlock_hold_steps: int = 12
    deadlock_action_eps: float = 0.05
    deadlock_proposal_eps: float = 0.3
    eps_abs: float = 1e-7
    eps_rel: float = 1e-7
    max_iter: int = 4000
    solver: str = "exact"  # "exact" (nodes/cbf_coupler/exact.py) or "osqp" (the shield's BarrierQP)
    # k: with a priority given, a pair's closing budget is split in proportion to s_i exp(-k (prio_i - min prio))
    # instead of s_i alone, so the agent nearer its own limits keeps more of its way (0: by speed alone)
    right_of_way: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_separation", "tightening", "deadlock_action_eps", "deadlock_proposal_eps", "right_of_way"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if not (isinstance(self.gamma, int | float) and 0 < self.gamma <= 1):
            raise ValueError(f"gamma: must lie in (0, 1], got {self.gamma!r}")
        if self.arena_size is not None and not (isinstance(self.arena_size, int | float) and self.arena_size > 0):
            raise ValueError(f"arena_size: must be > 0 or None, got {self.arena_size!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: must be one of {SOLVERS}, got {self.solver!r}")
        for name in ("deadlock_steps", "deadlock_hold_steps", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class CouplerDecision:
    actions: np.ndarray  # (N, 2) float32, the only actions the env executes in a coupled graph
    intervened: np.ndarray  # (N,) bool, the action differs from the proposal (clipped to the box)
    fallback: np.ndarray  # (N,) bool, the agent's group was infeasible: priority-ordered stop
    yielding: np.ndarray  # (N,) bool, deadlock hold: the agent's proposal was turned to its right
    pairs: int  # close pairs this step
    solved: int  # agents whose proposal broke a row, so needed a QP
    infeasible: int  # groups that were infeasible (fallback)
    deadlocks: int  # deadlocks detected this step
    own_rows_broken: int  # agents whose own rows the fallback could not keep


class Coupler:
    """Joint safe actions for N agents of one arena; cumulative counts in `counts`."""

    def __init__(self, cfg: CouplerConfig, step_len: np.ndarray) -> None:
        s = np.asarray(step_len, dtype=np.float64)
        if s.ndim != 1 or len(s) < 1 or not (np.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"step_len: expected (N,) finite numbers > 0, got {step_len!r}")
        self.cfg, self.step_len, self.num_agents = cfg, s, len(s)
        self.cell = grid.reach(cfg.min_separation, s, cfg.gamma)
        self._qp: dict[int, BarrierQP] = {}  # by row count: own rows + a bucket of pair halves
        self._stuck = np.zeros(self.num_agents, dtype=np.int64)
        self._hold = np.zeros(self.num_agents, dtype=np.int64)
        self.counts = dict.fromkeys(("decisions", "interventions", "solved", "infeasible", "deadlocks",
                                     "own_rows_broken"), 0)  # fmt: skip

    def step(
        self,
        positions: np.ndarray,
        proposals: np.ndarray,
        rows_A: np.ndarray | None = None,
        rows_b: np.ndarray | None = None,
        priority: np.ndarray | None = None,
    ) -> CouplerDecision:
        """positions (N, 2), proposals (N, 2) (clipped to the box), own rows A (N, R, 2) a_i >= b (N, R) (the
        individual shields'; -inf rows are padding), priority (N,) smaller first (default: agent order)."""
        n, cfg = self.num_agents, self.cfg
        pos, ref, A, b, prio = self._checked(positions, proposals, rows_A, rows_b, priority)
        A, b = self._with_arena_rows(pos, A, b)
        pairs = grid.close_pairs(pos, self.step_len, float(cfg.min_separation), float(cfg.gamma), self.cell)
        label = grid.groups(n, pairs)
        coef, pair_b = self._pair_rows(pos, pairs)
        target = self._yielding_proposals(ref, label, prio)
        yielding = self._hold > 0
        share = self.step_len
        if priority is not None and cfg.right_of_way:  # any split of the budget keeps the joint row
            share = self.step_len * np.exp(-cfg.right_of_way * (prio - prio.min()))
        halves_A, halves_b = _halves(pairs, coef, pair_b, share, n)
        rows_A, rows_b = np.concatenate([A, halves_A], axis=1), np.concatenate([b, halves_b], axis=1)
        actions, feasible, needed = self._solve(rows_A, self._tightened(rows_b), target)
        ok = feasible & (_own_slack(rows_A, rows_b, actions) >= -VERIFY_TOLERANCE).all(axis=1)
        solved, fallback, infeasible, broken = int(needed.sum()), np.zeros(n, dtype=bool), 0, 0
        for members in _groups_of(np.flatnonzero(~ok), label):
            infeasible += 1
            in_group = np.isin(pairs[:, 0], members) if len(pairs) else np.zeros(0, dtype=bool)
            actions[members], group_broken = self._priority_stop(members, pairs[in_group], coef[in_group],
                                                                 pair_b[in_group], A, b, target, prio)  # fmt: skip
            broken += group_broken
            fallback[members] = True
        # the last word: any pair row still broken (numerics, or a state that was already too close) stops the
        # two agents; a stop breaks no pair row from a separated state
        if len(pairs):
            still = _pair_slack(coef, pair_b, pairs, actions) < -VERIFY_TOLERANCE
            if still.any():
                actions[np.unique(pairs[still])] = 0.0
        deadlocks = self._track_deadlock(actions, ref, label)
        intervened = (np.abs(actions - box(ref).astype(np.float32)) > 1e-6).any(axis=1)
        self._count(intervened, solved, infeasible, deadlocks, broken)
        return CouplerDecision(actions=actions, intervened=intervened, fallback=fallback, yielding=yielding,
                               pairs=len(pairs), solved=solved, infeasible=infeasible, deadlocks=deadlocks,
                               own_rows_broken=broken)  # fmt: skip

    # ------------------------------------------------------------------------------------------- rows

    def _checked(self, positions, proposals, rows_A, rows_b, priority):  # type: ignore[no-untyped-def]
        n = self.num_agents
        # copies: a decoded message's arrays are read-only, a type the compiled kernels would be built anew for
        pos = np.array(positions, dtype=np.float64)
        ref = np.array(proposals, dtype=np.float64)
        for name, value, shape in (("positions", pos, (n, 2)), ("proposals", ref, (n, 2))):
            if value.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {value.shape}")
            bad = ~np.isfinite(value).all(axis=1)
            if bad.any():
                raise ValueError(f"{name}: agent {int(np.flatnonzero(bad)[0])} is not finite")
        if (rows_A is None) != (rows_b is None):
            raise ValueError("rows_A/rows_b: give both or neither")
        A = np.zeros((n, 0, 2)) if rows_A is None else np.asarray(rows_A, dtype=np.float64)
        b = np.zeros((n, 0)) if rows_b is None else np.asarray(rows_b, dtype=np.float64)
        if A.ndim != 3 or A.shape[0] != n or A.shape[2] != 2 or b.shape != A.shape[:2]:
            raise ValueError(f"rows_A/rows_b: expected shapes ({n}, R, 2) and ({n}, R), got {A.shape}, {b.shape}")
        if not np.isfinite(A).all() or np.isnan(b).any() or (b == np.inf).any():
            raise ValueError("rows_A/rows_b: coefficients must be finite and bounds finite or -inf")
        prio = np.arange(n, dtype=np.float64) if priority is None else np.asarray(priority, dtype=np.float64)
        if prio.shape != (n,) or not np.isfinite(prio).all():
            raise ValueError(f"priority: expected ({n},) finite numbers, got {np.shape(priority)}")
        return pos, ref, A, b, prio

    def _with_arena_rows(self, pos: np.ndarray, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Own rows plus the walls: s a_j >= -p_j and -s a_j >= p_j - L, so the env's clip never moves anyone."""
        if self.cfg.arena_size is None:
            return A, b
        s = self.step_len[:, None]
        walls = np.zeros((self.num_agents, 4, 2))
        walls[:, 0, 0], walls[:, 1, 0], walls[:, 2, 1], walls[:, 3, 1] = s[:, 0], -s[:, 0], s[:, 0], -s[:, 0]
        L = self.cfg.arena_size
        wall_b = np.stack([-pos[:, 0], pos[:, 0] - L, -pos[:, 1], pos[:, 1] - L], axis=1)
        return np.concatenate([A, walls], axis=1), np.concatenate([b, wall_b], axis=1)

    def _pair_rows(self, pos: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pair (K, 4) coefficients (s_i n, -s_j n) and bound -gamma h (K,)."""
        i, j = pairs[:, 0], pairs[:, 1]
        delta = pos[i] - pos[j]
        dist = np.linalg.norm(delta, axis=1)
        normal = np.where(dist[:, None] > 0, delta / np.maximum(dist, 1e-300)[:, None], [1.0, 0.0])
        coef = np.concatenate([self.step_len[i, None] * normal, -self.step_len[j, None] * normal], axis=1)
        return coef, -self.cfg.gamma * (dist - self.cfg.min_separation)

    def _tightened(self, b: np.ndarray) -> np.ndarray:
        """b + tightening, as the solvers see it: their answers then keep the untightened rows exactly (a row
        that a = 0 only just keeps may so need a little motion; where none is possible, the fallback stops)."""
        return np.maximum(b + self.cfg.tightening, -FAR)

    # ------------------------------------------------------------------------------------- solving

    def _solve(self, A: np.ndarray, b: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per agent: min |a - target|^2 over its rows; (actions float32, feasible, solved) as BarrierQP gives."""
        if self.cfg.solver == "exact":
            return exact.project(np.ascontiguousarray(A), np.ascontiguousarray(b), np.ascontiguousarray(target),
                                 self.cfg.tightening / 2)
        result = self._solver(A.shape[1]).solve(A, b, target)
        return result.actions, result.feasible, result.solved

    def _solver(self, n_rows: int) -> BarrierQP:
        """One batched QP per row count; the pair halves are padded to a power of two, so counts recur."""
        qp = self._qp.get(n_rows)
        if qp is None:
            cfg = QPConfig(eps_abs=self.cfg.eps_abs, eps_rel=self.cfg.eps_rel, max_iter=self.cfg.max_iter,
                           verify_tolerance=self.cfg.tightening / 2)  # fmt: skip
            qp = self._qp[n_rows] = BarrierQP(n_rows, cfg, max_instances=4)  # shared slots lose only the warm start
        return qp

    def _priority_stop(self, members, pairs, coef, pair_b, A, b, target, prio):  # type: ignore[no-untyped-def]
        """The declared fallback (module docstring): agents fixed one by one in priority order."""
        fixed: dict[int, np.ndarray] = {}
        broken = 0
        for agent in sorted(members, key=lambda k: (prio[k], k)):
            rows_A, rows_b = [A[agent]], [b[agent]]
            for (i, j), c, lo in zip(pairs.tolist(), coef, pair_b, strict=True):
                if agent not in (i, j):
                    continue
                mine, other = (c[:2], c[2:]) if agent == i else (c[2:], c[:2])
                partner = j if agent == i else i
                # the partner's term moves to the bound once its action is fixed; unfixed partners count as stopped
                shift = float(other @ fixed[partner]) if partner in fixed else 0.0
                rows_A.append(mine[None])
                rows_b.append(np.array([lo - shift]))
            Ar, br = np.concatenate(rows_A), np.concatenate(rows_b)
            actions, feasible, _ = self._solve(Ar[None], self._tightened(br)[None], target[agent][None])
            action = actions[0] if feasible[0] else np.zeros(2, dtype=np.float32)
            if not (Ar @ action.astype(np.float64) - br >= -VERIFY_TOLERANCE).all():
                action = np.zeros(2, dtype=np.float32)
            if not (_own_slack(A[agent][None], b[agent][None], action[None]) >= -VERIFY_TOLERANCE).all():
                broken += 1
            fixed[agent] = action.astype(np.float64)
        return np.array([fixed[k] for k in members], dtype=np.float32), broken

    # ------------------------------------------------------------------------------------- deadlock

    def _yielding_proposals(self, ref: np.ndarray, label: np.ndarray, prio: np.ndarray) -> np.ndarray:
        """Agents in a deadlock hold, except the first in priority of each group, turn their proposal right."""
        target = ref.copy()
        holding = np.flatnonzero((self._hold > 0) & (label >= 0))
        for g in np.unique(label[holding]).tolist():
            first = min(np.flatnonzero(label == g).tolist(), key=lambda k: (prio[k], k))
            for k in holding[label[holding] == g].tolist():
                if k != first:
                    target[k] = [ref[k, 1], -ref[k, 0]]
        return target

    def _track_deadlock(self, actions: np.ndarray, ref: np.ndarray, label: np.ndarray) -> int:
        cfg = self.cfg
        self._hold = np.maximum(self._hold - 1, 0)
        stuck = (label >= 0) & (np.linalg.norm(actions, axis=1) < cfg.deadlock_action_eps) & \
            (np.linalg.norm(box(ref), axis=1) > cfg.deadlock_proposal_eps) & (self._hold == 0)  # fmt: skip
        self._stuck = np.where(stuck, self._stuck + 1, 0)
        new = self._stuck >= cfg.deadlock_steps
        self._hold[new] = cfg.deadlock_hold_steps
        self._stuck[new] = 0
        return int(new.sum())

    def _count(self, intervened: np.ndarray, solved: int, infeasible: int, deadlocks: int, broken: int) -> None:
        c = self.counts
        c["decisions"] += 1
        c["interventions"] += int(intervened.sum())
        c["solved"] += solved
        c["infeasible"] += infeasible
        c["deadlocks"] += deadlocks
        c["own_rows_broken"] += broken


def hazard_rows(pos: np.ndarray, centres: np.ndarray, radii: np.ndarray, step_len: np.ndarray,
                gamma: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each body's hazard rows s n_k.a >= -gamma h_k (the shield's tangent half-planes, docs/gridlife.md,
    "Barrier forms"): (N, K, 2) and (N, K), for own rows where no individual shield sends its own."""
    delta = pos[:, None, :] - np.asarray(centres).reshape(1, -1, 2)
    dist = np.linalg.norm(delta, axis=-1)
    normal = delta / np.maximum(dist, 1e-300)[..., None]
    return step_len[:, None, None] * normal, -gamma * (dist - np.asarray(radii))


def _own_slack(A: np.ndarray, b: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """A_i a_i - b_i per agent and row (N, R); -inf rows have slack inf."""
    return np.einsum("nrk,nk->nr", A, actions.astype(np.float64)) - b


def _pair_slack(coef: np.ndarray, pair_b: np.ndarray, pairs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    a = actions.astype(np.float64)
    return np.einsum("kc,kc->k", coef, np.concatenate([a[pairs[:, 0]], a[pairs[:, 1]]], axis=1)) - pair_b


def _groups_of(agents: np.ndarray, label: np.ndarray) -> list[list[int]]:
    """The groups (lists of agents) that hold these agents; an agent without close pairs is its own group."""
    out, seen = [], set()
    for k in agents.tolist():
        if label[k] < 0:
            out.append([k])
        elif label[k] not in seen:
            seen.add(int(label[k]))
            out.append(np.flatnonzero(label == label[k]).tolist())
    return out


def _halves(pairs: np.ndarray, coef: np.ndarray, pair_b: np.ndarray, share: np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each agent's halves of its pair rows, (N, D, 2) and (N, D), D a power of two >= the largest degree;
    padding rows are 0 >= -inf. Agent i's half of pair (i, j) is s_i n.a_i >= alpha_i * (-gamma h), alpha_i =
    share_i / (share_i + share_j) (share: the step lengths, weighted by the right of way)."""
    degree = np.bincount(pairs.reshape(-1), minlength=n) if len(pairs) else np.zeros(n, dtype=np.int64)
    width = 1 << max(2, int(degree.max()) - 1).bit_length()
    A = np.zeros((n, width, 2))
    b = np.full((n, width), -np.inf)
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        alpha = share[i] / (share[i] + share[j])
        agent = np.concatenate([i, j])
        order = np.argsort(agent, kind="stable")
        starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
        slot = np.empty(len(agent), dtype=np.int64)
        slot[order] = np.arange(len(agent)) - starts[agent[order]]
        A[agent, slot] = np.concatenate([coef[:, :2], coef[:, 2:]])
        b[agent, slot] = np.concatenate([alpha * pair_b, (1.0 - alpha) * pair_b])
    return A, b
