"""Fuzzing a live single-agent graph: malformed multipart frames at every subscription, every service socket, every
reliable control socket and the registry. No node crashes or restarts, each rejection is counted by its field, the
registry keeps every live node listed through a flood, and the run executes no violation.

The fuzzer registers as a publisher of every topic the graph subscribes to (as any process may, without keys),
so each subscription connects to it; what it sends is seeded, and each frame's expected field is known."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack
import zmq

from persist_rt import services
from tests.graph.conftest import LiveRun, launch_single_agent
from tests.launch.conftest import wait_for

SEED = 25
PER_EDGE = 40  # bad messages per subscribed topic
FLOOD = 3000  # malformed requests at the registry
HUGE = 2**20  # bytes of a huge frame (below the nodes' 256 MiB limit: refused as malformed, not by size)
GRAPH = ("telemetry", "shield", "agent", "learner", "env")


def _header(topic_schema: str, seq: int, wall: float | None = None, schema: str | None = None) -> bytes:
    name, version = topic_schema.rsplit("@", 1)
    return msgpack.packb({"schema": schema or name, "version": int(version), "seq": seq, "sender": "fuzz",
                          "wall_time": time.time() if wall is None else wall, "step": seq, "sim_time": 0.0})


class EdgeFuzzer:
    """Bad messages for one topic, each with the field its subscriber must blame. Readable headers take rising
    sequence numbers, so only the deliberate replays are replays."""

    def __init__(self, rng: random.Random, topic: str, schema: str) -> None:
        self.rng, self.topic, self.schema = rng, topic.encode(), schema
        self.seq = 0
        self.sent: list[tuple[bytes, float]] = []  # (header, wall time) of readable headers, for replays

    def _next(self) -> bytes:
        self.seq += 1
        wall = time.time()
        h = _header(self.schema, self.seq, wall)
        self.sent.append((h, wall))
        return h

    def message(self) -> tuple[str, list[bytes]]:
        rng, t = self.rng, self.topic
        kind = "huge" if self.seq == 3 else rng.choice([  # one huge frame an edge: a few MiB, not a bandwidth test
            "random", "truncated_header", "truncated_payload", "wrong_schema", "wrong_payload", "few_frames", "replay"])
        if kind == "replay" and len(self.sent) < 2:
            kind = "wrong_payload"
        if kind == "random":
            return "header", [t, b"\xc1" + rng.randbytes(rng.randint(0, 64)), rng.randbytes(rng.randint(0, 64))]
        if kind == "truncated_header":
            h = _header(self.schema, self.seq + 1)
            return "header", [t, h[: rng.randint(1, len(h) - 1)], b"\x80"]
        if kind == "truncated_payload":
            body = msgpack.packb({"step": 1, "data": rng.randbytes(32)})
            return "payload", [t, self._next(), body[: rng.randint(1, len(body) - 1)]]
        if kind == "wrong_schema":
            self.seq += 1
            return "header.schema", [t, _header(self.schema, self.seq, schema="persist.Nope"), b"\x80"]
        if kind == "wrong_payload":
            return "payload", [t, self._next(), msgpack.packb(rng.choice([17, [1, 2], {"zzz": "wrong"}, "text"]))]
        if kind == "few_frames":
            return "frames", [t] if rng.random() < 0.5 else [t, _header(self.schema, self.seq + 1)]
        if kind == "huge":
            return "payload", [t, self._next(), b"\xc1" + rng.randbytes(HUGE)]
        old_header, _ = self.sent[rng.randrange(len(self.sent) - 1)]
        return "header.seq", [t, old_header, b"\x80"]  # an old number, sent again as it was


def _service_garbage(rng: random.Random) -> list[tuple[str, list[bytes]]]:
    """(field, frames from a DEALER) for a service or the registry."""
    return [
        ("request", [rng.randbytes(24)]),
        ("request", [msgpack.packb({"id": 1, "service": "nodes", "args": {}})[:-3]]),  # truncated
        ("request", [msgpack.packb([1, "stats"])]),
        ("args", [msgpack.packb({"id": 2, "service": "stats", "args": [1]})]),
        ("service", [msgpack.packb({"id": 3, "service": "rm -rf", "args": {}})]),
        ("frames", [b"", msgpack.packb({"id": 4, "service": "stats", "args": {}})]),
        ("frames", [b"a", b"b", b"c"]),
        ("request", [b"\xc1" + rng.randbytes(HUGE)]),
    ]


CONTROL_GARBAGE: list[tuple[str, list[bytes]]] = [
    ("frames", [b"\xff\xfe"]),
    ("frames", [b"HELLO", b"{}", b"extra"]),
    ("kind", [b"WHAT", msgpack.packb({"topic": "env/obs"})]),
    ("body", [b"HELLO", b"\xc1"]),
    ("body", [b"HELLO", msgpack.packb(["not", "a", "map"])]),
    ("body", [b"CREDIT", msgpack.packb({"topic": 5, "n": 1})]),
    ("body", [b"CREDIT", msgpack.packb({"topic": "env/obs", "n": "lots"})]),
]


def _collapse(by_field: dict[str, int]) -> Counter[str]:
    """payload.<name> counts as payload: which field of a wrong-schema payload fails first is the codec's choice."""
    out: Counter[str] = Counter()
    for field, n in by_field.items():
        out["payload" if field.startswith("payload") else field] += n
    return out


def _judged(edge: dict, dropped_before: int) -> Counter[str]:
    """Rejections by field; on a `latest` edge, the fuzzer's messages with a good header may be dropped for newer
    ones before their payload is read (counted as dropped under its name, not rejected): those count as payload
    refusals; the graph's own messages dropped meanwhile are not the fuzzer's. On a topic only named nodes may
    publish, the fuzzer's messages are dropped unread, counted under its name."""
    fields = _collapse(edge["rejected_by"])
    fields["unauthorised"] += edge.get("unauthorised_by", {}).get("fuzz", 0)
    if edge["qos"] == "latest":
        fields["payload"] += edge["dropped_by"].get("fuzz", 0) - dropped_before
    return +fields


def _dealer(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 10_000)  # closed at once after sending: what is queued still goes out
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(endpoint)
    return sock


def _keep_lease(registry: str, registration: dict, stop: threading.Event) -> None:
    """Register the fuzzer and renew its lease as a node does (its subscribers drop it when the lease ends)."""
    known = False
    while not stop.is_set():
        try:
            if not known:
                try:
                    services.call(registry, "register", registration, timeout=3.0)
                except services.ServiceError:  # its name is bound to an earlier call's connection: still live
                    pass
            known = services.call(registry, "heartbeat", {"name": "fuzz", "pid": os.getpid()}, timeout=3.0)["known"]
        except services.ServiceTimeout:
            known = False
        stop.wait(0.3)


def _fuzz_subscriptions(run: LiveRun, rng: random.Random, ctx: zmq.Context) -> dict[tuple[str, str], Counter[str]]:
    """Register as the publisher of every subscribed topic, send each subscription bad messages; the expected
    fields per (node, topic)."""
    topics = [t for t in services.call(run.registry, "topics", timeout=3.0) if t["subscribers"]]
    authority = services.call(run.registry, "stats", timeout=3.0)["authority"]  # topic -> who may publish it
    pub, rel = ctx.socket(zmq.XPUB), ctx.socket(zmq.ROUTER)
    for sock in (pub, rel):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.bind("tcp://127.0.0.1:0")
    reliable = {t["name"] for t in topics if any(s["qos"].startswith("reliable") for s in t["subscribers"])}
    registration = {"name": "fuzz", "kind": "fuzz", "pid": os.getpid(), "host": socket.gethostname(),
                    "state": "active", "subscriptions": [],
                    "endpoints": {"pub": pub.getsockopt_string(zmq.LAST_ENDPOINT),
                                  "reliable": rel.getsockopt_string(zmq.LAST_ENDPOINT)},
                    "publications": [{"topic": t["name"], "schema": t["schema"], "reliable": t["name"] in reliable}
                                     for t in topics]}
    stop = threading.Event()
    lease = threading.Thread(target=_keep_lease, args=(run.registry, registration, stop), daemon=True)
    lease.start()
    want_sub = {t["name"] for t in topics if t["name"] not in reliable}
    want_hello = {(s["node"], t["name"]) for t in topics for s in t["subscribers"] if t["name"] in reliable}
    identities: dict[tuple[str, str], bytes] = {}
    subscribed: set[str] = set()
    deadline = time.monotonic() + 30.0
    while (subscribed < want_sub or set(identities) < want_hello) and time.monotonic() < deadline:
        for sock in (pub, rel):
            while sock.poll(50):
                frames = sock.recv_multipart()
                if sock is pub and frames[0][:1] == b"\x01":
                    subscribed.add(frames[0][1:].decode())
                elif sock is rel and frames[1] == b"HELLO":
                    hello = msgpack.unpackb(frames[2])
                    identities[(hello["node"], hello["topic"])] = frames[0]
                    rel.send_multipart([frames[0], b"ACK", msgpack.packb({"topic": hello["topic"]})])
    assert subscribed >= want_sub and set(identities) >= want_hello, (subscribed, set(identities))
    ours = {registration["endpoints"]["pub"], registration["endpoints"]["reliable"]}
    for t in topics:  # each subscriber says it is connected to the fuzzer (its own view, not the socket's)
        for node in {s["node"] for s in t["subscribers"]}:
            wait_for(f"{node} to connect to the fuzzer on {t['name']}",
                     lambda n=node, tp=t["name"]: ours & set(_stats(run, n)["subscriptions"][tp]["endpoints"]))

    expected: dict[tuple[str, str], Counter[str]] = {}
    dropped = {(node, t["name"]): _stats(run, node)["subscriptions"][t["name"]]["dropped_by"].get("fuzz", 0)
               for t in topics for node in {s["node"] for s in t["subscribers"]}}
    for t in topics:
        fuzzer = EdgeFuzzer(rng, t["name"], t["schema"])
        subs = [s["node"] for s in t["subscribers"]]
        for _ in range(PER_EDGE):
            field, frames = fuzzer.message()
            if t["name"] in reliable:
                for node in subs:
                    rel.send_multipart([identities[(node, t["name"])], *frames])
            else:
                pub.send_multipart(frames)
            for node in subs:
                expected.setdefault((node, t["name"]), Counter())[
                    "unauthorised" if t["name"] in authority else field] += 1
        if t["name"] in reliable:  # a batch frame that is not one
            for node in subs:
                rel.send_multipart([identities[(node, t["name"])], b"BATCH", t["name"].encode(), b"\xc1garbage"])
                expected[(node, t["name"])]["unauthorised" if t["name"] in authority else "batch"] += 1
    # every frame is judged before the fuzzer leaves (its subscribers then drop it)
    for (node, topic), fields in expected.items():
        judged = lambda n=node, tp=topic: _judged(_stats(run, n)["subscriptions"][tp], dropped[(n, tp)])  # noqa: E731
        try:
            wait_for(f"{node} to judge every bad message on {topic}", lambda j=judged, f=fields: j() == f)
        except AssertionError:
            edge = _stats(run, node)["subscriptions"][topic]
            assert judged() == fields, (node, topic, edge["endpoints"], ours, edge)
    stop.set()
    lease.join()
    services.call(run.registry, "unregister", {"name": "fuzz", "pid": os.getpid()}, timeout=3.0)
    pub.close(0)
    rel.close(0)
    return expected


def _stats(run: LiveRun, node: str) -> dict:
    """A node's stats; a learner in a burst of updates may answer late."""
    return wait_for(f"stats of {node}", lambda: run.stats(node))


def _registry_rejections(run: LiveRun) -> Counter[str]:
    return Counter(services.call(run.registry, "stats", timeout=5.0)["rejected_by"])


def _counters(run: LiveRun, node: str, prefix: str) -> Counter[str]:
    return Counter({k.removeprefix(prefix): int(v) for k, v in _stats(run, node)["counters"].items()
                    if k.startswith(prefix)})


def _flood_registry(run: LiveRun, rng: random.Random, ctx: zmq.Context) -> tuple[Counter[str], int]:
    """A few thousand malformed requests from one sender; (fields sent, fewest live nodes listed meanwhile)."""
    flood = _dealer(ctx, run.registry)
    kinds = [
        *_service_garbage(rng)[:-1],  # no huge frame: thousands of them would measure the machine
        ("args.pid", [msgpack.packb({"id": 5, "service": "register", "args": {"name": "env"}})]),
        ("args.name", [msgpack.packb({"id": 6, "service": "register", "args": {"name": 7, "pid": 1}})]),
    ]
    sent: Counter[str] = Counter()
    fewest = len(GRAPH)
    try:
        for _ in range(6):
            for _ in range(FLOOD // 6):
                field, frames = rng.choice(kinds)
                flood.send_multipart(frames)
                sent[field] += 1
            listed = {n["name"]: n for n in services.call(run.registry, "nodes", timeout=5.0)}
            fewest = min(fewest, sum(1 for n in GRAPH if n in listed and listed[n]["lease_left_s"] > 0))
    finally:
        flood.close(0)
    return sent, fewest


def test_malformed_frames_at_every_socket_of_a_live_graph(tmp_path: Path, launched: list[LiveRun]) -> None:
    run = launch_single_agent(tmp_path, "--arg", "steps=1000000")
    launched.append(run)
    wait_for("training under way", lambda: run.metric_above("env", "progress.steps", 100), deadline_s=120)
    before = run.nodes()
    rng = random.Random(SEED)
    ctx = zmq.Context.instance()

    expected = _fuzz_subscriptions(run, rng, ctx)
    assert {node for node, _ in expected} == set(GRAPH)  # every node subscribes to something, and got its share

    for name in (*GRAPH, "registry"):
        endpoint = run.registry if name == "registry" else before[name]["endpoints"]["service"]
        counted = (lambda: _registry_rejections(run)) if name == "registry" else \
            (lambda n=name: _counters(run, n, "rejected.service."))
        start = counted()
        sock = _dealer(ctx, endpoint)
        garbage = _service_garbage(rng)
        for _, frames in garbage:
            sock.send_multipart(frames)
        replies = [msgpack.unpackb(sock.recv()) for _ in garbage if sock.poll(30_000)]
        sock.close(0)
        assert len(replies) == len(garbage) and not any(r["ok"] for r in replies), (name, replies)
        want = Counter(field for field, _ in garbage)
        wait_for(f"{name} to count each refused request by field",
                 lambda c=counted, s0=start, w=want: c() - s0 == w)
    for name, info in before.items():
        if endpoint := info["endpoints"].get("reliable"):
            start = _counters(run, name, "rejected.reliable_control.")
            sock = _dealer(ctx, endpoint)
            for _, frames in CONTROL_GARBAGE:
                sock.send_multipart(frames)
            want = Counter(field for field, _ in CONTROL_GARBAGE)
            try:
                wait_for(f"{name} to count each bad control frame by field",
                         lambda n=name, w=want, s0=start: _counters(run, n, "rejected.reliable_control.") - s0 == w)
            except AssertionError:
                assert _counters(run, name, "rejected.reliable_control.") - start == want, (name, start)
            sock.close(0)

    start = _registry_rejections(run)
    sent, fewest = _flood_registry(run, rng, ctx)
    assert fewest == len(GRAPH), "a flood made the registry drop live nodes"
    wait_for("the registry to count the whole flood by field", lambda: _registry_rejections(run) - start == sent)

    # the graph runs on: same processes, still stepping, every edge clean of callback errors
    steps = run.metric("env", "progress.steps") or 0
    wait_for("training to go on", lambda: run.metric_above("env", "progress.steps", steps + 50), deadline_s=60)
    after = run.nodes()
    assert {n: after[n]["pid"] for n in GRAPH} == {n: before[n]["pid"] for n in GRAPH}
    for name in GRAPH:
        for topic, edge in _stats(run, name)["subscriptions"].items():
            assert edge["callback_errors"] == 0, (name, topic)
    run.stop()  # (on a loaded machine a node may overrun the 20 s shutdown deadline: not what this test is about)
    summary = run.summary()
    train = summary["train"]
    assert train["violations_executed"] == 0
    assert train["executed_steps"] + train["fallback_steps"] == summary["env_steps"]
    assert all(node["restarts"] == 0 for node in summary["launch"]["nodes"].values())  # no node crashed
    assert summary["launch"]["registry_restarts"] == 0
