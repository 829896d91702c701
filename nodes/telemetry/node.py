"""TelemetryNode: collects every node's ``/metrics`` and serves, forwards and keeps them.

* Prometheus: ``http://<bind_host>:<port>/metrics`` (port 0: a free one), printed at start, logged,
  exposed by the ``telemetry.address`` service and written as a file_sd target file into the run
  directory (``prometheus_targets.json``) so a Prometheus server finds whichever port was bound.
* History: a bounded, downsampled series per (node, metric), written to ``<run_dir>/metrics.jsonl``
  every ``flush_period_s`` and at shutdown (read it with ``nodes.telemetry.history.load_history``).
* MQTT (``mqtt_host`` set): each node's snapshot as JSON on ``<mqtt_prefix>/<run_id>/<node>/metrics``.
* ``telemetry.snapshot``: the latest value of every series, for ``persist telemetry`` and scripts.
* From the shield's reports and the env's episode events it derives labelled counters
  (``persist_reported_shield_interventions_total{mode,cause}``, ``persist_reported_episodes_total{outcome,cause}``).
"""

from __future__ import annotations

import fnmatch
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from nodes.telemetry.history import Series, SeriesHistory, freeze, write_history
from nodes.telemetry.mqtt_bridge import MqttBridge
from nodes.telemetry.prometheus import PrometheusEndpoint, Snapshot, write_file_sd
from persist_rt import Node, Param, ParamError
from persist_rt.node import METRICS_TOPIC
from protocols import EpisodeEvents, Metrics, ShieldReport

TARGETS_FILE = "prometheus_targets.json"


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else "must be even (the history halves its resolution when full)"


class TelemetryNode(Node):
    kind = "telemetry"

    port = Param(0, "Prometheus HTTP port; 0 picks a free port", ge=0, le=65535, read_only=True)
    bind_host = Param("127.0.0.1", "address the Prometheus endpoint listens on", read_only=True)
    history_file = Param("metrics.jsonl", "history file name inside the run directory; empty: keep none",
                         read_only=True)
    history_capacity = Param(2048, "points kept per series before halving its resolution", ge=4,
                             validate=_even, read_only=True)
    flush_period_s = Param(10.0, "seconds between history writes", gt=0, read_only=True)
    max_series = Param(20000, "series kept at most; further ones are counted and ignored", ge=1)
    file_sd_dir = Param("", "also write <dir>/persist-<run_id>.json for a Prometheus file_sd glob", read_only=True)
    shield_report_topic = Param("shield/report", "ShieldReport topic to derive interventions from; empty: off",
                                read_only=True)
    episodes_topic = Param("env/episodes", "EpisodeEvents topic to derive episode counts from; empty: off",
                           read_only=True)
    mqtt_host = Param("", "MQTT broker host; empty: no MQTT bridge", read_only=True)
    mqtt_port = Param(1883, "MQTT broker port", ge=1, le=65535, read_only=True)
    mqtt_prefix = Param("persist", "MQTT topic prefix", read_only=True)
    run_id = Param("", "run id for MQTT topics and labels; empty: $PERSIST_RUN_ID or the run directory's name",
                   read_only=True)

    def on_configure(self) -> None:
        self.run_label = self.run_id or os.environ.get("PERSIST_RUN_ID") or (
            self.run_dir.name if self.run_dir else "local")
        self.snapshot = Snapshot()
        self.history: dict[tuple[str, str], SeriesHistory] = {}
        self._derived_series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        # one writer thread for the whole run (a thread per write would show as thread churn in a soak), fed one
        # frozen history at a time; None stops it
        self._to_write: queue.Queue[list[Series] | None] = queue.Queue(maxsize=1)
        self._writer: threading.Thread | None = None
        self._writes = [0, 0]  # done, failed: written by the writer thread, read by the executor
        try:
            self.endpoint = PrometheusEndpoint(self.snapshot, self.bind_host, self.port)
        except OSError as exc:
            raise ParamError("port", f"cannot serve on {self.bind_host}:{self.port}: {exc.strerror or exc}") from None
        self.gauge("telemetry.port", self.endpoint.port)
        print(f"[{self.name}] prometheus endpoint {self.endpoint.url}", flush=True)
        self.log.info("prometheus_endpoint", url=self.endpoint.url, port=self.endpoint.port)
        self.targets_files = self._write_targets()

        self.bridge: MqttBridge | None = None
        if self.mqtt_host:
            self.bridge = MqttBridge(self.mqtt_host, self.mqtt_port, prefix=self.mqtt_prefix, run_id=self.run_label,
                                     client_id=f"persist-{self.run_label}-{self.name}-{os.getpid()}")
            self.log.info("mqtt_bridge", host=self.mqtt_host, port=self.mqtt_port,
                          topic=f"{self.mqtt_prefix}/{self.run_label}/<node>/metrics")

        self.subscribe(METRICS_TOPIC, Metrics, self.on_metrics, qos="queue(1024)")
        self.report_sub = self.subscribe(self.shield_report_topic, ShieldReport, self.on_shield_report,
                                         qos="queue(256)") if self.shield_report_topic else None
        self.episodes_sub = self.subscribe(self.episodes_topic, EpisodeEvents, self.on_episodes,
                                           qos="queue(256)") if self.episodes_topic else None
        self.timer(self.flush_period_s, self.write_history)
        self.service("telemetry.address", lambda args: self.address(), read_only=True)
        self.service("telemetry.snapshot", self.snapshot_service, read_only=True)

    # --- inputs ---------------------------------------------------------------------------

    def on_metrics(self, msg: Metrics) -> None:
        now = time.time()
        self.snapshot.update(msg.node, msg.counters, msg.gauges, now)
        self.count("telemetry.metrics_received")
        for kind, values in (("counter", msg.counters), ("gauge", msg.gauges)):
            for key, value in values.items():
                self._record(msg.node, key, kind, now, float(value))
        self.gauge("telemetry.series", len(self.history))
        if self.bridge is not None:
            self.bridge.publish(msg.node, {"run_id": self.run_label, "node": msg.node, "ts": round(now, 3),
                                           "counters": msg.counters, "gauges": msg.gauges})
            self.counters["mqtt.published"] = float(self.bridge.published)
            self.counters["mqtt.publish_failures"] = float(self.bridge.failures)
            self.gauge("mqtt.connected", self.bridge.connected)

    def on_shield_report(self, msg: ShieldReport) -> None:
        sender = self._sender(self.report_sub)
        for mode, cause in zip(msg.mode, msg.cause, strict=True):
            self._derive("persist_reported_shield_interventions", {"node": sender, "mode": mode, "cause": cause})

    def on_episodes(self, msg: EpisodeEvents) -> None:
        sender = self._sender(self.episodes_sub)
        now = time.time()
        for length, ret, died, cause in zip(msg.length.tolist(), msg.ret.tolist(), msg.died.tolist(), msg.cause,
                                            strict=True):
            self._derive("persist_reported_episodes",
                         {"node": sender, "outcome": "died" if died else "cap", "cause": cause})
            self._record(sender, "episode.length", "gauge", now, float(length))
            self._record(sender, "episode.return", "gauge", now, float(ret))

    # --- outputs --------------------------------------------------------------------------

    def address(self) -> dict[str, Any]:
        return {"url": self.endpoint.url, "host": self.endpoint.host, "port": self.endpoint.port,
                "targets_files": [str(p) for p in self.targets_files], "run_id": self.run_label,
                "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port, "connected": self.bridge.connected}
                if self.bridge else None}

    def snapshot_service(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"filter": glob?}`` -> ``{"ts", "series": [{node, name, type, value, age_s}]}``."""
        pattern = args.get("filter")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError("field `filter` must be a string (a glob over `node.metric`)")
        now = time.time()
        rows = []
        for node, snap in sorted(self.snapshot.nodes().items()):
            for kind, values in (("counter", snap.counters), ("gauge", snap.gauges)):
                for name, value in sorted(values.items()):
                    if pattern and not fnmatch.fnmatchcase(f"{node}.{name}", pattern):
                        continue
                    rows.append({"node": node, "name": name, "type": kind, "value": value,
                                 "age_s": round(now - snap.received_at, 3)})
        return {"ts": now, "run_id": self.run_label, "series": rows}

    def write_history(self, wait: bool = False) -> None:
        """Copy the series here, write them in the writer thread: a large history never stalls the executor."""
        if not self.history_file or self.run_dir is None:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, args=(self.run_dir / self.history_file,),
                                            name="telemetry-history", daemon=True)
            self._writer.start()
        if not wait and self._to_write.full():
            self.count("telemetry.history_writes_skipped")  # the previous write is still going
            return
        self._to_write.put(freeze(self.history))
        if wait:
            self._to_write.join()
        self.counters["telemetry.history_writes"] = float(self._writes[0])
        self.counters["telemetry.history_write_errors"] = float(self._writes[1])

    def _write_loop(self, path: Path) -> None:
        """The writer thread: touches nothing but the file and its own tallies."""
        while (series := self._to_write.get()) is not None:
            try:
                write_history(path, self.run_label, series)
                self._writes[0] += 1
            except OSError as exc:
                self._writes[1] += 1
                self.log.error("history_write_failed", path=str(path), error=str(exc))
            finally:
                series = None  # the copy goes now, not when the next write comes (it is as long as the history)
                self._to_write.task_done()
        self._to_write.task_done()

    def on_shutdown(self) -> None:
        try:
            if hasattr(self, "history"):
                self.write_history(wait=True)
                if self._writer is not None:
                    self._to_write.put(None)
                    self._writer.join(timeout=10.0)
        finally:
            if hasattr(self, "endpoint"):
                self.endpoint.close()
            if getattr(self, "bridge", None) is not None:
                self.bridge.close()
            if self.file_sd_dir and getattr(self, "targets_files", None):
                self.targets_files[-1].unlink(missing_ok=True)  # this run stops being a scrape target

    # --- internals ------------------------------------------------------------------------

    def _record(self, node: str, name: str, kind: str, now: float, value: float) -> None:
        series = self.history.get((node, name))
        if series is None:
            if len(self.history) >= self.max_series:
                self.count("telemetry.series_dropped")
                return
            series = self.history[(node, name)] = SeriesHistory(kind, self.history_capacity)
        series.add(now, value)

    def _derive(self, family: str, labels: dict[str, str]) -> None:
        key = (family, tuple(sorted(labels.items())))
        if key not in self._derived_series:
            if len(self._derived_series) >= self.max_series:
                self.count("telemetry.series_dropped")
                return
            self._derived_series.add(key)
        self.snapshot.add_derived(family, labels)

    @staticmethod
    def _sender(sub: Any) -> str:
        header = sub.last_header if sub is not None else None
        return header.sender if header is not None else "?"

    def _write_targets(self) -> list[Path]:
        target = f"{self.endpoint.host}:{self.endpoint.port}"
        labels = {"run_id": self.run_label, "telemetry_node": self.name}
        files = []
        if self.run_dir is not None:
            files.append(self.run_dir / TARGETS_FILE)
        if self.file_sd_dir:
            files.append(Path(self.file_sd_dir) / f"persist-{self.run_label}.json")
        for path in files:
            write_file_sd(path, target, labels)
        return files
