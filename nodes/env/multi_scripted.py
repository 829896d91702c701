"""Scripted bodies for the multi-agent graph (kind ``multi_scripted``): every body runs the scripted station
keeper (nodes/env/scripted.py) on its own state and proposes on ``action/shielded`` for the coupler. It stands
in for per-body agents and shields, which the multi-agent graph does not have yet."""

from __future__ import annotations

import numpy as np

from nodes.env.multi_gridlife import MultiGridLifeConfig
from nodes.env.scripted import seek_station_policy
from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import Observation, SafeAction
from protocols.topics import ACTION_SHIELDED, ENV_OBS


class MultiScriptedNode(Node):
    kind = "multi_scripted"

    config = Param({}, "multi-agent GridLife parameters: must match the env's", read_only=True)

    def on_configure(self) -> None:
        self.world = MultiGridLifeConfig.from_params(self.config).world
        self.out = self.publisher(ACTION_SHIELDED, SafeAction, reliable=True)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos=LOCKSTEP)

    def on_obs(self, msg: Observation) -> None:
        n = msg.positions.shape[0]
        if msg.internal is None or msg.internal.shape != (n, 3):
            self.count("rejected.internal")
            return
        actions = seek_station_policy(np.array(msg.positions), np.array(msg.internal), np.zeros((n, 0, 2)), self.world)
        nan = np.full(n, np.nan, np.float32)
        self.out.publish(SafeAction(step=msg.step, actions=actions.astype(np.float32), mode=np.zeros(n, np.uint8),
                                    constraint=[""] * n, margin_before=nan, margin_after=nan), step=msg.step)
