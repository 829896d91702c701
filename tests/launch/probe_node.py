"""User-written nodes for the launch tests: what a user would put in their own file."""

from __future__ import annotations

import json

from persist_rt import Node, Param
from protocols import Text


class Probe(Node):
    """Listens to `chatter` and republishes what it heard on `probe/heard`."""

    source = Param("chatter", "topic to listen to")

    def on_configure(self) -> None:
        self.heard = 0
        self.out = self.publisher("probe/heard", Text)
        self.subscribe(self.source, Text, self.on_text, qos="queue(16)")

    def on_text(self, msg: Text) -> None:
        self.heard += 1
        self.out.publish(Text(data=f"probe heard: {msg.data}", seq=self.heard))


class CountingJob(Node):
    """A main job with a step budget: counts to `total_steps`, writes its summary, then exits."""

    total_steps = Param(50, "steps to count", ge=1)
    seed = Param(0, "recorded in the summary", ge=0)
    fallback = Param("hold", "carried from the launch file", choices=("hold", "zero"))

    def on_configure(self) -> None:
        self.steps = 0
        self.timer(0.01, self.tick)

    def tick(self) -> None:
        self.steps += 1
        self.gauge("progress.steps", self.steps)
        self.gauge("progress.total", self.total_steps)
        if self.steps >= self.total_steps:
            assert self.run_dir is not None
            (self.run_dir / "summary.json").write_text(json.dumps(
                {"steps": self.steps, "seed": self.seed, "fallback": self.fallback}))
            self.request_stop()


class BrokenJob(Node):
    """Fails while configuring: the launch must report it and exit non-zero."""

    def on_configure(self) -> None:
        raise RuntimeError("broken on purpose")
