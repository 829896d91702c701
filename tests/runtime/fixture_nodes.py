"""Small nodes the runtime tests start as real processes (``tests/runtime/fixture_nodes.py:Class``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from persist_rt import Node, Param
from protocols import Observation, Text


class Source(Node):
    """Sends slow probes until asked for a burst; the probes after a burst reveal any loss at its tail."""

    heartbeat_s = 0.2
    topic = Param("chatter", "topic to publish on")
    reliable = Param(False, "offer reliable delivery")
    buffer = Param(1024, "reliable per-peer buffer", ge=1)
    coalesce = Param(1, "messages per send to reliable peers", ge=1)
    probe_hz = Param(50.0, "probe rate", gt=0)

    def on_configure(self) -> None:
        self.out = self.publisher(self.topic, Text, reliable=self.reliable, buffer=self.buffer,
                                  coalesce=self.coalesce)
        self.probing = True
        self.timer(1.0 / self.probe_hz, self.probe)
        self.service("burst", self.burst)
        self.service("stop", self.stop_probes)

    def probe(self) -> None:
        if self.probing:
            self.out.publish(Text(data="probe", seq=self.out.seq + 1))

    def burst(self, args: dict[str, Any]) -> dict[str, int]:
        first = self.out.seq + 1
        data = "burst" + "." * int(args.get("pad", 0))
        for _ in range(int(args["n"])):
            self.out.publish(Text(data=data, seq=self.out.seq + 1))
        return {"first": first, "last": self.out.seq}

    def stop_probes(self, args: dict[str, Any]) -> dict[str, int]:
        self.probing = False
        return {"sent": self.out.seq}


class Sink(Node):
    """Counts what its callback gets; burst messages can be made slow to consume."""

    heartbeat_s = 0.2
    topic = Param("chatter", "topic to subscribe to")
    qos = Param("queue", "latest, queue(N) or reliable(N)")
    delay_s = Param(0.0, "time spent on each burst message", ge=0)
    pause_s = Param(0.0, "time spent on the first burst message (lets transport buffers overflow)", ge=0)
    record = Param("", "file that gets each consumed sequence number, one a line (survives kill -9)")

    def on_configure(self) -> None:
        self.sub = self.subscribe(self.topic, Text, self.on_msg, qos=self.qos)
        self.seqs: list[int] = []
        self.service("seen", self.seen)
        self.record_fd = os.open(self.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if self.record else None

    def on_msg(self, msg: Text) -> None:
        assert self.sub.last_header is not None
        self.seqs.append(self.sub.last_header.seq)
        if self.record_fd is not None:
            os.write(self.record_fd, f"{self.sub.last_header.seq}\n".encode())
        if msg.data.startswith("burst"):
            time.sleep(self.pause_s + self.delay_s)
            self.pause_s = 0.0

    def seen(self, args: dict[str, Any]) -> dict[str, Any]:
        ordered = all(a < b for a, b in zip(self.seqs, self.seqs[1:], strict=False))
        return {"count": len(self.seqs), "first": self.seqs[0] if self.seqs else None,
                "last": self.seqs[-1] if self.seqs else None, "ordered": ordered}


class Finisher(Node):
    """Publishes ``n`` reliable messages in one go, then ends its run at once: close() must drain them."""

    heartbeat_s = 0.2
    n = Param(300, "messages to publish before stopping", ge=1)

    def on_configure(self) -> None:
        self.out = self.publisher("chatter", Text, reliable=True, buffer=100_000)
        self.timer(0.05, self.finish)

    def finish(self) -> None:
        if not self.out.matched():
            return
        for _ in range(self.n):
            self.out.publish(Text(data="burst", seq=self.out.seq + 1))
        self.request_stop()


class ObservationSink(Node):
    """Subscribes to observations with a small message limit, for the bad-input tests."""

    heartbeat_s = 0.2
    max_message_bytes = 1024 * 1024
    qos = Param("queue(100000)", "subscription QoS")

    def on_configure(self) -> None:
        self.received: list[int] = []
        self.sub = self.subscribe("obs", Observation, self.on_obs, qos=self.qos)
        self.service("steps", lambda a: list(self.received))

    def on_obs(self, msg: Observation) -> None:
        self.received.append(msg.step)


class Managed(Node):
    """Records its lifecycle hooks and parameter changes; has a slow service and validated parameters."""

    heartbeat_s = 0.2
    rate_hz = Param(20.0, "tick rate", gt=0, le=1000)
    mode = Param("calm", "behaviour", choices=["calm", "eager"])
    refuse_above = Param(100, "on_param_change refuses a `limit` above this")
    limit = Param(10, "a value the node vets itself", ge=0)
    seed = Param(0, "fixed once configured", read_only=True)
    marker = Param("", "file on_shutdown writes")

    def on_configure(self) -> None:
        self.hooks = ["configure"]
        self.changes: list[list[Any]] = []
        self.ticks = 0
        self.timer(1.0 / self.rate_hz, self.tick)
        self.service("slow", self.slow)
        self.service("record", lambda a: {"hooks": self.hooks, "changes": self.changes, "ticks": self.ticks})

    def tick(self) -> None:
        self.ticks += 1

    def slow(self, args: dict[str, Any]) -> str:
        deadline = time.monotonic() + float(args.get("s", 1.0))
        while time.monotonic() < deadline:
            time.sleep(0.02)
            if args.get("keep_alive"):
                self.keep_alive()
        return "done"

    def on_activate(self) -> None:
        self.hooks.append("activate")

    def on_deactivate(self) -> None:
        self.hooks.append("deactivate")

    def on_cleanup(self) -> None:
        self.hooks.append("cleanup")

    def on_shutdown(self) -> None:
        if self.marker:
            Path(self.marker).write_text(f"shutdown from {self.state}\n")

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        if name == "limit" and new > self.refuse_above:
            raise ValueError(f"{new} is more than this node can handle")
        self.changes.append([name, old, new])

