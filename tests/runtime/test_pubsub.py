"""Multi-process pub/sub for each QoS: exact accounting of every message sent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from persist_rt.transport import readable
from tests.runtime.conftest import DEADLINE_S, Graph, eventually


def _edge(g: Graph, sink: str, topic: str = "chatter") -> dict[str, Any]:
    return g.stats(sink)["subscriptions"][topic]


def _run_burst(g: Graph, n: int, sink: str = "sink", pad: int = 0) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Wait until probes flow, send a burst of ``n`` (each ``pad`` bytes longer), let probes reveal the tail, stop;
    return the books."""
    eventually(lambda: g.call(sink, "seen")["count"] > 0, what="first probe at the sink")
    burst = g.call("source", "burst", timeout=30.0, n=n, pad=pad)
    # a probe sent after the burst has arrived: every gap in the burst is now visible
    eventually(lambda: (g.call(sink, "seen")["last"] or 0) > burst["last"], what="a probe after the burst")
    sent = g.call("source", "stop")["sent"]
    eventually(lambda: g.call(sink, "seen")["last"] == sent, what="the last probe")
    return g.call(sink, "seen"), _edge(g, sink), sent


@pytest.mark.parametrize("qos", ["latest", "queue(8)"])
def test_best_effort_slow_consumer_counts_every_drop_exactly(graph: Graph, qos: str) -> None:
    graph.start_registry()
    graph.start_node("Sink", "sink", {"qos": qos, "delay_s": 0.002})
    graph.start_node("Source", "source")
    seen, edge, sent = _run_burst(graph, n=20_000)

    # every message since the sink's first one is delivered, dropped by QoS or lost in transport
    expected = sent - seen["first"] + 1
    assert seen["count"] == edge["delivered"]
    assert edge["delivered"] + edge["dropped"] + edge["lost"] == expected, edge
    assert edge["received"] == edge["delivered"] + edge["dropped"]
    assert edge["dropped"] > 0, "a consumer this slow must have dropped part of the burst"
    assert edge["rejected"] == 0 and edge["callback_errors"] == 0
    assert seen["ordered"]


def test_transport_loss_is_counted_as_lost(graph: Graph) -> None:
    # the sink stalls while 20k messages of 8 KB arrive: 160 MB, more than ZeroMQ's high-water marks (11k messages)
    # and the kernel's socket buffers (IPC or loopback TCP, tens of MB at most) can hold, so the publisher drops and
    # the sequence gaps count it. Small messages can all fit in a large socket buffer and lose nothing.
    graph.start_registry()
    graph.start_node("Sink", "sink", {"qos": "queue(1000)", "pause_s": 1.5})
    graph.start_node("Source", "source")
    seen, edge, sent = _run_burst(graph, n=20_000, pad=8192)
    assert edge["lost"] > 0, edge
    assert edge["delivered"] + edge["dropped"] + edge["lost"] == sent - seen["first"] + 1, edge
    assert seen["ordered"]


def test_queue_fast_consumer_loses_nothing(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Sink", "sink", {"qos": "queue(64)"})
    graph.start_node("Source", "source")
    seen, edge, sent = _run_burst(graph, n=2_000)
    assert edge["delivered"] + edge["dropped"] + edge["lost"] == sent - seen["first"] + 1
    assert seen["ordered"]


def test_busy_polling_nodes_lose_nothing_and_keep_their_timers(graph: Graph) -> None:
    # both poll without sleeping for up to 5 ms each turn: the source's probe timer, the heartbeats that keep
    # the registry lease and the services the test calls must all still run, and nothing may be lost
    graph.start_registry()
    graph.start_node("Sink", "sink", {"qos": "reliable(64)"}, busy_poll_us="5000")
    graph.start_node("Source", "source", {"reliable": True, "probe_hz": 400.0}, busy_poll_us="5000")
    seen, edge, sent = _run_burst(graph, n=2_000)
    assert edge["delivered"] == sent - seen["first"] + 1 and edge["dropped"] == edge["lost"] == 0
    assert seen["ordered"] and set(graph.nodes()) == {"sink", "source"}
    assert graph.stats("sink")["counters"]["busy_poll.hits"] > 0  # probes, 2.5 ms apart, came while it polled


def test_an_idle_node_polls_only_while_active_and_counts_each_budget_spent_before_sleeping() -> None:
    from persist_rt import Node

    node = Node("idle", busy_poll_us=1000, autostart=False)  # no registry, no peers: nothing ever arrives
    try:
        node.spin_once(0.005)
        assert "busy_poll.misses" not in node.counters  # not active yet: it sleeps at once
        node.transition("active")
        node.spin_once(0.0)  # no wait at all: nothing to poll for
        node.spin_once(0.0005)  # a wait shorter than the budget: polled throughout, never slept
        assert "busy_poll.misses" not in node.counters
        node.spin_once(0.05)  # 1 ms of polling, then the rest of the wait asleep (a stall of 49 ms would not sleep)
        node.spin_once(0.05)
        assert node.counters["busy_poll.misses"] == 2 and "busy_poll.hits" not in node.counters
    finally:
        node.close()


@pytest.mark.parametrize("bad", [-1, 10_001, float("nan"), float("inf"), "500", True])
def test_a_node_refuses_a_busy_poll_outside_its_bounds(bad: object) -> None:
    from persist_rt import Node

    with pytest.raises(ValueError, match=r"busy_poll_us: must be a number of microseconds within \[0, 10000\]"):
        Node("bounded", busy_poll_us=bad)  # type: ignore[arg-type]


def test_reliable_slow_consumer_loses_nothing_and_blocks_the_producer(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Sink", "sink", {"qos": "reliable(16)", "delay_s": 0.0005})
    graph.start_node("Source", "source", {"reliable": True, "buffer": 32})
    eventually(lambda: graph.stats("source")["publishers"]["chatter"]["reliable_peers"] == 1,
               what="the reliable handshake")
    seen, edge, sent = _run_burst(graph, n=3_000)

    assert seen["count"] == sent - seen["first"] + 1, "reliable delivery must not lose a single message"
    assert edge["dropped"] == 0 and edge["lost"] == 0 and edge["rejected"] == 0
    assert seen["ordered"]
    pub = graph.stats("source")["publishers"]["chatter"]
    # the producer's buffer stayed bounded: it blocked instead of growing
    assert pub["pending_max"] <= 32 + 1
    assert pub["blocked_s"] > 0
    assert pub["pending"] == 0


@pytest.mark.parametrize("qos", ["queue", "reliable"])
def test_late_joiner_finds_a_running_publisher(graph: Graph, qos: str) -> None:
    graph.start_registry()
    graph.start_node("Source", "source", {"reliable": qos == "reliable"})
    graph.endpoint("source")
    graph.start_node("Sink", "late", {"qos": qos})
    eventually(lambda: graph.call("late", "seen")["count"] >= 5, what="the late joiner to receive")
    edge = _edge(graph, "late")
    assert edge["lost"] == 0 and edge["publishers"] == 1


def test_incompatible_qos_and_schema_are_reported_by_name(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Source", "talker")  # best effort only
    graph.start_node("Sink", "wants_reliable", {"qos": "reliable"})
    graph.start_node("ObservationSink", "wrong_schema", qos={})
    graph.start_node("Source", "obs_talker", {"topic": "obs"})  # Text on a topic the sink reads as Observation

    edge = eventually(lambda: _edge(graph, "wants_reliable")["incompatible"], what="the QoS mismatch report")
    assert "reliable" in edge["talker"]
    edge = eventually(lambda: _edge(graph, "wrong_schema", "obs")["incompatible"], what="the schema mismatch report")
    assert "persist.Text@1" in edge["obs_talker"] and "persist.Observation@2" in edge["obs_talker"]

    topics = {t["name"]: t for t in graph.reg("topics")}
    problems = {(p["publisher"], p["subscriber"]): p["reason"] for t in topics.values() for p in t["incompatible"]}
    assert "reliable" in problems[("talker", "wants_reliable")]
    assert "schema mismatch" in problems[("obs_talker", "wrong_schema")]
    # nothing arrives on an incompatible edge, and the counters say so rather than staying silent
    assert graph.call("wants_reliable", "seen")["count"] == 0
    assert graph.stats("wants_reliable")["counters"]["edge.incompatible"] >= 1


def test_same_host_edges_ride_ipc_and_tcp_serves_a_node_that_opts_out(graph: Graph) -> None:
    ipc, tcp = {"PERSIST_SAME_HOST_IPC": "1"}, {"PERSIST_SAME_HOST_IPC": "0"}
    graph.start_registry()
    graph.start_node("Source", "source", {"reliable": True}, env=ipc)
    graph.start_node("Source", "tcp_source", {"reliable": True, "topic": "other"}, env=tcp)
    graph.start_node("Sink", "near", {"qos": "reliable"}, env=ipc)
    graph.start_node("Sink", "near_best_effort", {"qos": "queue"}, env=ipc)
    graph.start_node("Sink", "tcp_only", {"qos": "reliable"}, env=tcp)
    graph.start_node("Sink", "near_other", {"qos": "reliable", "topic": "other"}, env=ipc)
    for sink in ("near", "near_best_effort", "tcp_only", "near_other"):
        eventually(lambda s=sink: graph.call(s, "seen")["count"] >= 5, what=f"{sink} to receive")

    advertised = graph.nodes()["source"]["endpoints"]
    assert advertised["pub"].startswith("tcp://") and advertised["reliable"].startswith("tcp://")
    assert advertised["pub_local"].startswith("ipc://@") and advertised["reliable_local"].startswith("ipc://@")
    assert "reliable_local" not in graph.nodes()["tcp_source"]["endpoints"]
    assert _edge(graph, "near")["endpoints"] == [advertised["reliable_local"]]
    assert _edge(graph, "near_best_effort")["endpoints"] == [advertised["pub_local"]]
    # a node that opts out neither uses a publisher's IPC endpoint nor offers one; both still connect over TCP
    assert _edge(graph, "tcp_only")["endpoints"] == [advertised["reliable"]]
    assert _edge(graph, "near_other", "other")["endpoints"][0].startswith("tcp://")
    for sink, topic in (("near", "chatter"), ("tcp_only", "chatter"), ("near_other", "other")):
        assert _edge(graph, sink, topic)["lost"] == 0


def test_a_publisher_in_another_ipc_domain_is_reached_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    # a hostname can repeat across machines: IPC is chosen by kernel boot and network namespace, never by name
    from persist_rt import Node
    from protocols import Text

    monkeypatch.setenv("PERSIST_SAME_HOST_IPC", "1")
    node = Node("chooser")
    try:
        assert node.ipc_domain is not None  # Linux: same-host IPC is on unless PERSIST_SAME_HOST_IPC=0
        sub = node.subscribe("chatter", Text, lambda msg: None)
        offer = {"schema": sub.schema, "reliable": False, "endpoint": "tcp://127.0.0.1:9", "local_endpoint":
                 "ipc://@persist-test-unreachable"}
        sub.update_publishers([{**offer, "node": "far", "ipc_domain": "another-boot/1"}])
        assert list(sub.endpoints) == ["tcp://127.0.0.1:9"]
        sub.update_publishers([{**offer, "node": "near", "ipc_domain": node.ipc_domain}])
        assert list(sub.endpoints) == ["ipc://@persist-test-unreachable"]
        sub.update_publishers([{**offer, "node": "old", "ipc_domain": None}])  # a node that offers no IPC
        assert list(sub.endpoints) == ["tcp://127.0.0.1:9"]
    finally:
        node.close()


def test_a_long_node_name_still_gets_its_ipc_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    # an abstract IPC name holds at most 107 bytes: the node's name is cut to fit, the bind must not fail
    from persist_rt import Node
    from protocols import Text

    monkeypatch.setenv("PERSIST_SAME_HOST_IPC", "1")
    node = Node("fleet/" + "arm_controller_" * 10)
    try:
        node.publisher("chatter", Text, reliable=True)
        endpoints = node.describe()["endpoints"]
        assert endpoints["pub_local"].startswith("ipc://@persist-fleet_arm_controller_")
        assert len(endpoints["reliable_local"]) - len("ipc://") <= 107
    finally:
        node.close()


# In-process edges over real TCP sockets, for what a callback can do to the subscription delivering to it: a callback
# can run the node's control traffic (an env draining its replay stream at a phase change does), and with it a
# heartbeat that pays back credit, or a registry update that drops the publisher being delivered from.


def _pump(nodes: list[Any], until: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while not until() and time.monotonic() < deadline:
        _spin(nodes, 1)
    return until()


def _spin(nodes: list[Any], turns: int) -> None:
    for _ in range(turns):
        for node in nodes:
            node.spin_once(0.005)


@contextmanager
def _listening(monkeypatch: pytest.MonkeyPatch, talkers: int, on_text: Callable[[Any], None]) -> Iterator[Any]:
    """``talkers`` nodes with a reliable `chatter` publisher each, and a listener subscribed to all of them."""
    from persist_rt import Node
    from protocols import Text

    monkeypatch.setenv("PERSIST_SAME_HOST_IPC", "0")
    nodes = [Node(f"talker{i}") for i in range(talkers)]
    listener = Node("listener")
    try:
        pubs = [node.publisher("chatter", Text, reliable=True) for node in nodes]
        sub = listener.subscribe("chatter", Text, on_text, qos="reliable")
        sub.update_publishers([{"node": node.name, "schema": sub.schema, "reliable": True,
                                "reliable_endpoint": node.describe()["endpoints"]["reliable"]} for node in nodes])
        assert _pump([*nodes, listener], lambda: all(pub.matched() == ["listener"] for pub in pubs))
        yield SimpleNamespace(talkers=nodes, pubs=pubs, listener=listener, sub=sub, text=Text)
    finally:
        listener.close()
        for node in nodes:
            node.close()


def test_a_callback_that_drops_its_own_publisher_leaves_the_subscriber_running(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[str] = []

    def on_text(msg: Any) -> None:
        received.append(msg.data)
        edge.sub.update_publishers([])  # the registry's answer no longer lists the talker

    with _listening(monkeypatch, 1, on_text) as edge:
        for i in range(5):  # more in flight, so the delivery loop would go on after the first
            edge.pubs[0].publish(edge.text(data=f"m{i}"))
        nodes = [*edge.talkers, edge.listener]
        assert _pump(nodes, lambda: received)
        _spin(nodes, 20)  # the listener keeps spinning, and nothing touches the closed socket again
        assert received == ["m0"] and edge.sub.endpoints == {} and edge.sub.errors == 0


def test_a_socket_let_go_by_an_earlier_handler_of_the_same_turn_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[str] = []

    def on_text(msg: Any) -> None:
        received.append(msg.data)
        edge.sub.update_publishers([])  # both talkers gone: the other DEALER closes with a message waiting

    with _listening(monkeypatch, 2, on_text) as edge:
        for pub in edge.pubs:
            pub.publish(edge.text(data=pub.node.name))
        dealers = list(edge.sub.endpoints.values())
        assert _pump(edge.talkers, lambda: all(readable(d) for d in dealers))  # one poll turn sees both
        edge.listener.spin_once(0.0)
        assert len(received) == 1 and edge.sub.endpoints == {} and edge.sub.errors == 0


def test_credit_paid_back_inside_a_callback_is_paid_once(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[str] = []

    def on_text(msg: Any) -> None:
        received.append(msg.data)
        edge.sub.grant_owed()  # what a heartbeat inside the callback's drain does

    with _listening(monkeypatch, 1, on_text) as edge:
        nodes = [*edge.talkers, edge.listener]
        for i in range(40):  # one at a time: each delivery starts with credit still owed from the last
            edge.pubs[0].publish(edge.text(data=f"m{i}"))
            assert _pump(nodes, lambda n=i + 1: len(received) == n)
        _spin(nodes, 20)  # the last credits reach the talker
        (peer,) = edge.pubs[0].peers.values()
        assert peer.credit <= edge.sub.qos.depth  # the window: paid twice, credit would grow past it
