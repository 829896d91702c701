"""Discovery: registry restart with data still flowing, liveliness leases, graceful shutdown."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from tests.runtime.conftest import Graph, eventually


def _count(g: Graph, name: str) -> int:
    return g.call(name, "seen")["count"]


def test_registry_restart_keeps_data_flowing_and_rebuilds_the_graph(graph: Graph) -> None:
    registry = graph.start_registry()
    endpoint = graph.registry
    graph.start_node("Source", "source")
    graph.start_node("Sink", "sink")
    sink_ep, source_ep = graph.endpoint("sink"), graph.endpoint("source")
    eventually(lambda: _count(graph, "sink") > 0, what="data before the restart")

    registry.kill()
    registry.wait()
    from persist_rt import services

    # peer to peer: with the registry gone, messages keep arriving
    before = services.call(sink_ep, "seen")["count"]
    eventually(lambda: services.call(sink_ep, "seen")["count"] > before + 10, what="data without a registry")

    graph.start_registry(bind=endpoint)  # same address, empty memory
    assert graph.registry == endpoint
    nodes = eventually(lambda: {"source", "sink"} <= set(graph.nodes()) and graph.nodes(), what="re-registration")
    assert nodes["source"]["endpoints"]["service"] == source_ep
    assert nodes["source"]["state"] == "active"
    # the rebuilt graph serves a newcomer
    graph.start_node("Sink", "newcomer")
    eventually(lambda: _count(graph, "newcomer") > 0, what="a subscriber that joined after the restart")
    edge = graph.stats("sink")["subscriptions"]["chatter"]
    assert edge["lost"] == 0 and edge["publishers"] == 1


def test_a_killed_node_disappears_when_its_lease_runs_out(graph: Graph) -> None:
    graph.start_registry(lease_s=1.0)
    source = graph.start_node("Source", "source")
    graph.start_node("Sink", "sink")
    eventually(lambda: _count(graph, "sink") > 0, what="data")
    assert graph.nodes()["source"]["lease_left_s"] > 0

    source.kill(signal.SIGKILL)
    eventually(lambda: "source" not in graph.nodes(), what="the dead node's lease to expire")
    assert "sink" in graph.nodes()
    # the subscriber learns from the graph that its publisher is gone
    eventually(lambda: graph.stats("sink")["subscriptions"]["chatter"]["publishers"] == 0,
               what="the subscriber to drop the dead publisher")
    # a replacement under the same name is accepted and found again
    graph.start_node("Source", "source")
    before = _count(graph, "sink")
    eventually(lambda: _count(graph, "sink") > before, what="data from the respawned publisher")


def test_sigterm_runs_on_shutdown_and_unregisters(graph: Graph) -> None:
    graph.start_registry(lease_s=60.0)  # a lease this long cannot be what removes the node
    marker = graph.tmp / "shutdown.txt"
    node = graph.start_node("Managed", "managed", {"marker": str(marker)})
    graph.endpoint("managed")
    node.kill(signal.SIGTERM)
    assert node.wait() == 0, node.output()
    assert marker.read_text() == "shutdown from active\n"
    assert "managed" not in graph.nodes()
    assert "Traceback" not in node.output()


def test_shutdown_service_ends_the_node_cleanly(graph: Graph) -> None:
    graph.start_registry(lease_s=60.0)
    marker = graph.tmp / "shutdown.txt"
    node = graph.start_node("Managed", "managed", {"marker": str(marker)})
    graph.call("managed", "lifecycle.set", state="inactive")
    assert graph.call("managed", "shutdown") == {"state": "finalizing"}
    assert node.wait() == 0, node.output()
    assert marker.read_text() == "shutdown from inactive\n"
    assert "managed" not in graph.nodes()


def test_a_long_callback_keeps_the_lease_with_keep_alive_and_loses_it_without(graph: Graph) -> None:
    """A callback that works for several leases (a learner's burst of updates) stays listed when it calls
    `keep_alive`; without it the registry drops the node until the callback returns and it registers again."""
    from persist_rt import services

    graph.start_registry(lease_s=1.0)
    graph.start_node("Managed", "managed")
    endpoint = graph.endpoint("managed")

    def listed_while(args: dict) -> list[tuple[float, bool]]:
        """(seconds into the call, listed?) sampled while the 3 s call runs."""
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(services.call(endpoint, "slow", args, timeout=15.0)))
        start = time.monotonic()
        worker.start()
        seen = []
        while worker.is_alive():
            listed = "managed" in graph.nodes()
            seen.append((time.monotonic() - start, listed))
            time.sleep(0.2)
        worker.join()
        assert result == ["done"]
        return seen

    seen = listed_while({"s": 3.0, "keep_alive": True})
    assert all(listed for _, listed in seen) and max(t for t, _ in seen) > 1.5  # still listed past its first lease
    seen = listed_while({"s": 3.0})
    assert not all(listed for _, listed in seen)  # the lease ran out during the call
    eventually(lambda: "managed" in graph.nodes(), what="the node to register again")
