"""Safety filters: proposal in, verified safe action out (or a flag that none was found).

All filters take positions (B, 2), internal states (B, 3, already pessimistic) and proposals (B, 2)
and return a `FilterResult`. Margins are the smallest CBF slack h_i(x') - (1 - gamma_i) h_i(x) over the
barriers (for `qp`: the smallest row slack A a - b, a lower bound of it), at the proposal and at the
returned action; `constraint` is the barrier with the smallest slack at the returned action.

- `QPFilter`: the CBF-QP of qp.py on the affine rows of barriers.py.
- `SearchFilter`: candidate actions (the proposal, zero, shrunken proposals and a fixed random set),
  kept when the `Verifier` accepts them; the closest to the proposal wins.
- `EnsembleFilter`: search whose acceptance also needs the vote of K viability networks on the
  predicted next state (`veto_if_any_unsafe`: all say viable; `majority`: more than half do); it flags
  disagreement when the networks' margins on the current state spread more than `disagreement_std`.
- `AmortisedFilter`: a learned projection network (rows in, correction out). It is used only after
  `min_samples` training samples; its output must pass the `Verifier`, and every arena where it does not
  goes to the backup filter (search or QP), whose output is verified in turn. An action the verifier
  rejects is never returned with ok=True.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numba
import numpy as np

from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.internal_model import InternalModel
from nodes.shield.online_regressor import OnlineRegressor
from nodes.shield.qp import BarrierQP, QPConfig, box
from nodes.shield.state import state_matrix

VoteRule = Literal["veto_if_any_unsafe", "majority"]
VOTE_RULES: tuple[str, str] = ("veto_if_any_unsafe", "majority")


@dataclass
class FilterResult:
    actions: np.ndarray  # (B, 2) float32; zeros where not ok
    ok: np.ndarray  # (B,) a verified action was found
    constraint: np.ndarray  # (B,) index into barriers.names of the tightest barrier at the action
    margin_before: np.ndarray  # (B,) smallest slack at the proposal (< 0: the proposal is unsafe)
    margin_after: np.ndarray  # (B,) smallest slack at the returned action
    disagreement: np.ndarray  # (B,) the models disagree about the current state

    @classmethod
    def from_slack(cls, actions: np.ndarray, ok: np.ndarray, before: np.ndarray, after: np.ndarray) -> FilterResult:
        """From per-row slacks: before (B,) smallest at the proposal, after (B, R) at the action."""
        return cls(actions=actions, ok=ok, constraint=np.argmin(after, axis=1), margin_before=before,
                   margin_after=after.min(axis=1), disagreement=np.zeros(len(ok), dtype=bool))


class SafetyFilter(Protocol):
    name: str

    def filter(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> FilterResult: ...


# ------------------------------------------------------------------------------------------ verifier


class Verifier:
    """Accepts an action when the model's pessimistic next state keeps every CBF condition.

    Pessimistic: the model's next (E, T, I) moved by its error bound towards danger. The actions are
    checked as float32, the type the env executes.
    """

    def __init__(self, barriers: GridLifeBarriers, model: InternalModel, tolerance: float = 0.0) -> None:
        if not tolerance >= 0.0:
            raise ValueError(f"tolerance: must be >= 0, got {tolerance!r}")
        self.barriers = barriers
        self.model = model
        self.tolerance = tolerance

    def slack(self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """CBF slack (B, C, R) for candidate actions (B, C, 2) at states (B, 2), (B, 3)."""
        a = np.asarray(actions, dtype=np.float32).astype(np.float64)
        fused = getattr(self.model, "cbf_slack", None)
        if fused is not None:
            return fused(self.barriers, pos, internal, a)
        now = self.barriers.values(pos, internal)
        pos_next, h_next, err = self.model.predict(pos[:, None, :], internal[:, None, :], a)
        h_next = h_next + np.asarray(err) * np.array([-1.0, 1.0, -1.0])
        return self.barriers.values(pos_next, h_next) - (1.0 - self.barriers.gamma) * now[:, None, :]

    def check(self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ok (B, C), slack (B, C, R))."""
        slack = self.slack(pos, internal, actions)
        return np.all(slack >= -self.tolerance, axis=-1), slack


# ------------------------------------------------------------------------------------------------ qp


class QPFilter:
    name = "qp"

    def __init__(self, barriers: GridLifeBarriers, cfg: QPConfig | None = None) -> None:
        self.barriers = barriers
        self.qp = BarrierQP(barriers.n_rows, cfg)

    def filter(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> FilterResult:
        rows = self.barriers.constraints(pos, internal)
        res = self.qp.solve(rows.A, rows.b, proposals)
        # margins against the untightened rows, so a row met exactly reads as >= 0
        tight = self.barriers.cfg.row_tightening
        before = res.proposal_slack.min(axis=1) + tight
        return FilterResult.from_slack(res.actions, res.feasible, before, res.slack + tight)


# -------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchConfig:
    candidates: int = 256  # random candidates in the box, drawn once
    shrink: tuple[float, ...] = (0.75, 0.5, 0.25)  # scaled proposals tried as well
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.candidates, bool) or not isinstance(self.candidates, int) or self.candidates < 1:
            raise ValueError(f"candidates: must be an integer >= 1, got {self.candidates!r}")
        if any(not 0.0 < s < 1.0 for s in self.shrink):
            raise ValueError(f"shrink: every factor must lie in (0, 1), got {self.shrink}")


class CandidateSearch:
    """The shared search: proposals that verify pass unchanged; the others get the closest verified candidate."""

    def __init__(self, verifier: Verifier, cfg: SearchConfig | None = None) -> None:
        self.verifier = verifier
        self.cfg = SearchConfig() if cfg is None else cfg
        rng = np.random.default_rng(self.cfg.seed)
        self.fixed = rng.uniform(-1.0, 1.0, size=(self.cfg.candidates, 2)).astype(np.float32)

    def candidates(self, proposals: np.ndarray) -> np.ndarray:
        """(B, C, 2): proposal, zero, shrunken proposals, then the fixed random set."""
        n = proposals.shape[0]
        shrunk = [proposals[:, None, :] * s for s in (1.0, *self.cfg.shrink)]
        zero = np.zeros((n, 1, 2))
        fixed = np.broadcast_to(self.fixed, (n, *self.fixed.shape))
        return np.concatenate([shrunk[0], zero, *shrunk[1:], fixed], axis=1).astype(np.float32)


def _search(
    verifier: Verifier,
    search: CandidateSearch,
    pos: np.ndarray,
    internal: np.ndarray,
    proposals: np.ndarray,
    accept: Any = None,
) -> FilterResult:
    """Search with an optional extra acceptance test accept(pos, internal, actions (B, C, 2)) -> (B, C)."""
    prop = np.clip(proposals, -1.0, 1.0).astype(np.float32)
    ok, slack = verifier.check(pos, internal, prop[:, None, :])
    if accept is not None:
        ok = ok & accept(pos, internal, prop[:, None, :])
    ok = ok[:, 0]
    actions = prop.copy()
    before = slack[:, 0].min(axis=-1)
    after_slack = slack[:, 0].copy()
    found = ok.copy()
    todo = np.flatnonzero(~ok)
    if todo.size:
        cands = search.candidates(prop[todo])
        c_ok, c_slack = verifier.check(pos[todo], internal[todo], cands)
        if accept is not None:
            c_ok = c_ok & accept(pos[todo], internal[todo], cands)
        dist = np.where(c_ok, np.sum((cands - prop[todo, None, :]) ** 2, axis=-1), np.inf)
        best = np.argmin(dist, axis=1)
        rows = np.arange(todo.size)
        hit = np.isfinite(dist[rows, best])
        actions[todo] = np.where(hit[:, None], cands[rows, best], 0.0)
        after_slack[todo] = c_slack[rows, best]
        found[todo] = hit
    return FilterResult.from_slack(actions, found, before, after_slack)


class SearchFilter:
    name = "search"

    def __init__(self, verifier: Verifier, cfg: SearchConfig | None = None) -> None:
        self.verifier = verifier
        self.search = CandidateSearch(verifier, cfg)

    def filter(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> FilterResult:
        return _search(self.verifier, self.search, pos, internal, proposals)


# ------------------------------------------------------------------------------------------ ensemble


def vote(margins: np.ndarray, rule: VoteRule) -> np.ndarray:
    """Viable by vote over axis 0 of (K, ...) margins: all >= 0 (veto) or more than half >= 0 (majority)."""
    safe = np.asarray(margins) >= 0.0
    if rule == "veto_if_any_unsafe":
        return safe.all(axis=0)
    if rule == "majority":
        return 2 * safe.sum(axis=0) > safe.shape[0]
    raise ValueError(f"vote: rule must be one of {VOTE_RULES}, got {rule!r}")


@dataclass(frozen=True)
class EnsembleConfig:
    vote: VoteRule = "veto_if_any_unsafe"
    disagreement_std: float = 0.25  # std of the K margins on the current state above which the shield degrades

    def __post_init__(self) -> None:
        if self.vote not in VOTE_RULES:
            raise ValueError(f"vote: must be one of {VOTE_RULES}, got {self.vote!r}")
        if not self.disagreement_std > 0:
            raise ValueError(f"disagreement_std: must be > 0, got {self.disagreement_std!r}")


class EnsembleFilter:
    """Search accepted by the barrier verifier and by the vote of K viability networks."""

    name = "ensemble"

    def __init__(
        self,
        verifier: Verifier,
        models: Sequence[Any],
        cfg: EnsembleConfig | None = None,
        search_cfg: SearchConfig | None = None,
    ) -> None:
        if len(models) < 1:
            raise ValueError("viability_models: the ensemble filter needs at least one viability network")
        self.verifier = verifier
        self.models = list(models)
        self.cfg = EnsembleConfig() if cfg is None else cfg
        self.search = CandidateSearch(verifier, search_cfg)
        for i, m in enumerate(self.models):
            state_matrix(np.zeros((1, 2)), np.zeros((1, 3)), m.state_names)  # names checked up front
            if not hasattr(m, "margin"):
                raise ValueError(f"viability_models[{i}]: expected a ViabilityNet with a margin() method")

    def margins(self, pos: np.ndarray, internal: np.ndarray) -> np.ndarray:
        """(K, ...) margins of every network for states (..., 2), (..., 3)."""
        return np.stack([m.margin(state_matrix(pos, internal, m.state_names)) for m in self.models])

    def _accept(self, pos: np.ndarray, internal: np.ndarray, actions: np.ndarray) -> np.ndarray:
        p2, h2, err = self.verifier.model.predict(pos[:, None, :], internal[:, None, :], actions)
        h2 = np.clip(h2 + np.asarray(err) * np.array([-1.0, 1.0, -1.0]), -1.0, 2.0)
        return vote(self.margins(p2, h2), self.cfg.vote)

    def filter(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> FilterResult:
        out = _search(self.verifier, self.search, pos, internal, proposals, accept=self._accept)
        now = self.margins(pos, internal)
        out.disagreement = now.std(axis=0) > self.cfg.disagreement_std
        return out


# ----------------------------------------------------------------------------------------- amortised


@dataclass(frozen=True)
class AmortisedConfig:
    min_samples: int = 5_000  # training samples seen before the network is used
    hidden: int = 64
    lr: float = 1e-3
    batch_size: int = 256
    buffer_size: int = 100_000
    label_margin: float = 2e-3  # labels: the QP with every row moved this far (action units) to its safe side
    active_rows: int = 3  # rows binding most at the network's guess from which `polish` builds the exact answer
    backup: Literal["qp", "search"] = "qp"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_samples", "hidden", "batch_size", "buffer_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.active_rows, bool) or not isinstance(self.active_rows, int) or self.active_rows < 1:
            raise ValueError(f"active_rows: must be an integer >= 1, got {self.active_rows!r}")
        if self.backup not in ("qp", "search"):
            raise ValueError(f"backup: must be 'qp' or 'search', got {self.backup!r}")
        if not (self.lr > 0 and self.label_margin >= 0):
            raise ValueError(f"lr/label_margin: must be > 0 and >= 0, got {self.lr!r}, {self.label_margin!r}")


class AmortisedFilter:
    """Learned projection verified by the model; the backup filter takes every arena it cannot serve."""

    name = "amortised"

    def __init__(
        self,
        barriers: GridLifeBarriers,
        verifier: Verifier,
        backup: SafetyFilter,
        cfg: AmortisedConfig | None = None,
    ) -> None:
        self.barriers = barriers
        self.verifier = verifier
        self.backup = backup
        self.cfg = cfg = AmortisedConfig() if cfg is None else cfg
        self.teacher = BarrierQP(barriers.n_rows, max_instances=1)  # labelling runs over many states
        self.regressor = OnlineRegressor(4 * barriers.n_rows + 2, 2, hidden=cfg.hidden, lr=cfg.lr,
                                         batch_size=cfg.batch_size, buffer_size=cfg.buffer_size, seed=cfg.seed)
        self.stats = {"net_used": 0, "net_verified": 0, "backup_used": 0}

    @property
    def enabled(self) -> bool:
        return self.regressor.trained_on >= self.cfg.min_samples

    def features(self, A: np.ndarray, b: np.ndarray, proposals: np.ndarray) -> np.ndarray:
        """Rows normalised to unit normals: (normal, offset, violation at the proposal) per row, then the proposal."""
        return features_batch(np.ascontiguousarray(A, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64),
                               np.ascontiguousarray(proposals, dtype=np.float64))  # fmt: skip

    def add_samples(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> int:
        """Label (state, proposal) pairs with the margin-tightened teacher QP; returns how many were stored."""
        rows = self.barriers.constraints(pos, internal)
        prop = np.clip(np.asarray(proposals, dtype=np.float64), -1.0, 1.0)
        res = self.teacher.solve(rows.A, rows.b + self.cfg.label_margin * np.linalg.norm(rows.A, axis=-1), prop)
        keep = res.feasible
        return self.regressor.add(self.features(rows.A[keep], rows.b[keep], prop[keep]), res.actions[keep] - prop[keep])

    def train(self, steps: int) -> float:
        return self.regressor.train(steps)

    def project(self, A: np.ndarray, b: np.ndarray, proposals: np.ndarray) -> np.ndarray:
        """The safe action for rows and proposals (B, 2), float32, in the box: the network's guess, made exact
        where the rows that bind at the guess are the QP's active set (see `polish`)."""
        delta = self.regressor.predict(self.features(A, b, proposals))
        return self.polish(A, b, proposals, box(proposals + delta))

    def polish(self, A: np.ndarray, b: np.ndarray, proposals: np.ndarray, guess: np.ndarray) -> np.ndarray:
        """In two variables the QP's solution is the proposal, its projection onto one row, or the vertex of
        two rows. The `active_rows` rows (box edges included) that bind most at the network's guess give the
        candidates; the feasible one closest to the proposal wins. So the network only has to point at the
        active set, and where it does the result is the QP's optimum; elsewhere the guess stands and the
        verifier decides."""
        return polish_batch(
            np.ascontiguousarray(A, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64),
            np.ascontiguousarray(proposals, dtype=np.float64),
            np.ascontiguousarray(guess, dtype=np.float32),
            self.cfg.active_rows,
            self.barriers.cfg.row_tightening,
        )

    def filter(self, pos: np.ndarray, internal: np.ndarray, proposals: np.ndarray) -> FilterResult:
        prop = np.clip(np.asarray(proposals, dtype=np.float64), -1.0, 1.0).astype(np.float32)
        if not self.enabled:
            return self._verified(self.backup.filter(pos, internal, prop), pos, internal)
        ok, slack = self.verifier.check(pos, internal, prop[:, None, :])
        ok, slack = ok[:, 0], slack[:, 0]
        actions = prop.copy()
        before = slack.min(axis=-1)
        after = slack.copy()
        todo = np.flatnonzero(~ok)
        if todo.size:
            rows = self.barriers.constraints(pos[todo], internal[todo])
            guess = self.project(rows.A, rows.b, prop[todo].astype(np.float64))
            g_ok, g_slack = self.verifier.check(pos[todo], internal[todo], guess[:, None, :])
            g_ok = g_ok[:, 0]
            self.stats["net_used"] += todo.size
            self.stats["net_verified"] += int(g_ok.sum())
            actions[todo] = guess
            after[todo] = g_slack[:, 0]
            ok[todo] = g_ok
        result = FilterResult.from_slack(actions, ok, before, after)
        rest = np.flatnonzero(~ok)
        if rest.size:  # the backup serves whatever the network could not
            self.stats["backup_used"] += rest.size
            sub = self._verified(self.backup.filter(pos[rest], internal[rest], prop[rest]), pos[rest], internal[rest])
            for field in ("actions", "ok", "constraint", "margin_after"):
                getattr(result, field)[rest] = getattr(sub, field)
        result.actions[~result.ok] = 0.0
        return result

    def _verified(self, res: FilterResult, pos: np.ndarray, internal: np.ndarray) -> FilterResult:
        """The backup's output must pass the same verifier; where it does not, ok becomes False."""
        ok, slack = self.verifier.check(pos, internal, res.actions[:, None, :])
        res.ok = res.ok & ok[:, 0]
        res.margin_after = slack[:, 0].min(axis=-1)
        res.constraint = np.argmin(slack[:, 0], axis=-1)
        res.actions = np.where(res.ok[:, None], res.actions, 0.0).astype(np.float32)
        return res


@numba.njit(cache=True)
def polish_batch(A, b, proposals, guess, k, tol):  # type: ignore[no-untyped-def]
    """AmortisedFilter.polish per arena: rows A a >= b plus the box edges; candidates from the k rows with
    the smallest normalised slack at the guess; returns float32 actions (the guess where none is feasible)."""
    n, r = b.shape
    m = r + 4
    out = guess.copy()
    nx = np.empty(m)
    ny = np.empty(m)
    c = np.empty(m)
    order = np.empty(m)
    cand_x = np.empty(1 + k + k * (k - 1) // 2)
    cand_y = np.empty(1 + k + k * (k - 1) // 2)
    for arena in range(n):
        nx[:r], ny[:r], c[:r] = A[arena, :, 0], A[arena, :, 1], b[arena]
        nx[r:] = (1.0, -1.0, 0.0, 0.0)
        ny[r:] = (0.0, 0.0, 1.0, -1.0)
        c[r:] = -1.0
        gx, gy = np.float64(guess[arena, 0]), np.float64(guess[arena, 1])
        for q in range(m):
            order[q] = (nx[q] * gx + ny[q] * gy - c[q]) / max(math.sqrt(nx[q] * nx[q] + ny[q] * ny[q]), 1e-12)
        binding = np.argsort(order)[:k]
        px, py = proposals[arena, 0], proposals[arena, 1]
        cand_x[0], cand_y[0] = px, py
        count = 1
        for i in binding:
            gap = c[i] - (nx[i] * px + ny[i] * py)
            t = max(gap, 0.0) / max(nx[i] * nx[i] + ny[i] * ny[i], 1e-12)
            cand_x[count], cand_y[count] = px + t * nx[i], py + t * ny[i]
            count += 1
        for u in range(len(binding)):
            for v in range(u + 1, len(binding)):
                i, j = binding[u], binding[v]
                det = nx[i] * ny[j] - ny[i] * nx[j]
                if abs(det) <= 1e-12:
                    continue  # parallel rows have no vertex
                cand_x[count] = (c[i] * ny[j] - ny[i] * c[j]) / det
                cand_y[count] = (nx[i] * c[j] - c[i] * nx[j]) / det
                count += 1
        best = np.inf
        for q in range(count):
            ax, ay = np.float32(cand_x[q]), np.float32(cand_y[q])  # checked as the env executes them
            fx, fy = np.float64(ax), np.float64(ay)
            feasible = True
            for row in range(m):
                if not nx[row] * fx + ny[row] * fy - c[row] >= -tol:  # a NaN never counts as feasible
                    feasible = False
                    break
            dist = (fx - px) ** 2 + (fy - py) ** 2
            if feasible and dist < best:
                best = dist
                out[arena, 0], out[arena, 1] = ax, ay
    return out


@numba.njit(cache=True)
def features_batch(A, b, proposals):  # type: ignore[no-untyped-def]
    """AmortisedFilter.features: per row the unit normal, the offset and the violation at the proposal
    (both in distance units, clipped to [-5, 5]), then the proposal; float32 (B, 4R + 2)."""
    n, r = b.shape
    out = np.empty((n, 4 * r + 2), dtype=np.float32)
    for arena in range(n):
        px, py = proposals[arena, 0], proposals[arena, 1]
        for row in range(r):
            norm = max(math.sqrt(A[arena, row, 0] ** 2 + A[arena, row, 1] ** 2), 1e-9)
            ux, uy = A[arena, row, 0] / norm, A[arena, row, 1] / norm
            offset = b[arena, row] / norm
            out[arena, 2 * row], out[arena, 2 * row + 1] = ux, uy
            out[arena, 2 * r + row] = min(max(offset, -5.0), 5.0)
            out[arena, 3 * r + row] = min(max(ux * px + uy * py - offset, -5.0), 5.0)
        out[arena, 4 * r], out[arena, 4 * r + 1] = px, py
    return out
