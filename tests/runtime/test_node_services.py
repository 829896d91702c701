"""Services with timeouts, parameters (validation, live update, callback) and lifecycle transitions."""

from __future__ import annotations

import re

import pytest

from persist_rt import services
from tests.runtime.conftest import Graph, eventually


def test_service_timeout_and_errors_leave_the_node_serving(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Managed", "managed")
    endpoint = graph.endpoint("managed")

    with pytest.raises(services.ServiceTimeout, match=r"`slow`.*0\.2 s"):
        services.call(endpoint, "slow", {"s": 1.0}, timeout=0.2)
    assert services.call(endpoint, "slow", {"s": 0.0}, timeout=3.0) == "done"
    with pytest.raises(services.ServiceError, match="unknown service 'nope'"):
        services.call(endpoint, "nope", timeout=3.0)
    with pytest.raises(services.ServiceError, match="field `state` must be a string"):
        services.call(endpoint, "lifecycle.set", {"state": 3}, timeout=3.0)
    # nobody listens here: the caller gets a timeout, not a hang
    with pytest.raises(services.ServiceTimeout):
        services.call("tcp://127.0.0.1:9", "describe", timeout=0.2)
    assert graph.stats("managed")["counters"]["rejected.service"] == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rate_hz": -1}, "parameter `rate_hz`: -1.0 must be greater than 0"),
        ({"mode": "wild"}, "parameter `mode`: 'wild' is not one of \\['calm', 'eager'\\]"),
        ({"limit": "many"}, "parameter `limit`: expected an integer, got 'many'"),
        ({"colour": 1}, "parameter `colour`: node kind Managed has no such parameter"),
    ],
)
def test_bad_start_parameters_stop_the_node_with_a_named_error(graph: Graph, params: dict, message: str) -> None:
    graph.start_registry()
    node = graph.start_node("Managed", "managed", params)
    assert node.wait() == 2
    assert re.search(message, node.output()), node.output()


@pytest.mark.parametrize("value", ["-1", "nan", "10001", "fast"])
def test_a_bad_busy_poll_stops_the_node_with_a_named_error(graph: Graph, value: str) -> None:
    graph.start_registry()
    node = graph.start_node("Managed", "managed", busy_poll_us=value)
    assert node.wait() == 2
    assert "--busy-poll-us" in node.output(), node.output()


def test_live_parameter_update_runs_the_callback_and_validates(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Managed", "managed", {"limit": "5", "rate_hz": "50"})  # strings, as from a CLI
    call = graph.call
    assert call("managed", "param.get", name="limit") == 5
    assert call("managed", "param.get", name="rate_hz") == 50.0

    assert call("managed", "param.set", name="limit", value=42) == 42
    assert call("managed", "param.set", name="mode", value="eager") == "eager"
    assert call("managed", "record")["changes"] == [["limit", 5, 42], ["mode", "calm", "eager"]]

    bad = [
        ({"name": "limit", "value": -3}, "parameter `limit`: -3 is below the minimum 0"),
        ({"name": "limit", "value": 500}, "parameter `limit`: refused by the node: 500 is more than"),
        ({"name": "mode", "value": "wild"}, "parameter `mode`: 'wild' is not one of"),
        ({"name": "seed", "value": 7}, "parameter `seed`: is read-only once the node is configured"),
        ({"name": "ghost", "value": 1}, "parameter `ghost`: no such parameter"),
        ({"name": "limit"}, "request needs fields `name` and `value`"),
    ]
    for args, message in bad:
        with pytest.raises(services.ServiceError, match=message.replace("(", r"\(")):
            call("managed", "param.set", **args)
    # refused updates left everything as it was
    assert call("managed", "param.get", name="limit") == 42
    assert call("managed", "param.get", name="seed") == 0
    assert call("managed", "record")["changes"] == [["limit", 5, 42], ["mode", "calm", "eager"]]
    listed = {p["name"]: p for p in call("managed", "param.list")}
    assert listed["limit"]["value"] == 42 and listed["seed"]["read_only"] is True


def test_lifecycle_transitions_run_hooks_and_gate_timers(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Managed", "managed", {"rate_hz": 100.0})
    call = graph.call
    assert call("managed", "lifecycle.get") == {"state": "active"}
    eventually(lambda: call("managed", "record")["ticks"] > 3, what="timer ticks while active")

    assert call("managed", "lifecycle.set", state="inactive") == {"state": "inactive"}
    ticks = call("managed", "record")["ticks"]
    # a 0.3 s service call makes a 100 Hz timer overdue; two executor turns later an active node would
    # have ticked, an inactive one has not
    call("managed", "slow", s=0.3)
    call("managed", "record")
    assert call("managed", "record")["ticks"] == ticks
    eventually(lambda: graph.nodes()["managed"]["state"] == "inactive", what="the registry to see the state")

    with pytest.raises(services.ServiceError, match="transition `deactivate` is not allowed from state inactive"):
        call("managed", "lifecycle.set", state="deactivate")
    with pytest.raises(services.ServiceError, match="unknown state or transition 'asleep'"):
        call("managed", "lifecycle.set", state="asleep")

    assert call("managed", "lifecycle.set", state="active") == {"state": "active"}
    call("managed", "slow", s=0.3)
    call("managed", "record")
    assert call("managed", "record")["ticks"] > ticks
    assert call("managed", "lifecycle.set", state="unconfigured") == {"state": "unconfigured"}
    assert call("managed", "record")["hooks"] == ["configure", "activate", "deactivate", "activate",
                                                  "deactivate", "cleanup"]
