"""A node that stands in for the shield and the env: it publishes their reports at a fixed rate."""

from __future__ import annotations

import numpy as np

from persist_rt import Node, Param
from protocols import EpisodeEvents, ShieldReport


class Reporter(Node):
    rate_hz = Param(10.0, "reports per second", gt=0)

    def on_configure(self) -> None:
        self.reports = self.publisher("shield/report", ShieldReport)
        self.episodes = self.publisher("env/episodes", EpisodeEvents)
        self.step = 0
        self.timer(1.0 / self.rate_hz, self.tick)

    def tick(self) -> None:
        self.step += 1
        # each step: one arena filtered on energy, one on the stale-input fallback
        self.reports.publish(ShieldReport(step=[self.step] * 2, arena=[0, 1], mode=["filtered", "fallback"],
                                          cause=["energy", "stale"], margin_before=[-0.1, 0.0],
                                          margin_after=[0.0, 0.2], proposed=[[1.0, 0.0], [0.0, 1.0]],
                                          safe=[[0.5, 0.0], [0.0, 0.0]]))
        # each step: arena 2 dies of heat after `step` steps
        self.episodes.publish(EpisodeEvents(step=self.step, arena=np.array([2]), length=np.array([self.step]),
                                            ret=np.array([1.5], np.float32), task_return=np.array([1.0], np.float32),
                                            died=np.array([True]), cause=["temperature"]))
