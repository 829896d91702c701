"""Metrics to an MQTT broker: one JSON message per node snapshot on ``<prefix>/<run_id>/<node>/metrics``.

paho's network loop runs in its own thread (``loop_start``); ``connect_async`` never waits for the
broker and QoS-0 publishes only queue bytes for that thread, so the executor never blocks on the
network. A publish the client refuses (not connected, queue full) is counted as a failure and dropped.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

_FORBIDDEN_IN_TOPIC = str.maketrans({"+": "_", "#": "_", "\x00": "_"})


def metrics_topic(prefix: str, run_id: str, node: str) -> str:
    parts = [p.translate(_FORBIDDEN_IN_TOPIC).strip("/") or "_" for p in (prefix, run_id, node)]
    return "/".join([*parts, "metrics"])


class MqttBridge:
    def __init__(self, host: str, port: int, *, prefix: str, run_id: str, client_id: str,
                 max_queued: int = 1000, keepalive_s: int = 30) -> None:
        self.prefix = prefix
        self.run_id = run_id
        self.published = 0
        self.failures = 0
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(host, port, keepalive=keepalive_s)
        self.client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, node: str, payload: dict[str, Any]) -> bool:
        """Hand one message to paho's thread; False (and counted) when it cannot be sent now."""
        if not self._connected.is_set():
            self.failures += 1
            return False
        body = json.dumps(payload, allow_nan=True, separators=(",", ":"))
        info = self.client.publish(metrics_topic(self.prefix, self.run_id, node), body, qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.failures += 1
            return False
        self.published += 1
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connected.clear()
