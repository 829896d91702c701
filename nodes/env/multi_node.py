"""The multi-agent env node (kind ``multi_gridlife``): multi-agent GridLife on the experiment protocol.

An env kind like GridLife's (``EnvNode``, nodes/env/node.py): it trains for ``total_steps`` body-steps, then runs
the evaluation phases of docs/experiment.md and writes ``summary.json``. Its rows are bodies, arena-major (row
``i * num_agents + j`` is body j of arena i): every body is one of the protocol's "arenas", so the books, the
replay stream and the agent's and shield's messages count body-steps. With ``role_embedding`` each row's
observation ends with the one-hot code of the body's index (nodes/sac/roles.py), so one policy with shared
parameters can act for every body (SharedSAC with one type).

Each step it publishes ``env/obs`` and, with ``allocator`` on, ``allocator/requests`` (the station each body
stands in, its demand and margin); it executes only ``action/safe`` (the coupler's). Grants count only for the
step they answer (``GrantBook``); a step whose grants have not come when its action does gets equal shares,
counted in ``allocator.fallback_steps``. A step whose action does not come within ``deadline_s`` runs the
declared fallback, a stop (a = 0 for every body; from separated states a stop keeps every pair apart).

Training respawns each body alone when its episode ends; an evaluation does not (a body that ended leaves the
arena), so each body runs one episode per evaluation arena. The scripted baseline is the station keeper of
every body, stepped by the env alone (no coupler).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from nodes.allocator.core import GrantBook, requests
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig, MultiStepResult, stations_at
from nodes.env.node import GridLifeNode
from nodes.env.scripted import seek_station_policy
from nodes.env.step import StepResult
from nodes.experiment import SCRIPTED_PHASES
from nodes.sac.roles import role_one_hot
from persist_rt import Param
from persist_rt.qos import LOCKSTEP
from protocols import MODE_FALLBACK, MODE_FILTERED, Observation, SafeAction, StationGrants, StationRequests
from protocols.topics import ALLOCATOR_GRANTS, ALLOCATOR_REQUESTS

BODY_BOOKS = ("deaths", "collisions", "violations", "contended_steps", "served_steps")


class MultiGridLifeNode(GridLifeNode):
    kind = "multi_gridlife"

    fallback = Param("zero", "what executes on a missed deadline or an invalid action: a stop for every body",
                     choices=("zero",))
    config = Param({}, "multi-agent GridLife parameters (docs/gridlife.md, Multi-agent): num_agents, "
                   "min_separation, ... and GridLife's constants", read_only=True)
    num_envs = Param(1, "arenas stepped together (rows of every message: their bodies, arena-major)", ge=1,
                     read_only=True)
    wait_for = Param(["agent", "shield", "coupler"], "nodes that must read env/obs before the first step")
    allocator = Param(True, "ask the allocator for station shares (off: equal shares)", read_only=True)
    coupler_node = Param("coupler", "coupler bypassed with the shield in unshielded evaluations; its infeasible "
                         "and deadlock counts join summary.json ('' for none)")
    grant_deadline_s = Param(0.2, "how long an arrived action waits for its step's grants before equal shares",
                             gt=0)
    role_embedding = Param(True, "append each body's one-hot role to its observation (shared parameters)",
                           read_only=True)

    def setup(self) -> None:
        self.multi = MultiGridLifeConfig.from_params(self.config)
        self.cfg = self.multi.world
        self.agents = self.multi.num_agents
        self.roles = role_one_hot(self.multi.agent_type_index) if self.role_embedding else None
        self.grants = GrantBook()
        self.train_jain = 1.0
        self.train_grant_fallbacks = 0
        self.held: tuple[np.ndarray, str, SafeAction | None, float] | None = None  # an action waiting for grants
        self.bodies = {key: np.zeros(self.agents, np.int64) for key in BODY_BOOKS}  # training, per body index
        # the simulator's kernels compile on first use: here, before the node is announced, not in the first step,
        # where the wait would cost the registry lease and the first steps' deadlines
        warm = MultiGridLifeBatch(self.multi, 1)
        warm.reset(0)
        warm.step(np.zeros((1, self.agents, 2)))
        self.req_pub = self.publisher(ALLOCATOR_REQUESTS, StationRequests, reliable=True)
        self.subscribe(ALLOCATOR_GRANTS, StationGrants, self.on_grants, qos=LOCKSTEP)

    # --- the arenas -------------------------------------------------------------------------

    def build_sim(self, num_envs: int) -> None:
        cfg = self.multi
        if self.phase == "train" and self.train_cap:
            cfg = dataclasses.replace(cfg, world=dataclasses.replace(cfg.world, episode_cap=self.train_cap))
        self.sim: Any = MultiGridLifeBatch(cfg, num_envs, auto_reset=self.phase in ("train", "run"))
        self.current_obs = np.zeros((self.arenas, self.sim.obs_dim + self.role_dim), np.float32)  # until reset_sim
        self.token_dist = self.sim.obs_names.index("token_dist"), cfg.world.arena_size  # for token shaping

    @property
    def role_dim(self) -> int:
        return 0 if self.roles is None else self.roles.shape[1]

    def reset_sim(self, seed: int) -> None:
        self.current_obs = self.rows_obs(self.sim.reset(seed))

    @property
    def arenas(self) -> int:
        """Rows: the bodies of every arena."""
        return self.sim.num_envs * self.agents

    def rows_obs(self, obs: np.ndarray) -> np.ndarray:
        """(N, A, obs_dim) -> (N * A, obs_dim [+ roles]) float32."""
        rows = np.asarray(obs, np.float32).reshape(self.arenas, -1)
        if self.roles is None:
            return rows
        return np.concatenate([rows, np.tile(self.roles, (self.sim.num_envs, 1))], axis=1)

    def observation(self) -> Observation:
        hidden = self.cfg.partial_observability
        return Observation(step=self.step_id, obs=self.current_obs,
                           positions=np.array(self.sim.positions).reshape(self.arenas, 2),
                           internal=None if hidden else np.array(self.sim.internal).reshape(self.arenas, 3),
                           episode_step=np.array(self.sim.episode_steps, np.int64).reshape(-1))  # fmt: skip

    def scripted_actions(self) -> np.ndarray:
        """Every body's scripted station keeper (nodes/env/scripted.py) on its own true state."""
        n = self.arenas
        positions = np.array(self.sim.positions).reshape(n, 2)
        return seek_station_policy(positions, np.array(self.sim.internal).reshape(n, 3), np.zeros((n, 0, 2)),
                                   self.cfg).astype(np.float32)  # fmt: skip

    def step_sim(self, actions: np.ndarray) -> StepResult:
        n = self.sim.num_envs
        shares = self.grants.shares(self.step_id) if self.allocator and self.phase not in SCRIPTED_PHASES else None
        joint = actions.reshape(n, self.agents, 2)
        try:
            result = self.sim.step(joint, shares=shares)
        except ValueError as exc:  # grants the env cannot apply (refused by field): this step gets equal shares
            self.count(f"rejected.{str(exc).split(':', 1)[0]}")
            self.log.warning("rejected", field="shares", reason=str(exc))
            result = self.sim.step(joint, shares=None)
        self.count("steps")
        if self.phase in ("train", "run"):
            self.book_bodies(result)
        return self.complete_step(self.rows_result(result))

    def rows_result(self, r: MultiStepResult) -> StepResult:
        """The (N, A) step as one row per body, observations with their roles."""
        def flat(x: np.ndarray) -> np.ndarray:
            return x.reshape(self.arenas, *x.shape[2:])

        return StepResult(obs=self.rows_obs(r.obs), next_obs=self.rows_obs(r.next_obs),
                          reset_obs=self.rows_obs(r.reset_obs), task_reward=flat(r.task_reward),
                          homeo_reward=flat(r.homeo_reward), terminated=flat(r.terminated), truncated=flat(r.truncated),
                          violation=flat(r.violation), margins={k: flat(v) for k, v in r.margins.items()},
                          episode_steps=flat(r.episode_steps), tokens=flat(r.tokens), internal=flat(r.internal),
                          next_internal=flat(r.next_internal), next_positions=flat(r.next_positions))  # fmt: skip

    def book_bodies(self, result: MultiStepResult) -> None:
        b = self.bodies
        b["deaths"] += result.terminated.sum(axis=0)
        b["collisions"] += result.collision.sum(axis=0)
        b["violations"] += result.violation.sum(axis=0)
        occupancy = np.take_along_axis(result.occupancy, np.maximum(result.station, 0), axis=1)
        b["served_steps"] += (result.station >= 0).sum(axis=0)
        b["contended_steps"] += ((result.station >= 0) & (occupancy > 1)).sum(axis=0)
        self.count("collisions", int(result.collision.sum()))
        self.train_grant_fallbacks = self.grants.fallback_steps  # the training's, whatever the evaluations add
        self.gauge("allocator.fallback_steps", self.train_grant_fallbacks)

    # --- the allocator and the coupler ------------------------------------------------------

    def missing_peers(self) -> list[str]:
        missing = super().missing_peers()
        if self.allocator and self.req_pub.stats()["reliable_peers"] < 1:
            missing.append("allocator")  # a step sent before its grants' reader is there would get equal shares
        return missing

    def publish_obs(self) -> None:
        super().publish_obs()
        if self.phase in SCRIPTED_PHASES or not self.allocator:
            return
        b = self.sim
        station, _ = stations_at(b.positions, b.layout, b.active)
        demand, margin = requests(b.internal, station, b.layout.station_kinds, self.cfg)
        self.req_pub.publish(StationRequests(step=self.step_id, station=station.reshape(-1).astype(np.int64),
                                             demand=demand.reshape(-1).astype(np.float32),
                                             margin=margin.reshape(-1).astype(np.float32)), step=self.step_id)

    def on_grants(self, msg: StationGrants) -> None:
        if msg.grants.shape != (self.arenas,):
            self.count("rejected.grants")
            self.log.warning("rejected", field="grants", reason=f"expected ({self.arenas},), got {msg.grants.shape}")
            return
        self.grants.put(msg.step, msg.grants.reshape(self.sim.num_envs, self.agents))
        if self.phase == "train":
            self.train_jain = msg.jain_index
        if self.held is not None and msg.step == self.step_id:
            self.step_now(*self.held[:3])

    def tick(self) -> None:
        held = self.held
        if held is not None and (self.grants.has(self.step_id) or time.monotonic() - held[3] > self.grant_deadline_s):
            self.step_now(*held[:3])
        super().tick()

    def execute(self, actions: np.ndarray, source: str, safe: SafeAction | None) -> None:
        """Step with ``actions``; the coupler's action of a step whose grants are still on their way waits for
        them (up to ``grant_deadline_s``, then equal shares)."""
        waits = self.allocator and safe is not None and self.phase not in SCRIPTED_PHASES
        if waits and not self.grants.has(self.step_id):
            self.held = (actions, source, safe, time.monotonic())
            return
        self.step_now(actions, source, safe)

    def step_now(self, actions: np.ndarray, source: str, safe: SafeAction | None) -> None:
        self.held = None
        if safe is not None and self.phase in ("train", "run") and safe.mode.shape == (self.arenas,):
            self.count("coupler.interventions", int((safe.mode == MODE_FILTERED).sum()))
            self.count("coupler.fallback", int((safe.mode == MODE_FALLBACK).sum()))
        super().execute(actions, source, safe)

    def bypass_nodes(self) -> tuple[str, ...]:
        return (self.coupler_node,) if self.coupler_node else ()

    # --- summary ----------------------------------------------------------------------------

    def summary_extra(self) -> dict[str, Any]:
        b = self.bodies
        return {
            "env": "multi_gridlife", "arenas": self.num_envs, "agents": self.agents,
            "per_agent": {f"agent_{j}": {key: int(b[key][j]) for key in b} for j in range(self.agents)},
            "train": {"collisions": int(b["collisions"].sum()), "deaths": int(b["deaths"].sum())},
            # over training: Jain's index as the allocator last reported it then, and the env steps without grants
            "allocator": {"jain_index": self.train_jain, "fallback_steps": self.train_grant_fallbacks},
            # body-steps of training the coupler changed or stopped, from the modes of action/safe; the coupler's
            # own counts (infeasible joint problems, deadlocks) over the whole run
            "coupler": {**{key: int(self.counters.get(f"coupler.{key}", 0)) for key in ("interventions", "fallback")},
                        **self.coupler_counts()},
        }  # fmt: skip

    def coupler_counts(self) -> dict[str, int]:
        """The coupler node's infeasible joint problems and deadlocks (its gauges); empty without a coupler or when
        it does not answer (counted in peer_call_failures)."""
        stats = self.call_peer(self.coupler_node, "stats") if self.coupler_node else None
        gauges = stats.get("gauges", {}) if isinstance(stats, dict) else {}
        return {key: int(gauges[f"coupler.{key}"]) for key in ("infeasible", "deadlocks")
                if f"coupler.{key}" in gauges}
