"""Bad input sent from raw ZeroMQ sockets at live nodes: rejected, counted per edge, nothing accepted is lost."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import zmq
import zmq.asyncio

from persist_rt import services
from tests.runtime import wire
from tests.runtime.conftest import Graph, eventually

TOPIC = b"obs"


def _bad_messages(next_seq: Callable[[], int]) -> Iterator[tuple[str, list[bytes]]]:
    """(field the node must blame, frames), made one at a time: a readable header takes the next sequence number."""
    obs_f64 = wire.inline(np.zeros((4, 3), np.float64))
    nan = np.zeros((4, 3), np.float32)
    nan[2, 1] = np.nan
    inf = np.zeros((4, 3), np.float32)
    inf[0, 0] = np.inf
    truncated = msgpack.packb(wire.observation(0))
    huge = np.zeros((2, 300_000), np.float32)  # 2.4 MB, over the node's 1 MiB limit
    yield ("header", [TOPIC, b"\xc1\xff\x00 garbage", b"x"])
    yield ("frames", [TOPIC])
    yield (
        "frames",
        [TOPIC, wire.header(0), msgpack.packb(wire.observation(0, obs=wire.out_of_band(huge, 0))), huge.tobytes()],
    )
    yield ("header", [TOPIC, msgpack.packb({"schema": "persist.Observation"}), b"\x80"])
    yield ("payload", [TOPIC, wire.header(next_seq()), truncated[: len(truncated) // 2]])
    yield ("payload", [TOPIC, wire.header(next_seq()), msgpack.packb(17)])
    yield ("header.schema", [TOPIC, wire.header(next_seq(), schema="persist.Nope"), truncated])
    yield ("header.schema", [TOPIC, wire.header(next_seq(), version=99), truncated])
    yield ("payload.obs", [TOPIC, wire.header(next_seq()), msgpack.packb(wire.observation(0, obs=obs_f64))])
    yield (
        "payload.positions",
        [
            TOPIC,
            wire.header(next_seq()),
            msgpack.packb(wire.observation(0, positions=wire.inline(np.zeros((4, 3), np.float32)))),
        ],
    )
    yield ("payload.obs", [TOPIC, wire.header(next_seq()), msgpack.packb(wire.observation(0, obs=wire.inline(nan)))])
    yield ("payload.obs", [TOPIC, wire.header(next_seq()), msgpack.packb(wire.observation(0, obs=wire.inline(inf)))])
    yield (
        "payload",
        [
            TOPIC,
            wire.header(next_seq()),  # refers to an array frame that is not there
            msgpack.packb(wire.observation(0, obs=wire.out_of_band(np.zeros((4, 3), np.float32), 0))),
        ],
    )
    yield (
        "payload",
        [TOPIC, wire.header(next_seq()), msgpack.packb(wire.observation(0, obs=msgpack.ExtType(9, b"??")))],
    )


async def test_bad_input_is_rejected_counted_and_nothing_accepted_is_lost(graph: Graph) -> None:
    graph.start_registry(lease_s=60.0)
    graph.start_node("ObservationSink", "sink")
    ctx = zmq.asyncio.Context.instance()
    raw = ctx.socket(zmq.XPUB)  # XPUB: we see the subscription arrive instead of guessing when it did
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind("tcp://127.0.0.1:0")
    try:
        graph.reg(
            "register",
            name="raw",
            kind="raw",
            pid=os.getpid(),
            host=socket.gethostname(),
            state="active",
            endpoints={"pub": raw.getsockopt_string(zmq.LAST_ENDPOINT)},
            publications=[{"topic": "obs", "schema": "persist.Observation@2", "reliable": False}],
            subscriptions=[],
        )
        assert await raw.recv() == b"\x01obs"

        seq = iter(range(1, 10_000))
        accepted: list[int] = []
        bad_fields: dict[str, int] = {}

        async def send_good(n: int = 4) -> None:
            s = next(seq)
            await raw.send_multipart([TOPIC, wire.header(s), msgpack.packb(wire.observation(s, n=n))])
            accepted.append(s)

        await send_good()
        for field, frames in _bad_messages(lambda: next(seq)):
            await raw.send_multipart(frames)
            bad_fields[field] = bad_fields.get(field, 0) + 1
            await send_good()
        # a large, valid observation travels as an out-of-band frame and is accepted
        s = next(seq)
        big = np.ones((64, 2048), np.float32)
        await raw.send_multipart(
            [
                TOPIC,
                wire.header(s),
                msgpack.packb(
                    wire.observation(
                        s, n=64, obs=wire.out_of_band(big, 0), positions=wire.inline(np.zeros((64, 2)))
                    )
                    | {"episode_step": wire.inline(np.zeros(64, np.int64))}
                ),
                big.tobytes(),
            ]
        )
        accepted.append(s)

        n_bad = sum(bad_fields.values())
        edge = eventually(
            lambda: (
                (e := graph.stats("sink")["subscriptions"]["obs"])["delivered"] == len(accepted)
                and e["rejected"] == n_bad
                and e
            ),
            what="every message to be judged",
        )
        assert graph.call("sink", "steps") == accepted
        assert edge["rejected_by"] == bad_fields
        assert edge["lost"] == 0 and edge["dropped"] == 0 and edge["callback_errors"] == 0
        # the node is still alive and still accepts good input
        await send_good()
        eventually(lambda: graph.call("sink", "steps") == accepted, what="a good message after the bad ones")
    finally:
        raw.close(0)


async def test_garbage_on_control_and_service_sockets_is_counted(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Source", "source", {"reliable": True})
    graph.start_node("Sink", "sink", {"qos": "reliable"})
    eventually(lambda: graph.call("sink", "seen")["count"] > 0, what="reliable data")
    info = graph.nodes()["source"]["endpoints"]
    ctx = zmq.asyncio.Context.instance()
    control, service = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock, endpoint in ((control, info["reliable"]), (service, info["service"])):
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
    try:
        garbage = [
            [b"\xff\xfe"],
            [b"HELLO", b"\xc1"],
            [b"HELLO", msgpack.packb({"topic": "chatter", "window": "lots"})],
            [b"CREDIT", msgpack.packb({"topic": "chatter", "n": [1]})],
            [b"WHAT", msgpack.packb({"topic": "chatter"})],
            [b"HELLO", msgpack.packb(["not", "a", "map"])],
        ]
        for frames in garbage:
            await control.send_multipart(frames)
        for body in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"service": "stats", "args": 5})):
            await service.send(body)
            reply = msgpack.unpackb(await service.recv())
            assert reply["ok"] is False and reply["error"]
        # a HELLO with the wrong schema is refused by name
        await control.send_multipart(
            [b"HELLO", msgpack.packb({"topic": "chatter", "schema": "persist.Blob@1", "window": 4, "node": "impostor"})]
        )
        kind, body = await control.recv_multipart()
        assert kind == b"NACK" and "persist.Blob@1" in msgpack.unpackb(body)["reason"]

        counters = eventually(
            lambda: (c := graph.stats("source")["counters"]).get("rejected.reliable_control") == len(garbage) and c,
            what="rejected control frames to be counted",
        )
        assert counters["rejected.service"] == 3
        assert counters["edge.incompatible"] == 1
        # the publisher keeps serving its reliable subscriber
        before = graph.call("sink", "seen")["count"]
        eventually(lambda: graph.call("sink", "seen")["count"] > before + 5, what="data after the garbage")
        assert graph.stats("sink")["subscriptions"]["chatter"]["lost"] == 0
        assert services.call(info["service"], "lifecycle.get") == {"state": "active"}
    finally:
        control.close(0)
        service.close(0)


async def test_bad_batches_on_a_reliable_edge_are_rejected_and_good_messages_kept(graph: Graph) -> None:
    graph.start_registry(lease_s=60.0)
    graph.start_node("ObservationSink", "sink", {"qos": "reliable(64)"})
    raw = zmq.asyncio.Context.instance().socket(zmq.ROUTER)  # a publisher's reliable socket, by hand
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind("tcp://127.0.0.1:0")
    try:
        graph.reg("register", name="raw", kind="raw", pid=os.getpid(), host=socket.gethostname(), state="active",
                  endpoints={"reliable": raw.getsockopt_string(zmq.LAST_ENDPOINT)}, subscriptions=[],
                  publications=[{"topic": "obs", "schema": "persist.Observation@2", "reliable": True}])
        identity, kind, _ = await raw.recv_multipart()
        assert kind == b"HELLO"
        await raw.send_multipart([identity, b"ACK", msgpack.packb({"topic": "obs"})])

        nan = np.zeros((4, 3), np.float32)
        nan[1, 2] = np.nan
        mixed = [[msgpack.unpackb(wire.header(s)), wire.observation(s)] for s in (1, 2, 3)]
        mixed[1][1] = wire.observation(2, obs=wire.inline(nan))
        for frames in (
            [b"BATCH", TOPIC, msgpack.packb(mixed)],  # one bad message among good ones
            [b"BATCH", TOPIC, b"\xc1 not msgpack"],
            [TOPIC, wire.header(4), msgpack.packb(wire.observation(4))],
        ):
            await raw.send_multipart([identity, *frames])
        edge = eventually(lambda: (e := graph.stats("sink")["subscriptions"]["obs"])["delivered"] == 3 and e,
                          what="the good messages of the batches")
        assert graph.call("sink", "steps") == [1, 3, 4]
        assert edge["rejected_by"] == {"payload.obs": 1, "batch": 1}
        assert edge["lost"] == 0 and edge["callback_errors"] == 0
    finally:
        raw.close(0)
