"""ShieldCore: one decision per step for a batch of arenas, with degraded mode and explanations.

    core = ShieldCore(env_cfg, ShieldConfig(filter="qp"))
    decision = core.step(step, positions, internal, proposed, input_age_s, uncertainty=None)
    env.step(decision.actions)            # (B, 2) float32, the only actions the env may execute
    for report in decision.reports: ...   # plain dicts, one per intervention (mode != "pass")

Order of checks per arena, the first that applies decides:
1. ``bad_input``: non-finite position, internal state or uncertainty, or a state no arena can be in (a position
   more than an arena width outside the arena, an internal variable outside [-1, 2]) -> fallback (a non-finite
   proposal is treated as a zero proposal and filtered);
2. ``stale``: `input_age_s` past `input_deadline_s` -> fallback for every arena;
3. ``ood``: the OOD detector (if given) flags the state -> fallback;
4. ``deadlock``: the arena is in its post-deadlock hold -> fallback;
5. the filter: no verified action -> ``infeasible``; ensemble disagreement -> ``disagreement``.
Last, the gatekeeper (backup.py) checks whatever was chosen, the filter's action or the fallback's: it is
executed only if, after it, the backup policy provably (exact rollout) reaches its terminal set without a
violation; otherwise the backup action is executed (constraint ``backup``, counted in
``gatekeeper.backup``). By induction this makes executed violations impossible from certified states.
Deadlock detection: the safe action has norm below `deadlock_action_eps` while the proposal's is above
`deadlock_proposal_eps` for `deadlock_steps` consecutive steps; the arena then runs the fallback for
`deadlock_hold_steps` steps (this one included). Degraded arena-steps are counted per cause in
`counts`; the shield never passes an unfiltered proposal in degraded mode.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from nodes.env.gridlife import GridLifeConfig, GridLifeLayout, build_layout, read_only
from nodes.shield.backup import BackupConfig, Gatekeeper
from nodes.shield.barriers import BarrierConfig, GridLifeBarriers
from nodes.shield.fallback import FALLBACK_POLICIES, Fallback, FallbackPolicy, fallback_margins
from nodes.shield.fast_path import FastDecision, FastPath
from nodes.shield.filters import (
    AmortisedConfig,
    AmortisedFilter,
    EnsembleConfig,
    EnsembleFilter,
    FilterResult,
    QPFilter,
    SafetyFilter,
    SearchConfig,
    SearchFilter,
    Verifier,
    features_batch,
    polish_batch,
)
from nodes.shield.internal_model import InternalModel, KnownInternalModel
from nodes.shield.ood import EnergyOOD
from nodes.shield.qp import BarrierQP, QPConfig, box
from nodes.shield.state import state_matrix
from protocols import MODE_FALLBACK, MODE_FILTERED, MODE_NAMES, MODE_PASS

FilterName = Literal["qp", "search", "amortised", "ensemble"]
FILTERS: tuple[str, ...] = ("qp", "search", "amortised", "ensemble")
CAUSES: tuple[str, ...] = ("bad_input", "stale", "ood", "deadlock", "infeasible", "disagreement")
NO_CAUSE = -1  # in a cause column: the arena is not degraded


@dataclass(frozen=True)
class ShieldConfig:
    filter: FilterName = "qp"
    fallback: FallbackPolicy = "seek_station"
    fallback_speed: float = 0.8  # |a| of the seek_station heading (slow costs more energy per metre)
    # how long a step's inputs may wait for their decision (the node: from the observation's arrival); past
    # it the step is stale and every arena gets the fallback. The shield node's parameter defaults to this.
    input_deadline_s: float = 1.0
    deadlock_steps: int = 20
    deadlock_hold_steps: int = 10
    deadlock_action_eps: float = 0.02
    deadlock_proposal_eps: float = 0.2
    pass_tolerance: float = 1e-6  # max |safe - proposed| still reported as a pass
    fast_path: bool = True  # (QP filter, gatekeeper on) steps without degraded arenas in compiled calls (fast_path.py)
    barrier: BarrierConfig = field(default_factory=BarrierConfig)
    qp: QPConfig = field(default_factory=QPConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    amortised: AmortisedConfig = field(default_factory=AmortisedConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise ValueError(f"filter: must be one of {FILTERS}, got {self.filter!r}")
        if self.fallback not in FALLBACK_POLICIES:
            raise ValueError(f"fallback: must be one of {FALLBACK_POLICIES}, got {self.fallback!r}")
        for name in ("deadlock_steps", "deadlock_hold_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in ("input_deadline_s", "deadlock_action_eps", "deadlock_proposal_eps", "pass_tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
        if self.deadlock_action_eps >= self.deadlock_proposal_eps:
            raise ValueError("deadlock_action_eps: must be smaller than deadlock_proposal_eps")


@dataclass
class ShieldDecision:
    """The step's output. `reports` holds one plain dict per arena whose mode is not 'pass'."""

    actions: np.ndarray  # (B, 2) float32
    mode: np.ndarray  # (B,) int: MODE_PASS, MODE_FILTERED or MODE_FALLBACK (names in MODE_NAMES, protocols)
    cause: list[str | None]  # degraded-mode cause per arena
    constraint: list[str | None]  # tightest barrier at the safe action
    margin_before: np.ndarray  # (B,) smallest slack at the proposal, barrier units (nan if not evaluated)
    margin_after: np.ndarray  # (B,) smallest slack at the safe action
    proposed: np.ndarray  # (B, 2) the proposals as answered: clipped to the box, non-finite values as 0
    step: int = -1  # the step decided (it goes into the reports)

    @cached_property
    def reports(self) -> list[dict[str, Any]]:
        """Built on first use, so that a node can send the actions before it explains them."""
        return intervention_reports(self, self.step, np.flatnonzero(self.mode != MODE_PASS), self.proposed)


def intervention_reports(
    decision: ShieldDecision, step: int, arenas: np.ndarray, proposed: np.ndarray
) -> list[dict[str, Any]]:
    """The JSON-ready explanations of these arenas' decisions (numbers converted in bulk: it runs every step)."""

    if arenas.size == 0:
        return []

    def num(x: float) -> float | None:
        return x if math.isfinite(x) else None

    columns = zip(
        arenas.tolist(),
        decision.mode[arenas].tolist(),
        decision.margin_before[arenas].tolist(),
        decision.margin_after[arenas].tolist(),
        proposed[arenas].tolist(),
        decision.actions[arenas].tolist(),
        strict=True,
    )
    return [
        {
            "step": int(step),
            "arena": arena,
            "mode": MODE_NAMES[mode],
            "cause": decision.cause[arena],
            "constraint": decision.constraint[arena],
            "margin_before": num(before),
            "margin_after": num(after),
            "proposed": [num(v) for v in prop],
            "safe": safe,
        }
        for arena, mode, before, after, prop, safe in columns
    ]


@dataclass(slots=True)
class _Screen:
    """A step's arenas as the general path sees them before the filter runs."""

    pos: np.ndarray  # (B, 2) positions the filter and the fallback work on (a bad arena's zeroed)
    h: np.ndarray  # (B, 3) internal states, pessimistic under uncertainty (a bad arena's zeroed)
    bad: np.ndarray  # (B,) bool: cause bad_input
    cause: np.ndarray  # (B,) int64 index into CAUSES, NO_CAUSE where none (yet)
    screened: bool  # some arena has a cause before the filter (or the batch is empty): the filter sees a subset

    def assign(self, name: str, found: np.ndarray) -> None:
        """Cause `name` for the arenas in mask `found` that have none yet (the first match wins)."""
        if found.any():
            self.cause[(self.cause == NO_CAUSE) & found] = CAUSES.index(name)
            self.screened = True


@dataclass(slots=True)
class _Draft:
    """The step's actions and their explanation columns, filled in by the stages of the general path."""

    actions: np.ndarray  # (B, 2) float32
    before: np.ndarray  # (B,) margin at the proposal
    after: np.ndarray  # (B,) margin at the action
    constraint: np.ndarray  # (B,) int64 index into the barrier names, -1 none


class ShieldCore:
    """Filters proposed actions for a batch of GridLife arenas; see the module docstring."""

    def __init__(
        self,
        env_cfg: GridLifeConfig,
        cfg: ShieldConfig | None = None,
        *,
        internal_model: InternalModel | None = None,
        viability_models: Sequence[Any] = (),
        ood: EnergyOOD | None = None,
        layout: GridLifeLayout | None = None,
    ) -> None:
        self.env_cfg = env_cfg
        self.cfg = ShieldConfig() if cfg is None else cfg
        self.layout = build_layout(env_cfg) if layout is None else layout
        self.barriers = GridLifeBarriers(env_cfg, self.cfg.barrier, self.layout)
        self.model = KnownInternalModel(env_cfg, self.layout) if internal_model is None else internal_model
        self.verifier = Verifier(self.barriers, self.model)
        if ood is not None and not ood.fitted:
            raise ValueError("ood: the OOD detector must be fitted (or loaded) before use")
        self.ood = ood
        self.filter = self._make_filter(viability_models)
        self.fallback = Fallback(
            self.barriers, BarrierQP(self.barriers.n_rows, self.cfg.qp), self.cfg.fallback, self.cfg.fallback_speed
        )
        self.gatekeeper = Gatekeeper(env_cfg, self.cfg.backup, self.layout) if self.cfg.backup.enabled else None
        size = env_cfg.arena_size
        self.plausible = (np.array([-size, -size, -1.0, -1.0, -1.0]), np.array([2 * size, 2 * size, 2.0, 2.0, 2.0]))
        self.fast_path = None
        if self.cfg.fast_path and isinstance(self.filter, QPFilter) and self.gatekeeper is not None:
            cfg = self.cfg
            self.fast_path = FastPath(self.barriers, self.gatekeeper, self.filter.qp, self.fallback, cfg.pass_tolerance,
                                      cfg.deadlock_action_eps, cfg.deadlock_proposal_eps, cfg.deadlock_steps,
                                      self.plausible)
        self.counts: dict[str, int] = {f"degraded.{c}": 0 for c in CAUSES}
        self.counts.update({f"mode.{m}": 0 for m in MODE_NAMES}, deadlocks_detected=0, decisions=0)
        self.counts.update({"gatekeeper.backup": 0, "gatekeeper.uncertified": 0})
        self._stuck = np.zeros(0, dtype=np.int64)  # consecutive stopped-while-pushing steps per arena
        self._hold = np.zeros(0, dtype=np.int64)  # remaining fallback steps after a deadlock
        compile_kernels(env_cfg)

    def _make_filter(self, viability_models: Sequence[Any]) -> SafetyFilter:
        cfg = self.cfg
        if cfg.filter == "qp":
            return QPFilter(self.barriers, cfg.qp)
        if cfg.filter == "search":
            return SearchFilter(self.verifier, cfg.search)
        if cfg.filter == "ensemble":
            return EnsembleFilter(self.verifier, viability_models, cfg.ensemble, cfg.search)
        backup: SafetyFilter = (
            QPFilter(self.barriers, cfg.qp) if cfg.amortised.backup == "qp" else SearchFilter(self.verifier, cfg.search)
        )
        return AmortisedFilter(self.barriers, self.verifier, backup, cfg.amortised)

    def step(
        self,
        step: int,
        positions: np.ndarray,
        internal: np.ndarray,
        proposed: np.ndarray,
        input_age_s: float,
        uncertainty: np.ndarray | None = None,
    ) -> ShieldDecision:
        """Decide the safe actions for one step.

        positions (B, 2) metres; internal (B, 3) = (E, T, I), true or estimated; proposed (B, 2) agent
        actions; input_age_s: age of the oldest input; uncertainty (B, 3): std of the estimate, or None.
        """
        pos, h, prop, std = _checked(positions, internal, proposed, uncertainty)
        self._fit_streaks(pos.shape[0])
        fresh = isinstance(input_age_s, int | float) and input_age_s <= self.cfg.input_deadline_s
        if self.fast_path is not None and std is None and fresh and self.ood is None and not self._hold.any():
            fast = self.fast_path.decide(pos, h, prop, self._stuck)
            if fast is not None:
                return self._fast_decision(step, prop, fast)
        screen = self._screen(pos, h, std, fresh)
        draft = self._filter_active(screen, prop)
        self._count_down_holds()
        degraded = self._apply_fallback(screen, draft)
        backup = self._gatekeep_draft(screen, draft)
        return self._decision(step, prop, screen, draft, degraded, backup)

    # --- the general path's stages, in order ----------------------------------------------------------------

    def _fit_streaks(self, n: int) -> None:
        """Deadlock streaks and holds per arena: a new batch size starts them afresh."""
        if self._stuck.shape[0] != n:
            self._stuck = np.zeros(n, dtype=np.int64)
            self._hold = np.zeros(n, dtype=np.int64)

    def _screen(self, pos: np.ndarray, h: np.ndarray, std: np.ndarray | None, fresh: bool) -> _Screen:
        """The causes found before the filter runs (bad_input, stale, ood, deadlock hold, first match wins), and
        the states the filter and the fallback work on: bad arenas zeroed, internal states made pessimistic."""
        n = pos.shape[0]
        cause = np.full(n, NO_CAUSE, dtype=np.int64)
        low, high = self.plausible  # (NaN fails these comparisons too)
        usable = ((pos >= low[:2]) & (pos <= high[:2])).all(1) & ((h >= low[2:]) & (h <= high[2:])).all(1)
        if std is not None:
            usable &= np.isfinite(std).all(1)
        bad = ~usable
        screened = n == 0 or not usable.all()  # some arena already has a cause before the filter runs
        if screened:
            cause[bad] = CAUSES.index("bad_input")
            pos = np.where(bad[:, None], 0.0, pos)
            h = np.where(bad[:, None], 0.0, h)
            std = None if std is None else np.where(bad[:, None], 0.0, std)
        h = self.barriers.pessimistic(h, std)
        screen = _Screen(pos=pos, h=h, bad=bad, cause=cause, screened=screened)
        if not fresh:
            screen.assign("stale", np.ones(n, dtype=bool))  # also catches a nan age
        if self.ood is not None:
            screen.assign("ood", self.ood.is_ood(state_matrix(pos, h)))
        screen.assign("deadlock", self._hold > 0)
        return screen

    def _filter_active(self, screen: _Screen, prop: np.ndarray) -> _Draft:
        """The filter's actions and margins for the arenas without a cause so far; those it cannot serve get cause
        infeasible or disagreement, and the deadlock streaks move on."""
        n = prop.shape[0]
        cause = screen.cause
        if screen.screened:
            active = np.flatnonzero(cause == NO_CAUSE)
            draft = _Draft(actions=np.zeros((n, 2), dtype=np.float32), before=np.full(n, np.nan),
                           after=np.full(n, np.nan), constraint=np.full(n, -1, dtype=np.int64))
            if active.size == 0:
                return draft
            pushed = prop[active]
            res = self.filter.filter(screen.pos[active], screen.h[active], pushed)
            draft.actions[active] = res.actions
            draft.before[active], draft.after[active] = res.margin_before, res.margin_after
            draft.constraint[active] = res.constraint
        else:  # every arena filtered: the result's arrays are fresh, take them as they are
            active, pushed = np.arange(n), prop
            res = self.filter.filter(screen.pos, screen.h, prop)
            draft = _Draft(actions=res.actions, before=res.margin_before, after=res.margin_after,
                           constraint=res.constraint)
        if not res.ok.all():
            cause[active[~res.ok]] = CAUSES.index("infeasible")
        if res.disagreement.any():
            cause[active[res.disagreement]] = CAUSES.index("disagreement")  # the more specific cause
        self._track_deadlock(active, res, pushed, cause)
        return draft

    def _count_down_holds(self) -> None:
        if self._hold.any():
            self._hold = np.maximum(self._hold - 1, 0)

    def _apply_fallback(self, screen: _Screen, draft: _Draft) -> np.ndarray:
        """Every arena with a cause gets the declared fallback's action, counted per cause; returns those arenas."""
        cause = screen.cause
        degraded = np.flatnonzero(cause != NO_CAUSE)
        if degraded.size == 0:
            return degraded
        # the QP filter's infeasible rows stay infeasible for the fallback's heading: skip that solve
        infeasible = (cause[degraded] == CAUSES.index("infeasible")) if self.cfg.filter == "qp" else None
        actions, slack = self.fallback.act(screen.pos[degraded], screen.h[degraded], degraded, infeasible)
        draft.actions[degraded] = actions
        draft.after[degraded], draft.constraint[degraded] = fallback_margins(slack)
        for c in cause[degraded].tolist():
            self.counts[f"degraded.{CAUSES[c]}"] += 1
        return degraded

    def _gatekeep_draft(self, screen: _Screen, draft: _Draft) -> np.ndarray:
        """The gatekeeper's check of every chosen action (the backup where it fails, its margin then unknown);
        a bad state stands still. Returns the mask of arenas on the backup."""
        backup = np.zeros(len(draft.actions), dtype=bool)
        if self.gatekeeper is not None:
            backup = self._gatekeep(screen.pos, screen.h, draft.actions, screen.bad)
            draft.after[backup] = np.nan
        # a bad state has no meaningful fallback heading: stand still
        draft.actions[screen.bad] = 0.0
        return backup

    def _decision(self, step: int, prop: np.ndarray, screen: _Screen, draft: _Draft, degraded: np.ndarray,
                  backup: np.ndarray) -> ShieldDecision:
        """The modes (fallback where degraded, else filtered where the action is not the proposal), counted, and
        the decision with its names."""
        actions = draft.actions
        mode = np.where(np.abs(actions - prop).max(axis=1) > self.cfg.pass_tolerance, MODE_FILTERED, MODE_PASS)
        mode[degraded] = MODE_FALLBACK
        for m, count in enumerate(np.bincount(mode, minlength=len(MODE_NAMES)).tolist()):
            self.counts[f"mode.{MODE_NAMES[m]}"] += count
        self.counts["decisions"] += len(actions)
        names = self.barriers.names
        return ShieldDecision(
            actions=actions,
            mode=mode,
            cause=[CAUSES[c] if c != NO_CAUSE else None for c in screen.cause],
            constraint=[
                "backup" if k else names[c] if c >= 0 else None
                for c, k in zip(draft.constraint, backup, strict=True)
            ],
            margin_before=draft.before,
            margin_after=draft.after,
            proposed=prop,
            step=step,
        )

    def _fast_decision(self, step: int, prop: np.ndarray, fast: FastDecision) -> ShieldDecision:
        """The fast path's decision, with the books the general path keeps."""
        n = len(fast.actions)
        self._stuck[:] = fast.stuck
        filtered, fallbacks, backups, uncertified = fast.books.tolist()
        if backups:
            self.counts["gatekeeper.backup"] += backups
            self.counts["gatekeeper.uncertified"] += uncertified
        self.counts["mode.filtered"] += filtered
        self.counts["mode.fallback"] += fallbacks
        self.counts["mode.pass"] += n - filtered - fallbacks
        self.counts["decisions"] += n
        cause: list[str | None] = [None] * n
        for arena in fast.infeasible.tolist():
            cause[arena] = "infeasible"
            self.counts["degraded.infeasible"] += 1
        names = self.barriers.names
        constraint = [names[c] for c in fast.constraint.tolist()]
        if backups:
            for arena in np.flatnonzero(fast.backup).tolist():
                constraint[arena] = "backup"
        return ShieldDecision(actions=fast.actions, mode=fast.mode, cause=cause, constraint=constraint,
                              margin_before=fast.margin_before, margin_after=fast.margin_after, proposed=prop,
                              step=step)

    def _track_deadlock(self, active: np.ndarray, res: FilterResult, pushed: np.ndarray, cause: np.ndarray) -> None:
        """Count steps stopped at a boundary while the agent keeps pushing; after `deadlock_steps` of them
        the arena gets cause `deadlock` and a hold."""
        stopped = np.square(res.actions).sum(axis=1) < self.cfg.deadlock_action_eps**2
        if not stopped.any():  # the common case
            self._stuck[active] = 0
            return
        stopped &= np.square(pushed).sum(axis=1) > self.cfg.deadlock_proposal_eps**2
        stuck = np.where(stopped & res.ok & ~res.disagreement, self._stuck[active] + 1, 0)
        self._stuck[active] = stuck
        hit = active[stuck >= self.cfg.deadlock_steps]
        if hit.size:
            self.counts["deadlocks_detected"] += hit.size
            self._stuck[hit] = 0
            self._hold[hit] = self.cfg.deadlock_hold_steps
            cause[hit] = CAUSES.index("deadlock")

    def _gatekeep(self, pos: np.ndarray, h: np.ndarray, actions: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """Replace, in place, every action after which the backup cannot provably recover by the backup
        action; returns the mask of replaced arenas."""
        assert self.gatekeeper is not None
        live = np.flatnonzero(~bad)
        backup = np.zeros(len(actions), dtype=bool)
        if live.size == 0:
            return backup
        ok, _ = self.gatekeeper.certify(pos[live], h[live], actions[live])
        rejected = live[~ok]
        if rejected.size:
            fallback = self.gatekeeper.actions(pos[rejected], h[rejected])
            actions[rejected] = fallback
            backup[rejected] = True
            self.counts["gatekeeper.backup"] += rejected.size
            # by induction only a first state (episode start, estimate jump) can be uncertified
            safe, _ = self.gatekeeper.certify(pos[rejected], h[rejected], fallback)
            self.counts["gatekeeper.uncertified"] += int((~safe).sum())
        return backup

    def fallback_reason_counts(self) -> dict[str, int]:
        """Degraded arena-steps per cause (for telemetry and `node list`)."""
        return {c: self.counts[f"degraded.{c}"] for c in CAUSES}


_compiled = False  # compile_kernels ran in this process


def compile_kernels(env_cfg: GridLifeConfig) -> None:
    """Compile (or load from numba's cache) every kernel a decision can reach, once per process, so no
    decision pays for it: otherwise the first infeasible state, say, would stall the loop while the
    fallback's kernels compile. Runs throwaway shields over states that take every path."""
    global _compiled
    if _compiled:
        return
    _compiled = True
    rng = np.random.default_rng(0)
    n = 12
    pos = rng.uniform(0.0, env_cfg.arena_size, size=(n, 2))
    internal = np.linspace(0.01, 0.99, 3 * n).reshape(n, 3)  # nearly empty to full: infeasible rows included
    proposals = rng.uniform(-1.0, 1.0, size=(n, 2))
    wire_pos, wire_internal = read_only(pos), read_only(internal)  # as decoded from a message: numba's own types
    cores = {name: ShieldCore(env_cfg, ShieldConfig(filter=name)) for name in ("qp", "search")}  # type: ignore[arg-type]
    for core in cores.values():
        for step, batch in enumerate((n, 1)):
            core.step(step, pos[:batch], internal[:batch], proposals[:batch], 0.0)
            core.step(step, wire_pos[:batch], wire_internal[:batch], proposals[:batch] * 0.01, 0.0)
            core.step(step, pos[:batch], internal[:batch], proposals[:batch], 0.0, uncertainty=internal[:batch] / 10)
        core.step(2, pos, internal, proposals, float("inf"))  # stale: the fallback for every arena
    # the fast path's outcomes from comfortable internal states, where gentle proposals pass and hard ones near
    # hazards and walls are filtered; positions and internal states writable, read-only (from the wire), or one
    # of each (a node that fills in a missing estimate)
    core = cores["qp"]
    comfortable = np.array([[0.9, 0.2, 0.9]])
    for at in rng.uniform(0.0, env_cfg.arena_size, size=(16, 1, 2)):
        for p, h in itertools.product((at, read_only(at)), (comfortable, read_only(comfortable))):
            core.step(3, p, h, rng.uniform(-0.01, 0.01, size=(1, 2)), 0.0)
            core.step(3, p, h, rng.choice([-1.0, 1.0], size=(1, 2)), 0.0)
    rows = core.barriers.constraints(pos, internal)
    features_batch(rows.A, rows.b, proposals)
    polish_batch(rows.A, rows.b, proposals, proposals.astype(np.float32), 3, 1e-6)


def _checked(
    positions: np.ndarray, internal: np.ndarray, proposed: np.ndarray, uncertainty: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Shapes are a contract: wrong ones raise, naming the field. Non-finite proposals become 0."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions: expected shape (B, 2), got {pos.shape}")
    n = pos.shape[0]
    h = np.asarray(internal, dtype=np.float64)
    if h.shape != (n, 3):
        raise ValueError(f"internal: expected shape ({n}, 3), got {h.shape}")
    prop = np.asarray(proposed, dtype=np.float64)
    if prop.shape != (n, 2):
        raise ValueError(f"proposed: expected shape ({n}, 2), got {prop.shape}")
    prop = box(np.where(np.isfinite(prop), prop, 0.0))
    std = None
    if uncertainty is not None:
        std = np.asarray(uncertainty, dtype=np.float64)
        if std.shape != (n, 3):
            raise ValueError(f"uncertainty: expected shape ({n}, 3), got {std.shape}")
    return pos, h, prop, std
