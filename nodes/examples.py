"""Two tiny nodes for trying the runtime: `persist launch launch/talker_listener.yaml`."""

from __future__ import annotations

from persist_rt import Node, Param
from protocols import Text


class Talker(Node):
    rate_hz = Param(10.0, "messages per second", gt=0)
    topic = Param("chatter", "topic to publish on")

    def on_configure(self) -> None:
        self.out = self.publisher(self.topic, Text, reliable=True)
        self.timer(1.0 / self.rate_hz, self.tick)

    def tick(self) -> None:
        self.out.publish(Text(data=f"hello {self.out.seq}", seq=self.out.seq))


class Listener(Node):
    topic = Param("chatter", "topic to listen to")
    qos = Param("queue(64)", "subscription QoS")

    def on_configure(self) -> None:
        self.heard = 0
        self.subscribe(self.topic, Text, self.on_text, qos=self.qos)

    def on_text(self, msg: Text) -> None:
        self.heard += 1
        self.gauge("heard", self.heard)
