"""A flood at the registry while nodes are registered: a few thousand malformed requests (and, with keys, hundreds of
handshakes with keys not of the graph) neither expire a live lease nor starve the heartbeats; every rejection is
counted (by field, or as a refused handshake)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import msgpack
import pytest
import zmq

from persist_rt import security
from persist_rt.security import CLIENT, REGISTRY, Curve, KeySet
from tests.runtime.conftest import Graph, eventually

NODES = ("source", "sink1", "sink2", "sink3")
FLOOD = 4000  # malformed requests, from SENDERS connections
SENDERS = 20
STRANGERS = 320  # with keys: connections whose key is not the graph's
# (field the registry blames, frames after the identity)
MALFORMED = [
    ("request", [b"\xc1 not msgpack"]),
    ("request", [msgpack.packb({"id": 1, "args": {}})]),
    ("frames", [b"one", b"two"]),
    ("args", [msgpack.packb({"id": 2, "service": "nodes", "args": [1]})]),
    ("service", [msgpack.packb({"id": 3, "service": "no.such.service"})]),
    ("args.name", [msgpack.packb({"id": 4, "service": "register", "args": {"name": 7}})]),
    ("args.pid", [msgpack.packb({"id": 5, "service": "register", "args": {"name": "source", "endpoints": {}}})]),
]


def _dealer(ctx: zmq.Context, endpoint: str, curve: Curve | None = None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.client(sock, REGISTRY)
    sock.connect(endpoint)
    return sock


def _stranger(ctx: zmq.Context, endpoint: str, server_key: bytes) -> zmq.Socket:
    """A connection proving a key pair of its own (it knows the registry's public key, which is no secret)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.curve_serverkey = server_key
    sock.connect(endpoint)
    return sock


def _live(graph: Graph) -> dict[str, float]:
    return {n["name"]: n["lease_left_s"] for n in graph.reg("nodes") if n["state"] == "active"}


@pytest.mark.parametrize("with_keys", [False, True], ids=["plain", "keys"])
def test_a_flood_at_the_registry_expires_no_lease(graph: Graph, tmp_path: Path, with_keys: bool,
                                                  record_property: pytest.RecordProperty) -> None:
    env: dict[str, str] = {}
    curve = None
    if with_keys:
        keys = tmp_path / "keys"
        KeySet.create(keys, list(NODES))
        env = {security.KEYS_ENV: str(keys)}
        curve = Curve(KeySet(keys), CLIENT, zmq.Context.instance())
        security.use_curve(curve)
    try:
        graph.start_registry(lease_s=1.0, env=env)
        security.expect_server(graph.registry, REGISTRY)
        graph.start_node("Source", "source", env=env)
        for name in NODES[1:]:
            graph.start_node("Sink", name, env=env)
        eventually(lambda: set(_live(graph)) == set(NODES), timeout=60, what="every node registered and active")
        version = eventually(lambda: graph.reg("ping")["graph_version"], what="the graph's version")
        before = Counter(graph.reg("stats")["rejected_by"])

        ctx = zmq.Context.instance()
        rng = random.Random(25)
        senders = [_dealer(ctx, graph.registry, curve) for _ in range(SENDERS)]
        strangers: list[zmq.Socket] = []
        sent: Counter[str] = Counter()
        shortest_lease = 1.0
        try:
            for batch in range(8):  # the node list is read between batches: every node stays listed, leases alive
                for i in range(FLOOD // 8):
                    field, frames = rng.choice(MALFORMED)
                    senders[i % SENDERS].send_multipart(frames)
                    sent[field] += 1
                if curve is not None:
                    for _ in range(STRANGERS // 8):
                        strangers.append(_stranger(ctx, graph.registry, curve.keys.public(REGISTRY)))
                        strangers[-1].send_multipart(rng.choice(MALFORMED)[1])
                live = _live(graph)
                assert set(live) == set(NODES), f"batch {batch}: the registry lists {sorted(live)}"
                shortest_lease = min(shortest_lease, *live.values())
            want = before + sent
            eventually(lambda: Counter(graph.reg("stats")["rejected_by"]) == want, timeout=30,
                       what="every malformed request counted by its field")
            if curve is not None:
                eventually(lambda: graph.reg("stats")["refused"].get("handshake", 0) == len(strangers), timeout=30,
                           what="every stranger's handshake refused and counted")
                assert graph.reg("stats")["refused"] == {"handshake": len(strangers)}  # (their frames never got in)
        finally:
            for sock in senders + strangers:
                sock.close(0)
        stats = graph.reg("stats")
        assert sum(sent.values()) == FLOOD and len(strangers) == (STRANGERS if curve is not None else 0)
        assert stats["unanswered"] > 0  # a sender's refusals beyond its budget were counted, not answered
        assert stats["rejected_by"].keys() <= {field for field, _ in MALFORMED}
        record_property("shortest_lease_left_s", shortest_lease)  # of 1.0 s: how late the heartbeats came at worst
        assert shortest_lease > 0
        # no lease ran out, and no node had to register again (either would have changed the graph's version)
        assert graph.reg("ping")["graph_version"] == version
        assert set(_live(graph)) == set(NODES)
        assert all(p.popen.poll() is None for p in graph.procs)
    finally:
        security.use_curve(None)
