"""The shield node for any Gymnasium environment with a Box action space (kind ``gym_shield``): ``AnyEnvShield``
on the observations of an env node of kind ``gym``, with the user's description of safety (docs/shield.md, "Your
own environment"). The action space comes from ``env_id`` and ``env_kwargs``, as the env node makes it; actions
stay in the agent's [-1, 1] and the descriptions speak the env's own units.

A description function that fails is named in the log (its first failure, then every
``ERROR_LOG_EVERY``-th) and counted in ``description_errors.<role>``; the arena's step takes the backup or the
declared fallback, and the run goes on.
"""

from __future__ import annotations

import time

import numpy as np

from nodes.env.node import GYM_FALLBACKS
from nodes.shield.any_env import ANY_ENV_CAUSES, DESCRIPTION_ROLES, AnyEnvConfig, AnyEnvShield
from nodes.shield.node_base import PairedShieldNode
from persist_rt import Param
from protocols import MODE_PASS, SafeAction

ERROR_LOG_EVERY = 1000


class AnyEnvShieldNode(PairedShieldNode):
    kind = "gym_shield"

    env_id = Param("", "the env's registered Gymnasium id (its action space is the shield's)", read_only=True)
    env_kwargs = Param({}, "keyword arguments of gymnasium.make, as the env's", read_only=True)
    # the learned filter needs the env's margins of every transition, which no topic carries yet: in process only
    filter = Param("qp", "qp (needs rows) or search (needs model)", choices=("qp", "search"), read_only=True)
    rows = Param("", "affine rows (obs) -> (A, b), safe set A u <= b: module:function or path/file.py:function",
                 read_only=True)
    model = Param("", "model (state, action) -> (next_state, margins), safe when every margin >= 0", read_only=True)
    backup = Param("", "backup policy (obs) -> action, executed where the filter has no action ('' : fallback)",
                   read_only=True)
    fallback = Param("zero", "declared fallback: zero (the box centre) or hold (the last action)",
                     choices=GYM_FALLBACKS, read_only=True)
    candidates = Param(64, "random candidates of the search filter, besides the structured ones", ge=0,
                       read_only=True)
    seed = Param(0, "seed of the search filter's fixed candidates", ge=0, read_only=True)

    def on_configure(self) -> None:
        import gymnasium
        from gymnasium import spaces

        if not self.env_id or self.env_id not in gymnasium.registry:
            raise ValueError(f"env_id: {self.env_id!r} is not a registered Gymnasium environment")
        env = gymnasium.make(self.env_id, **self.env_kwargs)
        space = env.action_space
        env.close()
        if not isinstance(space, spaces.Box):
            raise ValueError(f"env_id: {self.env_id!r} has a {type(space).__name__} action space; "
                             "the shield needs a Box")
        cfg = AnyEnvConfig(filter=self.filter, rows=self.rows, model=self.model, backup=self.backup,
                           fallback=self.fallback, candidates=self.candidates, seed=self.seed,
                           input_deadline_s=self.input_deadline_s)
        self.core = AnyEnvShield(space, cfg)
        self.errors_seen = 0
        self.start_io()

    def decide(self, stale: bool = False) -> None:
        step = self.begin_step(stale, self.core.dim)
        if step is None:
            return
        obs, proposed, stale, version = step
        age = float("inf") if stale else time.monotonic() - self.obs_wall
        decision = self.core.step(obs.step, obs.obs, proposed, age)
        constraint = [c or k or "" for c, k in zip(decision.cause, decision.constraint, strict=True)]
        self.safe_pub.publish(SafeAction(
            step=obs.step, actions=decision.actions, mode=decision.mode.astype(np.uint8), constraint=constraint,
            margin_before=decision.margin_before.astype(np.float32),
            margin_after=decision.margin_after.astype(np.float32), policy_version=version,
            proposed=None if stale else decision.proposed), step=obs.step)
        self.count("interventions", int((decision.mode != MODE_PASS).sum()))
        self.log_errors()
        if decision.reports:
            self.report(obs.step, decision.reports)

    def log_errors(self) -> None:
        total = sum(self.core.counts[f"description_errors.{r}"] for r in DESCRIPTION_ROLES)
        if total > self.errors_seen:
            if self.errors_seen == 0 or total // ERROR_LOG_EVERY > self.errors_seen // ERROR_LOG_EVERY:
                self.log.error("description_failed", error=self.core.errors[-1], total=total)
            self.errors_seen = total

    def refresh(self) -> None:
        counts = self.core.counts
        for cause in ANY_ENV_CAUSES:
            self.gauge(f"degraded.{cause}", counts[f"degraded.{cause}"])
        for role in DESCRIPTION_ROLES:
            self.gauge(f"description_errors.{role}", counts[f"description_errors.{role}"])
        self.gauge("backup_actions", counts["backup_actions"])
        self.status = {"interventions": int(self.counters.get("interventions", 0)),
                       **{f"degraded.{c}": counts[f"degraded.{c}"] for c in ANY_ENV_CAUSES if counts[f"degraded.{c}"]}}
