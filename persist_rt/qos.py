"""Quality of service, per subscription (and what a publisher offers).

* ``latest``   keep only the newest message: control loops. Superseded messages are counted.
* ``queue(N)`` bounded FIFO, drop-oldest on overflow: every drop is counted.
* ``reliable`` credit-based flow control: the subscriber grants credit, the publisher sends only
  against credit and otherwise buffers up to a bound, then blocks. Nothing is dropped.

Best-effort edges (latest, queue) ride a PUB/SUB socket pair; messages ZeroMQ drops at a
high-water mark show up as gaps in the per-topic sequence number and are counted as ``lost``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["latest", "queue", "reliable"]


@dataclass(frozen=True)
class QoS:
    kind: Kind = "queue"
    depth: int = 64  # queue length (queue) or credit window (reliable)

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "queue", "reliable"):
            raise ValueError(f"qos: unknown kind {self.kind!r} (latest, queue(N) or reliable)")
        if self.depth < 1:
            raise ValueError(f"qos: depth must be >= 1, got {self.depth}")

    @property
    def reliable(self) -> bool:
        return self.kind == "reliable"

    def __str__(self) -> str:
        return {"latest": "latest", "queue": f"queue({self.depth})", "reliable": f"reliable({self.depth})"}[
            self.kind
        ]

    @classmethod
    def parse(cls, text: str | QoS) -> QoS:
        """'latest', 'queue', 'queue(16)', 'reliable', 'reliable(256)'."""
        if isinstance(text, QoS):
            return text
        m = re.fullmatch(r"\s*(latest|queue|reliable)\s*(?:\(\s*(\d+)\s*\))?\s*", str(text))
        if not m:
            raise ValueError(f"qos: cannot parse {text!r} (expected latest, queue(N) or reliable(N))")
        kind, depth = m.group(1), m.group(2)
        if kind == "latest":
            return cls("latest", 1)
        default = 256 if kind == "reliable" else 64
        return cls(kind, int(depth) if depth else default)  # type: ignore[arg-type]


# A lockstep edge (env -> agent -> shield -> env) holds one message per step, so its window never limits it:
# it only sets how often credit flows back (every window/2 messages), and each grant wakes the publisher's
# process once more: with 64, every 32 steps. At-least-once replay to a respawned subscriber stays within half
# the window, and stale steps are dropped by step id on arrival.
LOCKSTEP = QoS("reliable", 64)


def latest() -> QoS:
    return QoS("latest", 1)


def queue(depth: int = 64) -> QoS:
    return QoS("queue", depth)


def reliable(window: int = 256) -> QoS:
    return QoS("reliable", window)


def compatible(offered_reliable: bool, requested: QoS) -> str | None:
    """None when a publisher can serve the request, else the reason (ROS 2 semantics)."""
    if requested.reliable and not offered_reliable:
        return "subscriber requests reliable, publisher offers best effort only"
    return None
