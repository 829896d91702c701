"""Node metric keys as Prometheus metric names and labels.

Nodes name metrics freely with dots (``shield.fallback``, ``edge.action/safe.dropped``). Prometheus
wants ``[a-zA-Z_:][a-zA-Z0-9_:]*``, so keys become ``persist_<key>`` with every other character
turned into ``_``. Per-edge counters ``edge.<topic>.<what>`` become one family per ``<what>`` with a
``topic`` label, so one alert or panel covers every topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "persist_"
_INVALID = re.compile(r"[^a-zA-Z0-9_]+")
_INVALID_LABEL_VALUE = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class PromName:
    name: str  # family name, without the `_total` suffix Prometheus adds to counters
    labels: dict[str, str] = field(default_factory=dict)


def sanitise(key: str) -> str:
    """``a.b/c-d`` -> ``a_b_c_d``: runs of characters Prometheus refuses become one underscore."""
    name = _INVALID.sub("_", key).strip("_")
    return name or "unnamed"


def prometheus_name(key: str) -> PromName:
    """The Prometheus family and extra labels for one node metric key."""
    if key.startswith("edge.") and key.count(".") >= 2:
        topic, _, what = key[len("edge."):].rpartition(".")
        return PromName(f"{PREFIX}edge_{sanitise(what)}", {"topic": _INVALID_LABEL_VALUE.sub("", topic)})
    return PromName(f"{PREFIX}{sanitise(key)}")
