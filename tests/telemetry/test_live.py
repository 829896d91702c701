"""The telemetry node in a live graph: Prometheus over HTTP, MQTT to a real broker, the CLI, the history."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodes.telemetry.history import load_history
from persist_rt import services
from tests.runtime.conftest import REPO, eventually
from tests.telemetry.conftest import OPS, RUN_ID, Live, persist_telemetry, require_tool

NAME = re.compile(r"^persist_[a-zA-Z0-9_]+$")


def scrape(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=3) as response:
        assert response.status == 200
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, object], family: str, **labels: str) -> float | None:
    fam = families.get(family)
    for s in getattr(fam, "samples", []):
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created"):
            return float(s.value)
    return None


def test_endpoint_address_is_printed_served_and_written_for_prometheus(live: Live) -> None:
    address = eventually(live.address, what="telemetry.address")
    assert address["port"] > 0 and address["url"] == f"http://127.0.0.1:{address['port']}/metrics"
    assert f"prometheus endpoint {address['url']}" in live.telemetry.output()
    for path in (live.run_dir / "prometheus_targets.json", live.file_sd_dir / f"persist-{RUN_ID}.json"):
        targets = json.loads(path.read_text())
        assert targets == [{"targets": [f"127.0.0.1:{address['port']}"],
                            "labels": {"run_id": RUN_ID, "telemetry_node": "telemetry"}}]


def test_prometheus_endpoint_serves_the_talkers_growing_counter(live: Live) -> None:
    url = eventually(live.address, what="telemetry.address")["url"]
    first = eventually(lambda: sample(scrape(url), "persist_edge_sent", node="t", topic="chatter"),
                       what="the talker's sent counter on /metrics")
    families = scrape(url)
    assert families["persist_edge_sent"].type == "counter"
    assert families["persist_restarts"].type == "gauge"
    assert sample(families, "persist_restarts", node="t") == 0.0
    assert sample(families, "persist_node_metrics_age_seconds", node="t") is not None
    assert all(NAME.match(name) for name in families), sorted(n for n in families if not NAME.match(n))
    eventually(lambda: (sample(scrape(url), "persist_edge_sent", node="t", topic="chatter") or 0) > first,
               what="the sent counter to grow")


def test_shield_reports_and_episodes_become_labelled_counters(live: Live) -> None:
    url = eventually(live.address, what="telemetry.address")["url"]

    def derived() -> dict[str, object] | None:
        families = scrape(url)
        return families if sample(families, "persist_reported_episodes", node="reporter") else None

    families = eventually(derived, what="counters derived from the reporter")
    fallback = sample(families, "persist_reported_shield_interventions", node="reporter", mode="fallback",
                      cause="stale")
    filtered = sample(families, "persist_reported_shield_interventions", node="reporter", mode="filtered",
                      cause="energy")
    assert fallback is not None and filtered is not None and fallback >= 1 and abs(fallback - filtered) <= 1
    assert sample(families, "persist_reported_episodes", node="reporter", outcome="died", cause="temperature")
    assert families["persist_reported_episodes"].type == "counter"


def test_snapshot_service_returns_latest_values_filtered(live: Live) -> None:
    rows = eventually(lambda: live.graph.call("telemetry", "telemetry.snapshot", filter="t.*")["series"],
                      what="a snapshot with the talker")
    assert {r["node"] for r in rows} == {"t"}
    sent = next(r for r in rows if r["name"] == "edge.chatter.sent")
    assert sent["type"] == "counter" and sent["value"] > 0
    everything = live.graph.call("telemetry", "telemetry.snapshot")["series"]
    assert {"t", "telemetry"} <= {r["node"] for r in everything}
    with pytest.raises(services.ServiceError, match="filter"):
        live.graph.call("telemetry", "telemetry.snapshot", filter=3)


def test_mqtt_bridge_publishes_json_metrics_to_a_real_broker(live: Live) -> None:
    got: queue.Queue[tuple[str, dict]] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="telemetry-test-subscriber")
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"persist/{RUN_ID}/+/metrics")
    client.on_message = lambda c, u, m: got.put((m.topic, json.loads(m.payload)))
    client.connect("127.0.0.1", live.broker_port)
    client.loop_start()
    try:
        def talker_message() -> dict | None:
            try:
                topic, body = got.get(timeout=0.5)
            except queue.Empty:
                return None
            return body if topic == f"persist/{RUN_ID}/t/metrics" else None

        body = eventually(talker_message, what="the talker's metrics over MQTT")
    finally:
        client.loop_stop()
        client.disconnect()
    assert body["node"] == "t" and body["run_id"] == RUN_ID
    assert body["counters"]["edge.chatter.sent"] > 0 and body["gauges"]["restarts"] == 0


def test_mqtt_publish_failures_are_counted_when_the_broker_is_absent(live: Live) -> None:
    def counters() -> dict[str, float] | None:
        rows = live.graph.call("telemetry_lonely", "telemetry.snapshot", filter="telemetry_lonely.mqtt.*")["series"]
        values = {r["name"]: r["value"] for r in rows}
        return values if values.get("mqtt.publish_failures", 0) >= 2 else None

    values = eventually(counters, what="counted MQTT failures")
    assert values["mqtt.published"] == 0
    good = live.graph.call("telemetry", "telemetry.snapshot", filter="telemetry.mqtt.published")["series"]
    assert good and good[0]["value"] > 0


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*persist_telemetry(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=20)


def test_cli_json_lines_stream_live_metrics(live: Live) -> None:
    done = run_cli("--json", "--count", "4", "--registry", live.graph.registry)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 4
    assert all({"ts", "node", "counters", "gauges"} <= set(line) for line in lines)
    assert {"t", "telemetry"} & {line["node"] for line in lines}


def test_cli_filter_and_registry_discovery_from_the_newest_run(live: Live, tmp_path: Path) -> None:
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "registry").write_text("tcp://127.0.0.1:1\n")
    (tmp_path / "runs" / "new").mkdir()
    (tmp_path / "runs" / "new" / "registry").write_text(live.graph.registry + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PERSIST_REGISTRY"}
    env["PYTHONPATH"] = str(REPO)
    done = run_cli("--json", "--count", "2", "--filter", "t.edge.*", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["node"] for line in lines] == ["t", "t"]
    assert all(set(line["counters"]) == {"edge.chatter.sent"} and not line["gauges"] for line in lines)


def test_cli_without_a_registry_says_how_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERSIST_REGISTRY"}
    env["PYTHONPATH"] = str(REPO)
    done = run_cli("--json", "--count", "1", cwd=tmp_path, env=env)
    assert done.returncode != 0 and not done.stdout
    assert "--registry" in done.stderr and "PERSIST_REGISTRY" in done.stderr and "Traceback" not in done.stderr


def test_promtool_accepts_the_config_with_the_nodes_target_file(live: Live, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    eventually(lambda: any(live.file_sd_dir.glob("*.json")), what="the file_sd target file")
    prom_dir = live.file_sd_dir.parent  # the node writes targets/ here, next to a copy of the config
    for name in ("prometheus.yml", "alerts.yml"):
        (prom_dir / name).write_text((OPS / "prometheus" / name).read_text())
    done = subprocess.run([promtool, "check", "config", str(prom_dir / "prometheus.yml")], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "does not exist" not in done.stdout + done.stderr  # the glob found the node's target file


def test_history_is_flushed_while_running_and_at_shutdown(live: Live) -> None:
    path = live.run_dir / "metrics.jsonl"

    def talker_points() -> int:
        series = load_history(path).get(("t", "edge.chatter.sent")) if path.exists() else None
        return len(series.t) if series else 0

    eventually(lambda: talker_points() >= 2, what="a periodic history flush with the talker")
    live.telemetry.kill(signal.SIGTERM)
    assert live.telemetry.wait(10) == 0
    history = load_history(path)
    sent = history[("t", "edge.chatter.sent")]
    assert sent.kind == "counter" and len(sent.t) >= 2
    assert sent.v == sorted(sent.v) and sent.v[-1] > sent.v[0]
    assert sent.t == sorted(sent.t)
    assert history[("t", "restarts")].kind == "gauge"
    lengths = history[("reporter", "episode.length")].v
    assert len(lengths) >= 2 and lengths == sorted(lengths)  # the reporter's episodes grow by one step each
    assert not (live.file_sd_dir / f"persist-{RUN_ID}.json").exists()  # no longer a scrape target
    assert (live.run_dir / "prometheus_targets.json").exists()  # the run's record stays
