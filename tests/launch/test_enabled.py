"""The node key `enabled`: a launch argument switches a node in or out; anything but a boolean is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from persist_rt.launch import LaunchError, Overrides, load_launch
from tests.launch.conftest import ROOT

OPTIONAL = """
args:
  extra: {default: false, doc: "start the listener too"}
nodes:
  - {name: talker, kind: talker}
  - name: listener
    kind: listener
    enabled: $(arg extra)
"""


def test_enabled_follows_its_argument(tmp_path: Path) -> None:
    f = tmp_path / "optional.yaml"
    f.write_text(OPTIONAL.lstrip("\n"))
    assert [n.name for n in load_launch(f).nodes] == ["talker"]
    on = load_launch(f, Overrides(args={"extra": "true"}))
    assert [n.name for n in on.nodes] == ["talker", "listener"]
    assert "enabled" not in on.resolved()["nodes"][1]  # what runs: the key has done its job


def test_enabled_must_be_a_boolean(tmp_path: Path) -> None:
    f = tmp_path / "optional.yaml"
    f.write_text(OPTIONAL.lstrip("\n"))
    with pytest.raises(LaunchError) as info:
        load_launch(f, Overrides(args={"extra": "sometimes"}))
    err = info.value
    assert (err.line, err.field) == (7, "nodes[1] (listener).enabled")
    assert "expected true/false, got 'sometimes'" in err.reason


def test_a_dependency_on_a_disabled_node_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "dep.yaml"
    f.write_text("nodes:\n  - {name: t, kind: talker, enabled: false}\n  - {name: l, kind: listener, depends_on: [t]}\n")
    with pytest.raises(LaunchError) as info:
        load_launch(f)
    assert info.value.field == "nodes[1] (l).depends_on" and "no node named 't'" in info.value.reason


def test_single_agent_partial_observability_switches_the_estimator_path() -> None:
    path = ROOT / "launch" / "single_agent.yaml"
    full = load_launch(path)
    assert "estimator" not in [n.name for n in full.nodes]
    assert not any(full.node(n).params["use_estimate"] for n in ("agent", "shield", "learner"))
    assert full.node("env").params["config"]["partial_observability"] is False

    po = load_launch(path, Overrides(args={"partial_observability": "true"}))
    assert "estimator" in [n.name for n in po.nodes]
    # the shield certifies against the belief, the agent acts on it, the learner trains on the stream that carries it
    assert all(po.node(n).params["use_estimate"] for n in ("agent", "shield", "learner"))
    assert po.node("env").params["config"]["partial_observability"] is True
    for spec in (full, po):  # the run directory's launch.yaml and `launch --check` dump the resolved file
        again = yaml.safe_load(yaml.safe_dump(spec.resolved(), sort_keys=False))
        assert [n["name"] for n in again["nodes"]] == [n.name for n in spec.nodes]
