"""The shield for any environment with a Box action space: filters each arena's proposal through a user's
description of safety (`description.py`), in the env's own action units.

    core = AnyEnvShield(action_space, AnyEnvConfig(filter="qp", rows="my_pkg.safety:rows"))
    decision = core.step(step, obs, proposed, input_age_s)   # a ShieldDecision; actions (B, d) in [-1, 1]

Filters: `qp` projects the proposal onto the affine rows `A u <= b` (`box_qp.py`); `search` keeps the candidate
nearest the proposal whose predicted margins are all >= 0 (`model_search.py`); `learned` does the same search over
a margin model learned online from the env's transitions (`learned_margins.py`; the caller feeds it through
`learn` and `train`). Degraded mode, first match wins:
`bad_input` (a non-finite observation: no user function sees it), `stale` (input older than
`input_deadline_s`: every arena), with `learned`: `untrained` (its error bound not yet measured), `ood` (the
state is out of the training distribution, once `ood_fit_after` states were seen), `disagreement` (the members'
spread at the proposal above `disagreement_std`); `bad_description` (a description function raised or returned the wrong
shape or a non-finite value: named in `errors`, counted by role in `description_errors.<role>`), `infeasible`
(no action meets the rows / no candidate is safe). A degraded arena executes the user's backup policy where
one is given and it answers properly, else the declared fallback (`zero`: the box centre; `hold`: the arena's
last executed action); never its proposal. Counts as `ShieldCore`'s: `degraded.<cause>`, `mode.<mode>`,
`decisions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nodes.env.node import GYM_FALLBACKS
from nodes.shield.box_qp import BoxQP
from nodes.shield.core import ShieldConfig, ShieldDecision
from nodes.shield.description import Backup, DescriptionError, Model, Rows
from nodes.shield.learned_margins import LearnedMargins, LearnedMarginsConfig
from nodes.shield.model_search import ModelSearch
from nodes.shield.ood import EnergyOOD
from nodes.shield.qp import QPConfig
from protocols import MODE_FALLBACK, MODE_FILTERED, MODE_NAMES, MODE_PASS

ANY_ENV_FILTERS: tuple[str, ...] = ("qp", "search", "learned")
ANY_ENV_CAUSES: tuple[str, ...] = ("bad_input", "stale", "untrained", "ood", "disagreement", "bad_description",
                                   "infeasible")
DESCRIPTION_ROLES: tuple[str, ...] = ("rows", "model", "backup")
MODE_KEYS = tuple(f"mode.{m}" for m in MODE_NAMES)
MAX_ERRORS_KEPT = 32  # the newest description errors, for the node's log and tests


@dataclass(frozen=True)
class AnyEnvConfig:
    filter: Literal["qp", "search", "learned"] = "qp"
    rows: str = ""  # `module:function` or `path/file.py:function`: (obs) -> (A, b), safe set A u <= b
    model: str = ""  # (state, action) -> (next_state, margins), safe when every margin >= 0
    backup: str = ""  # (obs) -> action, executed when the filter has none ('' : the declared fallback)
    fallback: Literal["zero", "hold"] = "zero"
    candidates: int = 64  # random candidates of the search filter, besides the structured ones
    seed: int = 0
    input_deadline_s: float = ShieldConfig.input_deadline_s
    pass_tolerance: float = 1e-6
    qp: QPConfig = field(default_factory=QPConfig)
    learned: LearnedMarginsConfig = field(default_factory=LearnedMarginsConfig)
    ood_fit_after: int = 0  # learned: states to fit the OOD detector on, then OOD states are degraded (0: off)

    def __post_init__(self) -> None:
        if self.filter not in ANY_ENV_FILTERS:
            raise ValueError(f"filter: must be one of {ANY_ENV_FILTERS}, got {self.filter!r}")
        if self.filter == "qp" and not self.rows:
            raise ValueError("rows: the qp filter needs an affine description (obs) -> (A, b)")
        if self.filter == "search" and not self.model:
            raise ValueError("model: the search filter needs a model (state, action) -> (next_state, margins)")
        if self.fallback not in GYM_FALLBACKS:
            raise ValueError(f"fallback: must be one of {GYM_FALLBACKS}, got {self.fallback!r}")
        if not (isinstance(self.input_deadline_s, int | float) and math.isfinite(self.input_deadline_s)
                and self.input_deadline_s > 0):
            raise ValueError(f"input_deadline_s: must be a finite number > 0, got {self.input_deadline_s!r}")


@dataclass
class _Arena:
    """One arena's decision before it is assembled into the step's arrays."""

    action: np.ndarray
    mode: int
    cause: str | None = None
    constraint: str | None = None
    before: float = float("nan")
    after: float = float("nan")


class AnyEnvShield:
    def __init__(self, action_space: Any, cfg: AnyEnvConfig) -> None:
        self.cfg = cfg
        self.box = BoxQP(action_space, cfg.qp)
        self.dim = self.box.dim
        self.rows = Rows(cfg.rows, self.dim) if cfg.rows else None
        self.model = Model(cfg.model) if cfg.model else None
        self.backup = Backup(cfg.backup, self.box.low, self.box.high) if cfg.backup else None
        self.search = ModelSearch(self.box, self.model, cfg.candidates, cfg.seed)
        self.learned: LearnedMargins | None = None  # made by the first `learn`, which knows the shapes
        self.ood: EnergyOOD | None = None
        self.ood_states: list[np.ndarray] = []
        self.counts: dict[str, int] = {"decisions": 0, "model_calls": 0, "backup_actions": 0}
        self.counts |= {f"degraded.{c}": 0 for c in ANY_ENV_CAUSES}
        self.counts |= {f"mode.{m}": 0 for m in MODE_NAMES}
        self.counts |= {f"description_errors.{r}": 0 for r in DESCRIPTION_ROLES}
        self.errors: list[str] = []  # newest last; each names the spec and the reason
        self.last_actions: np.ndarray | None = None

    def step(self, step: int, obs: np.ndarray, proposed: np.ndarray, input_age_s: float) -> ShieldDecision:
        # written for batch 1, where numpy's per-call overhead is the cost: few calls, ufuncs rather than np.clip
        obs = np.asarray(obs, np.float64)
        n, d = obs.shape[0], self.dim
        obs = obs.reshape(n, -1)
        prop = np.asarray(proposed, np.float32).reshape(n, d)
        if not np.isfinite(prop).all():
            prop = np.where(np.isfinite(prop), prop, np.float32(0.0))
        prop = np.minimum(np.maximum(prop, np.float32(-1.0)), np.float32(1.0))
        if self.last_actions is None or self.last_actions.shape != (n, d):
            self.last_actions = np.zeros((n, d), np.float32)
        stale = not input_age_s <= self.cfg.input_deadline_s
        actions = np.empty((n, d), np.float32)
        mode = np.empty(n, np.int64)
        before, after = np.empty(n), np.empty(n)
        cause: list[str | None] = [None] * n
        constraint: list[str | None] = [None] * n
        for i in range(n):
            a = self._decide(i, obs[i], prop[i], stale)
            actions[i], mode[i], before[i], after[i], cause[i], constraint[i] = \
                a.action, a.mode, a.before, a.after, a.cause, a.constraint
            self.counts[MODE_KEYS[a.mode]] += 1
        self.counts["decisions"] += n
        self.last_actions = actions.copy()
        return ShieldDecision(actions=actions, mode=mode, cause=cause, constraint=constraint, margin_before=before,
                              margin_after=after, proposed=prop, step=step)

    def _decide(self, i: int, obs: np.ndarray, prop: np.ndarray, stale: bool) -> _Arena:
        if not np.isfinite(obs).all():
            return self._fallback(i, obs, "bad_input", call_backup=False)
        if stale:
            return self._fallback(i, obs, "stale")
        try:
            arena = self._filter(i, obs, prop)
        except DescriptionError as error:
            self._record(error)
            return self._fallback(i, obs, "bad_description")
        if isinstance(arena, str):
            return self._fallback(i, obs, arena)
        return arena

    def _filter(self, i: int, obs: np.ndarray, prop: np.ndarray) -> _Arena | str:
        """The filter's decision, or the degraded cause."""
        if self.cfg.filter == "learned":
            return self._learned(obs, prop)
        if self.cfg.filter == "qp":
            assert self.rows is not None
            A, b = self.rows(obs)
            res = self.box.project(i, A, b, prop)
            if not res.feasible:
                return "infeasible"
            action, before, after = res.action, float(res.slack_before.min(initial=np.inf)), \
                float(res.slack_after.min(initial=np.inf))
            if not res.solved:  # the proposal met every row: passed unchanged
                return _Arena(action, MODE_PASS, None, None, before, after)
            binding = f"row_{int(res.slack_after.argmin())}" if res.slack_after.size else None
        else:
            res_s = self.search.search(obs, prop)
            self.counts["model_calls"] += res_s.calls
            if not res_s.feasible:
                return "infeasible"
            action, before, after = res_s.action, res_s.margin_before, res_s.margin_after
            binding = f"margin_{res_s.binding}"
        moved = float(np.abs(action.astype(np.float64) - prop).max(initial=0.0)) > self.cfg.pass_tolerance
        return _Arena(action, MODE_FILTERED if moved else MODE_PASS, None, binding if moved else None, before, after)

    def _learned(self, obs: np.ndarray, prop: np.ndarray) -> _Arena | str:
        model = self.learned
        if model is None or not model.ready:
            return "untrained"
        if self.ood is not None and bool(self.ood.is_ood(obs[None, :])[0]):
            return "ood"
        cands = self.search.candidates(prop)  # the proposal first, then by distance
        margins, spread = model.predict(obs, cands)
        if float(spread[0].max()) > model.cfg.disagreement_std:
            return "disagreement"
        safe = np.flatnonzero((margins >= 0).all(axis=1))
        if safe.size == 0:
            return "infeasible"
        k = int(safe[0])
        before, after = float(margins[0].min()), float(margins[k].min())
        if k == 0:
            return _Arena(cands[0], MODE_PASS, None, None, before, after)
        return _Arena(cands[k], MODE_FILTERED, None, f"margin_{int(margins[k].argmin())}", before, after)

    def learn(self, obs: np.ndarray, actions: np.ndarray, next_margins: np.ndarray) -> None:
        """Transitions for the `learned` filter: observations (B, ...), the agent-unit actions executed (B, d) and
        the env's margins of the states they reached (B, M); also the OOD detector's states, if it is on."""
        obs = np.asarray(obs, np.float64).reshape(len(obs), -1)
        margins = np.asarray(next_margins, np.float64).reshape(len(obs), -1)
        if self.learned is None:
            self.learned = LearnedMargins(obs.shape[1], self.dim, margins.shape[1], self.cfg.learned)
        self.learned.add(obs, actions, margins)
        if self.cfg.ood_fit_after and self.ood is None:
            self.ood_states.append(obs)
            if sum(len(o) for o in self.ood_states) >= self.cfg.ood_fit_after:
                self.ood, self.ood_states = EnergyOOD().fit(np.concatenate(self.ood_states)), []

    def train(self, steps: int) -> None:
        if self.learned is not None:
            self.learned.train(steps)

    def _fallback(self, i: int, obs: np.ndarray, cause: str, call_backup: bool = True) -> _Arena:
        self.counts[f"degraded.{cause}"] += 1
        if self.backup is not None and call_backup:
            try:
                action = self.backup(obs)
                self.counts["backup_actions"] += 1
                a = np.clip((action - self.box.centre) / self.box.half, -1.0, 1.0).astype(np.float32)
                return _Arena(a, MODE_FALLBACK, cause, "backup")
            except DescriptionError as error:
                self._record(error)
        if self.cfg.fallback == "hold" and self.last_actions is not None:
            return _Arena(self.last_actions[i].copy(), MODE_FALLBACK, cause, "hold")
        return _Arena(np.zeros(self.dim, np.float32), MODE_FALLBACK, cause, "zero")

    def _record(self, error: DescriptionError) -> None:
        role = next((r for r in DESCRIPTION_ROLES if getattr(self.cfg, r) == error.spec), "rows")
        self.counts[f"description_errors.{role}"] += 1
        self.errors = [*self.errors[-(MAX_ERRORS_KEPT - 1):], str(error)]
