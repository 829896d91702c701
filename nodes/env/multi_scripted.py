"""Scripted bodies for the multi-agent graph (kind ``multi_scripted``, `--arg bodies=scripted`): every body runs
the scripted station keeper (nodes/env/scripted.py) on its own state and proposes on ``action/shielded`` for the
coupler, with no learning and no shield of its own. It takes the agent's place in the experiment protocol:
``mode`` ``train`` and ``eval`` run the keeper, ``random`` uniform actions from its own stream (the random
baseline), reset from ``seed`` each time the mode turns to random."""

from __future__ import annotations

from typing import Any

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
    mode = Param("train", "train or eval: the station keeper; random: uniform actions (the random baseline)",
                 choices=("train", "eval", "random"))
    seed = Param(0, "seed of the random baseline's stream", ge=0)

    def on_configure(self) -> None:
        self.world = MultiGridLifeConfig.from_params(self.config).world
        self.random_rng = np.random.default_rng((self.seed, 1))
        self.out = self.publisher(ACTION_SHIELDED, SafeAction, reliable=True)
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos=LOCKSTEP)
        # the experiment protocol asks which policy acts before it saves one: none here
        self.service("policy.show", lambda args: {"version": None, "source": "scripted station keeper",
                                                  "mode": self.mode}, read_only=True)

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        if name == "seed" or (name == "mode" and new == "random"):
            self.random_rng = np.random.default_rng((self.seed if name != "seed" else new, 1))

    def on_obs(self, msg: Observation) -> None:
        n = msg.positions.shape[0]
        if self.mode == "random":
            actions = self.random_rng.uniform(-1.0, 1.0, size=(n, 2))
        elif msg.internal is None or msg.internal.shape != (n, 3):
            self.count("rejected.internal")
            self.log.warning("rejected", field="internal", reason=f"expected ({n}, 3) true internal states")
            return
        else:
            actions = seek_station_policy(np.array(msg.positions), np.array(msg.internal), np.zeros((n, 0, 2)),
                                          self.world)  # fmt: skip
        nan = np.full(n, np.nan, np.float32)
        self.out.publish(SafeAction(step=msg.step, actions=actions.astype(np.float32), mode=np.zeros(n, np.uint8),
                                    constraint=[""] * n, margin_before=nan, margin_after=nan), step=msg.step)
