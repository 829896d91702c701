"""The Prometheus side: a collector over the latest snapshot, its HTTP server, and a file_sd target file.

Counters from nodes are cumulative already, so they are exposed as they are (a custom collector,
not client-library Counter objects, which can only be incremented). The HTTP server runs in the
client library's own thread; it reads the snapshot under a lock and never touches the executor.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodes.telemetry.names import PREFIX, prometheus_name


@dataclass
class NodeSnapshot:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    received_at: float = 0.0  # wall clock


class Snapshot:
    """The latest metrics of every node, shared between the executor (writer) and scrapes (readers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeSnapshot] = {}
        # labelled counters the telemetry node derives itself: (family, labels) -> value
        self._derived: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def update(self, node: str, counters: dict[str, float], gauges: dict[str, float], now: float) -> None:
        with self._lock:
            self._nodes[node] = NodeSnapshot(dict(counters), dict(gauges), now)

    def add_derived(self, family: str, labels: dict[str, str], n: float = 1.0) -> None:
        key = (family, tuple(sorted(labels.items())))
        with self._lock:
            self._derived[key] = self._derived.get(key, 0.0) + n

    def nodes(self) -> dict[str, NodeSnapshot]:
        with self._lock:
            return {n: NodeSnapshot(dict(s.counters), dict(s.gauges), s.received_at) for n, s in self._nodes.items()}

    def derived(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with self._lock:
            return dict(self._derived)


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot, static_labels: dict[str, str] | None = None) -> None:
        self.snapshot = snapshot
        self.static = dict(static_labels or {})

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        families: dict[str, tuple[str, list[str], Metric]] = {}
        counter_names: set[str] = set()
        nodes = self.snapshot.nodes()
        for snap in nodes.values():
            counter_names.update(prometheus_name(k).name for k in snap.counters)

        def add(kind: str, name: str, labels: dict[str, str], value: float, doc: str) -> None:
            if kind == "gauge" and name in counter_names:
                name = f"{name}_gauge"  # the same key is a counter elsewhere: keep the two families apart
            names = [*self.static, *labels]
            if name not in families:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                families[name] = (kind, names, cls(name, doc, labels=names))
            fam_kind, fam_names, fam = families[name]
            if fam_kind != kind or fam_names != names:
                return  # two keys sanitise to one family with other labels: the first one seen wins
            fam.add_metric([*self.static.values(), *labels.values()], value)

        for node, snap in sorted(nodes.items()):
            for kind, values in (("counter", snap.counters), ("gauge", snap.gauges)):
                for key, value in values.items():
                    pn = prometheus_name(key)
                    doc = f"per-edge metric {key.rpartition('.')[2]}" if pn.labels else f"node metric {key}"
                    add(kind, pn.name, {"node": node, **pn.labels}, value, doc)
            add("gauge", f"{PREFIX}node_metrics_age_seconds", {"node": node}, max(0.0, now - snap.received_at),
                "seconds since the node's last metrics message")
        for (name, labels), value in sorted(self.snapshot.derived().items()):
            add("counter", name, dict(labels), value, "derived by the telemetry node from the graph's reports")
        for _, _, fam in families.values():
            yield fam


class PrometheusEndpoint:
    """Serve the snapshot on ``http://host:port/metrics`` (port 0: a free port, read back after binding)."""

    def __init__(self, snapshot: Snapshot, host: str, port: int, static_labels: dict[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot, static_labels))
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_file_sd(path: Path, target: str, labels: dict[str, str]) -> None:
    """A Prometheus file_sd target file, written atomically (Prometheus re-reads it on change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: list[dict[str, Any]] = [{"targets": [target], "labels": labels}]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
