"""The ops files: Prometheus config and rules checked and unit-tested by promtool, dashboard queries parsed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.telemetry.conftest import OPS, require_tool

HERE = Path(__file__).parent
DASHBOARD = OPS / "grafana" / "persist.json"
# Grafana fills these in before the query reaches Prometheus
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$run_id": ".*", "$node": ".*"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=30)
    return done


def test_prometheus_config_is_valid() -> None:
    done = promtool("check", "config", str(OPS / "prometheus" / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_are_valid_and_cover_the_failure_modes() -> None:
    done = promtool("check", "rules", str(OPS / "prometheus" / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"PersistShieldFallbackRateHigh", "PersistViolationExecuted", "PersistNodeRestarted",
            "PersistMessagesDropped", "PersistLearnerStalled"} <= alerts


def test_alert_rules_fire_on_bad_series_only() -> None:
    done = promtool("test", "rules", str(HERE / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    assert len(exprs) >= 10
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown dashboard variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "run_id", "node"} <= variables
