"""Pieces of the telemetry node without processes: names, the collector, the history, parameters."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodes.telemetry.history import SeriesHistory, freeze, load_history, write_history
from nodes.telemetry.mqtt_bridge import metrics_topic
from nodes.telemetry.names import prometheus_name, sanitise
from nodes.telemetry.node import TelemetryNode
from nodes.telemetry.prometheus import Snapshot, SnapshotCollector
from persist_rt import ParamError


def test_names_are_sanitised_and_edges_become_topic_labels() -> None:
    assert sanitise("shield.fallback") == "shield_fallback"
    assert sanitise("a..b/c-d ") == "a_b_c_d"
    assert sanitise("...") == "unnamed"
    assert prometheus_name("restarts").name == "persist_restarts"
    edge = prometheus_name("edge.action/safe.dropped")
    assert edge.name == "persist_edge_dropped" and edge.labels == {"topic": "action/safe"}
    assert prometheus_name("edge./metrics.lost").labels == {"topic": "/metrics"}
    assert prometheus_name("edge.incompatible").name == "persist_edge_incompatible"


def expose(snapshot: Snapshot) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_collector_exposes_counters_gauges_and_keeps_clashing_families_apart() -> None:
    snap = Snapshot()
    snap.update("env", {"steps": 10.0, "edge.obs.sent": 5.0}, {"steps": 3.0, "energy": 0.5}, now=0.0)
    snap.update("agent", {"steps": 7.0}, {}, now=0.0)
    snap.add_derived("persist_reported_episodes", {"node": "env", "outcome": "died", "cause": "energy"}, 2)
    fams = expose(snap)
    assert fams["persist_steps"].type == "counter"
    assert {s.labels["node"]: s.value for s in fams["persist_steps"].samples if s.name.endswith("_total")} == \
        {"env": 10.0, "agent": 7.0}
    assert fams["persist_steps_gauge"].type == "gauge"  # a gauge with a counter's name elsewhere
    assert fams["persist_energy"].samples[0].value == 0.5
    assert fams["persist_edge_sent"].samples[0].labels == {"node": "env", "topic": "obs"}
    died = fams["persist_reported_episodes"].samples[0]
    assert died.labels == {"node": "env", "outcome": "died", "cause": "energy"} and died.value == 2


def test_history_stays_bounded_and_spans_the_whole_run() -> None:
    h = SeriesHistory("counter", capacity=16)
    buffers = h.t.buffer_info(), h.v.buffer_info()
    for i in range(1000):
        h.add(float(i), float(i))
    assert len(h) <= 16
    assert (h.t.buffer_info(), h.v.buffer_info()) == buffers  # the memory it took at the start, no more
    t, v = h.points()
    assert t[0] == 0.0 and t[-1] == 999.0 and v == t
    steps = {b - a for a, b in itertools.pairwise(t[:-1])}  # the last point is the newest value
    assert len(steps) == 1  # evenly downsampled
    with pytest.raises(ValueError, match="capacity"):
        SeriesHistory("gauge", capacity=5)


def test_history_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    h = SeriesHistory("gauge", capacity=8)
    for i in range(5):
        h.add(100.0 + i, i * 0.5)
    path = tmp_path / "metrics.jsonl"
    write_history(path, "run", freeze({("env", "energy"): h}))
    loaded = load_history(path)
    assert loaded[("env", "energy")].v == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert loaded[("env", "energy")].kind == "gauge"
    lines = path.read_text().splitlines()
    (tmp_path / "wrong_header.jsonl").write_text(json.dumps({"format": "other"}) + "\n")
    with pytest.raises(ValueError, match="format"):
        load_history(tmp_path / "wrong_header.jsonl")
    bad = json.loads(lines[1])
    bad["v"] = bad["v"][:-1]
    (tmp_path / "short.jsonl").write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"short\.jsonl:2: fields `t` and `v`"):
        load_history(tmp_path / "short.jsonl")
    (tmp_path / "garbage.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"garbage\.jsonl:2: not JSON"):
        load_history(tmp_path / "garbage.jsonl")


def test_mqtt_topics_never_carry_wildcards() -> None:
    assert metrics_topic("persist", "run-1", "env") == "persist/run-1/env/metrics"
    assert metrics_topic("persist", "a+b", "#") == "persist/a_b/_/metrics"


@pytest.mark.parametrize(("params", "field"), [
    ({"port": 70000}, "port"),
    ({"port": "http"}, "port"),
    ({"mqtt_port": 0}, "mqtt_port"),
    ({"history_capacity": 7}, "history_capacity"),
    ({"flush_period_s": 0}, "flush_period_s"),
    ({"prometheus_port": 1}, "prometheus_port"),
])
def test_bad_parameters_are_refused_by_name(params: dict, field: str) -> None:
    with pytest.raises(ParamError, match=f"`{field}`"):
        TelemetryNode("telemetry", params=params)


def test_a_taken_port_is_refused_by_name() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        node = TelemetryNode("telemetry", params={"port": taken.getsockname()[1]})
        try:
            with pytest.raises(ParamError, match=r"`port`: cannot serve on 127\.0\.0\.1"):
                node.transition("active")
        finally:
            node.close()


def test_history_writes_go_through_one_writer_thread(tmp_path: Path) -> None:
    node = TelemetryNode("telemetry", params={"port": 0}, run_dir=tmp_path)
    try:
        node.transition("active")
        node._record("env", "energy", "gauge", 1.0, 0.5)
        for _ in range(5):
            node.write_history(wait=True)
        writers = [t for t in threading.enumerate() if t.name == "telemetry-history"]
        assert len(writers) == 1  # the same thread for every write: no thread churn over a long run
        assert node.counters["telemetry.history_writes"] == 5
        assert load_history(tmp_path / node.history_file)[("env", "energy")].v == [0.5]
    finally:
        node.close()
    assert not any(t.name == "telemetry-history" for t in threading.enumerate())  # stopped with the node
