"""The pass-through node: forwards each proposal unchanged on ``action/safe``, for any action width.

For envs that no shield models (a Gymnasium env through kind ``gym``), this keeps the graph's rule
that the env executes nothing but ``action/safe``, while saying plainly that nothing is filtered:
every row goes out with mode ``pass`` and no margins. The env still checks every action (finite, in
[-1, 1], right shape) and counts violations by its own constraints.
"""

from __future__ import annotations

import numpy as np

from persist_rt import Node
from protocols import MODE_PASS, Observation, ProposedAction, SafeAction
from protocols.topics import ACTION_PROPOSED, ACTION_SAFE, ENV_OBS


class PassThroughNode(Node):
    kind = "passthrough"

    def on_configure(self) -> None:
        self.obs_step = -1
        self.arenas = 0
        self.safe_pub = self.publisher(ACTION_SAFE, SafeAction, reliable=True)
        # The observation says which step and how many arenas the env expects next.
        self.subscribe(ENV_OBS, Observation, self.on_obs, qos="reliable(4)")
        self.subscribe(ACTION_PROPOSED, ProposedAction, self.on_proposal, qos="reliable(4)")

    def on_obs(self, msg: Observation) -> None:
        self.obs_step, self.arenas = msg.step, msg.obs.shape[0]

    def on_proposal(self, msg: ProposedAction) -> None:
        n = msg.actions.shape[0]
        if n != self.arenas and msg.step == self.obs_step:
            self.count("rejected.proposal_shape")
            self.log.warning("proposal_rejected", step=msg.step, arenas=n, expected=self.arenas)
            return
        self.safe_pub.publish(SafeAction(
            step=msg.step, actions=msg.actions, mode=np.full(n, MODE_PASS, np.uint8), constraint=[""] * n,
            margin_before=np.full(n, np.nan, np.float32), margin_after=np.full(n, np.nan, np.float32),
            policy_version=msg.policy_version), step=msg.step)
        self.count("forwarded_steps", n)
