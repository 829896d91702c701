"""The coupler node: between the individual shields and the env, the only publisher of ``action/safe`` in a
multi-agent graph (docs/coupler.md).

Rows of every message are bodies, arena-major (row ``i * num_agents + j`` is body j of arena i). For each step
it pairs the env's observation (true positions, internal state for the priority) with the shields' actions
on ``action/shielded`` and runs one ``Coupler`` per arena, with each body's hazard rows and the walls as its
own rows. If the shields' actions do not arrive within ``input_deadline_s``, or arrive malformed (counted
as ``rejected.<field>``), it decides on zero proposals: every body stops unless the coupler moves it, so it
never fails open. ``enabled: false`` forwards the shields' actions unchanged (the ``coupler=off`` contrast
run), counted in ``bypassed_steps``; so does ``bypass``, which the experiment protocol sets for the unshielded
evaluations. The number of arenas is read from each observation (its rows over ``num_agents``), so evaluation
phases may run more arenas than training.
"""

from __future__ import annotations

import time

import numpy as np

from nodes.cbf_coupler.core import Coupler, CouplerConfig, hazard_rows
from nodes.env.gridlife import build_layout
from nodes.env.multi_gridlife import MultiGridLifeConfig
from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import MODE_FALLBACK, MODE_FILTERED, MODE_PASS, Observation, SafeAction
from protocols.topics import ACTION_SAFE, ACTION_SHIELDED, ENV_OBS

COUNTS = ("interventions", "solved", "infeasible", "deadlocks", "own_rows_broken")


class CouplerNode(Node):
    kind = "coupler"

    config = Param({}, "multi-agent GridLife parameters: must match the env's", read_only=True)
    enabled = Param(True, "off: forward the shields' actions unchanged, for a coupler=off contrast run")
    bypass = Param(False, "bypass this phase: forward the shields' actions (the experiment protocol sets it)")
    gamma = Param(0.5, "pair rows keep h' >= (1 - gamma) h", gt=0, le=1, read_only=True)
    right_of_way = Param(0.0, "k: a pair's closing budget splits by s exp(-k margin), the body nearer its own "
                         "limits keeping more of its way (0: by speed alone; docs/coupler.md)", ge=0, read_only=True)
    input_deadline_s = Param(0.5, "how long to wait for the shields' actions of a step", gt=0)

    def on_configure(self) -> None:
        self.env_cfg = MultiGridLifeConfig.from_params(self.config)
        world = self.env_cfg.world
        self.layout = build_layout(world)
        self.agents = self.env_cfg.num_agents
        vmax = np.array([self.env_cfg.type_config(self.env_cfg.types[t]).vmax for t in self.env_cfg.agent_type_index])
        self.step_len = world.dt * vmax
        cfg = CouplerConfig(min_separation=self.env_cfg.min_separation, gamma=self.gamma,
                            arena_size=world.arena_size, right_of_way=self.right_of_way)  # fmt: skip
        self.coupler_cfg = cfg
        self.couplers: list[Coupler] = []  # one per arena, added as observations with more arenas come
        self.obs: Observation | None = None
        self.obs_wall = 0.0
        self.shielded: SafeAction | None = None
        self.decided_step = -1
        self.safe_pub = self.publisher(ACTION_SAFE, SafeAction, reliable=True)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos=LOCKSTEP)
        self.subscribe(ACTION_SHIELDED, SafeAction, self.on_shielded, qos=LOCKSTEP)
        self.timer(min(0.02, self.input_deadline_s / 4), self.check_deadline)

    def on_obs(self, msg: Observation) -> None:
        self.obs, self.obs_wall = msg, time.monotonic()
        self.decide_when_ready()

    def on_shielded(self, msg: SafeAction) -> None:
        self.shielded = msg
        self.decide_when_ready()

    def decide_when_ready(self) -> None:
        if self.obs is not None and self.shielded is not None and self.shielded.step == self.obs.step:
            self.decide(self.shielded.actions)

    def check_deadline(self) -> None:
        obs = self.obs
        late = obs is not None and time.monotonic() - self.obs_wall > self.input_deadline_s
        if late and obs is not None and self.decided_step < obs.step:
            self.count("input_deadline_misses")
            self.decide(None)

    def decide(self, proposed: np.ndarray | None) -> None:
        obs = self.obs
        assert obs is not None
        if self.decided_step >= obs.step:
            return
        rows = obs.positions.shape[0]
        if rows == 0 or rows % self.agents:
            self.count("rejected.positions")  # no state to decide on: the env's own deadline fallback acts
            self.log.warning("rejected", field="positions",
                             reason=f"expected a multiple of {self.agents} rows (bodies per arena), got {rows}")
            return
        arenas = rows // self.agents
        while len(self.couplers) < arenas:
            self.couplers.append(Coupler(self.coupler_cfg, self.step_len))
        self.decided_step = obs.step
        if proposed is not None and proposed.shape != (rows, 2):
            self.count("rejected.actions")
            self.log.warning("rejected", field="actions", reason=f"expected shape ({rows}, 2), got {proposed.shape}")
            proposed = None
        stale = proposed is None
        version = 0 if stale or self.shielded is None else self.shielded.policy_version
        proposed = np.zeros((rows, 2), np.float32) if proposed is None else proposed
        if (not self.enabled or self.bypass) and not stale:
            self.count("bypassed_steps")
            self.publish(obs.step, proposed, np.zeros(rows, np.uint8), [""] * rows, proposed, version)
            return
        actions = np.empty((rows, 2), np.float32)
        mode = np.full(rows, MODE_PASS, np.uint8)
        internal = obs.internal
        for i, coupler in enumerate(self.couplers[:arenas]):
            arena = slice(i * self.agents, (i + 1) * self.agents)
            pos = obs.positions[arena]
            A, b = hazard_rows(pos, self.layout.hazard_centres, self.layout.hazard_radii, self.step_len,
                               coupler.cfg.gamma)  # fmt: skip
            priority = None
            if internal is not None and internal.shape[1] == 3 and np.isfinite(internal[arena]).all():
                h = internal[arena]
                priority = np.minimum(np.minimum(h[:, 0], 1.0 - h[:, 1]), h[:, 2])
            d = coupler.step(pos, np.nan_to_num(proposed[arena], nan=0.0, posinf=0.0, neginf=0.0), A, b, priority)
            actions[arena] = d.actions
            mode[arena] = np.where(d.fallback, MODE_FALLBACK, np.where(d.intervened, MODE_FILTERED, MODE_PASS))
        constraint = ["coupler_fallback" if m == MODE_FALLBACK else "separation" if m == MODE_FILTERED else ""
                      for m in mode.tolist()]  # fmt: skip
        self.publish(obs.step, actions, mode, constraint, proposed, version)

    def publish(self, step: int, actions: np.ndarray, mode: np.ndarray, constraint: list[str],
                proposed: np.ndarray, version: int) -> None:  # fmt: skip
        """``action/safe``, with the policy version of the shields' actions it answers."""
        nan = np.full(len(mode), np.nan, np.float32)
        self.safe_pub.publish(SafeAction(step=step, actions=actions, mode=mode, constraint=constraint,
                                         margin_before=nan, margin_after=nan, proposed=proposed,
                                         policy_version=version), step=step)

    def refresh(self) -> None:
        """The couplers' counts, summed over arenas, as gauges (telemetry's `coupler.*`)."""
        for key in COUNTS:
            self.gauge(f"coupler.{key}", sum(c.counts[key] for c in self.couplers))
