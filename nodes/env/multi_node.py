"""The multi-agent env node (kind ``multi_gridlife``): multi-agent GridLife in lockstep with the coupler.

Rows of every message are bodies, arena-major (row ``i * num_agents + j`` is body j of arena i). Each step it
publishes ``env/obs`` and, with ``allocator`` on, ``allocator/requests`` (the station each body stands in,
its demand and margin); it executes only ``action/safe`` (the coupler's). Grants count only for the step
they answer (``GrantBook``); a step without them within ``grant_deadline_s`` gets equal shares, counted in
``allocator.fallback_steps``. A step whose action does not come within ``action_deadline_s`` runs the env's
declared fallback, a stop (a = 0 for every body; from separated states a stop keeps every pair apart),
counted in ``fallback_steps``. After ``total_steps`` steps it writes ``summary.json`` and stops the run.
"""

from __future__ import annotations

import json
import time

import numpy as np

from nodes.allocator.core import GrantBook, requests
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig
from persist_rt import Node, Param
from persist_rt.checkpoint import atomic_write_bytes
from persist_rt.qos import LOCKSTEP
from protocols import MODE_FALLBACK, MODE_FILTERED, Observation, SafeAction, StationGrants, StationRequests
from protocols.topics import ACTION_SAFE, ALLOCATOR_GRANTS, ALLOCATOR_REQUESTS, ENV_OBS


class MultiGridLifeNode(Node):
    kind = "multi_gridlife"

    config = Param({}, "multi-agent GridLife parameters (docs/gridlife.md)", read_only=True)
    num_envs = Param(1, "arenas", ge=1, read_only=True)
    seed = Param(0, "reset seed", ge=0, read_only=True)
    total_steps = Param(2000, "steps to run, then write summary.json and stop", ge=1, read_only=True)
    allocator = Param(True, "ask the allocator for station shares (off: equal shares)", read_only=True)
    readers = Param(2, "env/obs readers to wait for before the first step (the bodies and the coupler)", ge=1,
                    read_only=True)
    grant_deadline_s = Param(0.2, "how long a step waits for its grants", gt=0)
    action_deadline_s = Param(1.0, "how long a step waits for action/safe before the stop fallback", gt=0)
    coupler_node = Param("coupler", "coupler whose infeasible and deadlock counts join summary.json ('' for none)")

    def on_configure(self) -> None:
        self.env_cfg = MultiGridLifeConfig.from_params(self.config)
        self.batch = MultiGridLifeBatch(self.env_cfg, num_envs=self.num_envs)
        self.batch.reset(seed=self.seed)
        self.agents = self.env_cfg.num_agents
        self.rows = self.num_envs * self.agents
        self.book = GrantBook()
        self.step = 0
        self.sent_wall = 0.0
        self.t_first = 0.0
        self.sent = False
        self.action: SafeAction | None = None
        self.jain = 1.0
        self.books = {key: np.zeros(self.agents, np.int64)
                      for key in ("deaths", "collisions", "violations", "contended_steps", "served_steps")}  # fmt: skip
        self.obs_pub = self.publisher(ENV_OBS, Observation, reliable=True)
        self.req_pub = self.publisher(ALLOCATOR_REQUESTS, StationRequests, reliable=True)
        self.subscribe(ACTION_SAFE, SafeAction, self.on_action, qos=LOCKSTEP)
        self.subscribe(ALLOCATOR_GRANTS, StationGrants, self.on_grants, qos=LOCKSTEP)
        self.timer(0.002, self.tick)

    def on_action(self, msg: SafeAction) -> None:
        if msg.step == self.step and self.sent:
            self.action = msg

    def on_grants(self, msg: StationGrants) -> None:
        if msg.grants.shape != (self.rows,):
            self.count("rejected.grants")
            return
        self.book.put(msg.step, msg.grants.reshape(self.num_envs, self.agents))
        self.jain = msg.jain_index

    def tick(self) -> None:
        if self.step >= self.total_steps:
            return
        if not self.sent:
            if self.obs_pub.stats()["reliable_peers"] < self.readers or \
                    (self.allocator and self.req_pub.stats()["reliable_peers"] < 1):
                return  # a step sent before its readers are connected would wait for its deadline
            self.publish_step()
            return
        waited = time.monotonic() - self.sent_wall
        grants_due = not self.allocator or self.book.has(self.step) or waited > self.grant_deadline_s
        if self.action is not None and grants_due:
            actions = self.checked_actions(self.action)
        elif waited > self.action_deadline_s:
            self.count("fallback_steps")
            actions = np.zeros((self.num_envs, self.agents, 2))
        else:
            return
        self.execute(actions)

    def publish_step(self) -> None:
        b = self.batch
        self.obs_pub.publish(Observation(step=self.step, obs=b.observe().reshape(self.rows, -1),
                                         positions=np.array(b.positions).reshape(self.rows, 2),
                                         episode_step=np.full(self.rows, self.step, np.int64),
                                         internal=np.array(b.internal).reshape(self.rows, 3)), step=self.step)
        if self.allocator:
            station = self.stations()
            demand, margin = requests(b.internal, station, b.layout.station_kinds, self.env_cfg.world)
            self.req_pub.publish(StationRequests(step=self.step, station=station.reshape(-1).astype(np.int64),
                                                 demand=demand.reshape(-1).astype(np.float32),
                                                 margin=margin.reshape(-1).astype(np.float32)), step=self.step)
        self.sent, self.sent_wall, self.action = True, time.monotonic(), None
        if self.step == 0:
            self.t_first = self.sent_wall  # the loop's clock starts with its first step, not with the peers' wait

    def stations(self) -> np.ndarray:
        """(N, A) index of the station each body stands in now, or -1."""
        lay = self.batch.layout
        gaps = np.linalg.norm(self.batch.positions[..., None, :] - lay.station_centres, axis=-1) - lay.station_radii
        inside = gaps <= 0
        return np.where(inside.any(axis=-1), inside.argmax(axis=-1), -1)

    def checked_actions(self, msg: SafeAction) -> np.ndarray:
        if msg.actions.shape != (self.rows, 2):
            self.count("rejected.actions")
            self.count("fallback_steps")
            return np.zeros((self.num_envs, self.agents, 2))
        self.count("coupler.interventions", int((msg.mode == MODE_FILTERED).sum()))
        self.count("coupler.fallback", int((msg.mode == MODE_FALLBACK).sum()))
        return np.clip(msg.actions.astype(np.float64), -1.0, 1.0).reshape(self.num_envs, self.agents, 2)

    def execute(self, actions: np.ndarray) -> None:
        shares = self.book.shares(self.step) if self.allocator else None
        try:
            result = self.batch.step(actions, shares=shares)
        except ValueError as exc:  # grants the env cannot apply: this step gets equal shares
            self.count(f"rejected.{str(exc).split(':', 1)[0]}")
            self.log.warning("rejected", field="shares", reason=str(exc))
            result = self.batch.step(actions, shares=None)
        books = self.books
        books["deaths"] += result.terminated.sum(axis=0)
        books["collisions"] += result.collision.sum(axis=0)
        books["violations"] += result.violation.sum(axis=0)
        occupancy = np.take_along_axis(result.occupancy, np.maximum(result.station, 0), axis=1)
        books["served_steps"] += (result.station >= 0).sum(axis=0)
        books["contended_steps"] += ((result.station >= 0) & (occupancy > 1)).sum(axis=0)
        self.count("steps")
        self.count("collisions", int(result.collision.sum()))
        self.gauge("allocator.fallback_steps", self.book.fallback_steps)
        self.step += 1
        self.sent = False
        if self.step >= self.total_steps:
            self.write_summary()
            self.request_stop()

    def write_summary(self) -> None:
        b = self.books
        wall_s = time.monotonic() - self.t_first if self.step else 0.0
        summary = {
            "env": "multi_gridlife", "env_steps": self.step, "arenas": self.num_envs, "agents": self.agents,
            "wall_s": round(wall_s, 3), "env_steps_per_s": round(self.step / max(wall_s, 1e-9), 1),
            "per_agent": {f"agent_{j}": {key: int(b[key][j]) for key in b} for j in range(self.agents)},
            "train": {"collisions": int(b["collisions"].sum()), "violations_executed": int(b["violations"].sum()),
                      "deaths": int(b["deaths"].sum()), "fallback_steps": int(self.counters.get("fallback_steps", 0))},
            "allocator": {"jain_index": self.jain, "fallback_steps": self.book.fallback_steps},
            # body-steps the coupler changed or stopped, from the modes of action/safe, and the coupler's own counts
            "coupler": {**{key: int(self.counters.get(f"coupler.{key}", 0)) for key in ("interventions", "fallback")},
                        **self.coupler_counts()},
        }  # fmt: skip
        if self.run_dir is not None:
            atomic_write_bytes(self.run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        self.log.info("finished", **summary["train"])

    def coupler_counts(self) -> dict[str, int]:
        """The coupler node's infeasible joint problems and deadlocks (its gauges), asked when the run ends; empty
        without a coupler or when it does not answer (counted in peer_call_failures)."""
        stats = self.call_peer(self.coupler_node, "stats") if self.coupler_node else None
        gauges = stats.get("gauges", {}) if isinstance(stats, dict) else {}
        return {key: int(gauges[f"coupler.{key}"]) for key in ("infeasible", "deadlocks")
                if f"coupler.{key}" in gauges}
