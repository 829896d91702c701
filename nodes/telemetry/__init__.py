"""The telemetry node: every node's metrics on a Prometheus endpoint, over MQTT, and in the run's history."""
