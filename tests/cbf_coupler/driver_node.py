"""A stand-in for the multi-agent env and its shields: two bodies heading through each other, a station they
share, and now and then a request for a station that does not exist."""

from __future__ import annotations

import numpy as np

from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import MODE_PASS, Observation, SafeAction, StationGrants, StationRequests

STEP_LEN = 0.1  # dt * vmax of the default world


class MultiDriver(Node):
    steps = Param(80, "steps to drive", ge=1)
    min_separation = Param(0.4, "must match the coupler's", gt=0)
    bad_every = Param(10, "every so many steps the request names station 99", ge=1)

    def on_configure(self) -> None:
        self.pos = np.array([[3.0, 5.0], [4.2, 5.0]])
        self.goals = self.pos[::-1].copy()
        self.step = 0
        self.waiting = False
        self.obs_pub = self.publisher("env/obs", Observation, reliable=True)
        self.act_pub = self.publisher("action/shielded", SafeAction, reliable=True)
        self.req_pub = self.publisher("allocator/requests", StationRequests, reliable=True)
        self.subscribe("action/safe", SafeAction, self.on_safe, qos=LOCKSTEP)
        self.subscribe("allocator/grants", StationGrants, self.on_grants, qos=LOCKSTEP)
        self.gauge("min_gap", float(np.linalg.norm(self.pos[0] - self.pos[1]) - self.min_separation))
        self.timer(0.01, self.tick)

    def tick(self) -> None:
        if self.waiting or self.step >= self.steps:
            return
        if any(p.stats()["reliable_peers"] < 1 for p in (self.obs_pub, self.act_pub, self.req_pub)):
            return  # a step sent before its readers are connected would never be answered
        heading = self.goals - self.pos
        proposals = (heading / np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)).astype(np.float32)
        self.obs_pub.publish(Observation(step=self.step, obs=np.zeros((2, 4), np.float32), positions=self.pos.copy(),
                                         episode_step=np.full(2, self.step, np.int64),
                                         internal=np.array([[0.5, 0.4, 1.0], [0.8, 0.4, 1.0]])))  # fmt: skip
        nan = np.full(2, np.nan, np.float32)
        self.act_pub.publish(SafeAction(step=self.step, actions=proposals, mode=np.zeros(2, np.uint8),
                                        constraint=["", ""], margin_before=nan, margin_after=nan))  # fmt: skip
        bad = self.step % self.bad_every == self.bad_every - 1
        self.req_pub.publish(StationRequests(step=self.step, station=np.array([0, 99 if bad else 0], np.int64),
                                             demand=np.array([1.0, 1.0], np.float32),
                                             margin=np.array([0.2, 0.5], np.float32)))  # fmt: skip
        self.waiting = True

    def on_safe(self, msg: SafeAction) -> None:
        if msg.step != self.step:
            return
        self.pos = self.pos + STEP_LEN * msg.actions.astype(np.float64)
        gap = float(np.linalg.norm(self.pos[0] - self.pos[1]) - self.min_separation)
        self.gauge("min_gap", min(self.gauges["min_gap"], gap))
        self.gauge("goal_error", float(np.abs(self.pos - self.goals).max()))
        self.count("steps")
        self.count("coupled", int((msg.mode != MODE_PASS).sum()))
        self.step += 1
        self.waiting = False

    def on_grants(self, msg: StationGrants) -> None:
        self.count("grants")
        self.gauge("grant_sum_max", max(self.gauges.get("grant_sum_max", 0.0), float(msg.grants.sum())))
        self.gauge("grant_first", float(msg.grants[0]))
        self.gauge("jain_index", msg.jain_index)
