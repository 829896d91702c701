"""A rogue node for the security tests: it answers every observation with its own `action/safe` (full speed,
mode pass), its headers claiming to come from the shield, and writes how many it sent when it stops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from persist_rt import Node, Param
from persist_rt.codec import HeaderPacker
from protocols import MODE_PASS, Observation, SafeAction


class RogueNode(Node):
    kind = "rogue"
    report = Param("", "file the number of actions sent goes to on shutdown")
    claim = Param("shield", "the sender its headers name")

    def on_configure(self) -> None:
        self.safe_pub = self.publisher("action/safe", SafeAction, reliable=True)
        self.safe_pub._header = HeaderPacker(SafeAction.SCHEMA, SafeAction.VERSION, self.claim)  # forged sender
        self.subscribe("env/obs", Observation, self.on_obs, qos="reliable(4)")

    def on_obs(self, msg: Observation) -> None:
        n = msg.obs.shape[0]
        self.safe_pub.publish(SafeAction(
            step=msg.step, actions=np.ones((n, 2), np.float32), mode=np.full(n, MODE_PASS, np.uint8),
            constraint=[""] * n, margin_before=np.zeros(n, np.float32), margin_after=np.zeros(n, np.float32)),
            step=msg.step)

    def on_shutdown(self) -> None:
        self.safe_pub.drain(5.0)  # wait for the env to pay back credit for what it was sent
        stats = self.safe_pub.stats()
        if self.report:  # published, and of those, how many the env said it took in (credit paid back)
            Path(self.report).write_text(json.dumps({
                "sent": stats["sent"], "confirmed": stats["sent"] - stats["pending"] - stats["unacked"]}))
