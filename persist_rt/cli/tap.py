"""Listen to a topic from outside the graph: a SUB socket connected straight to its publishers.

Used by `topic echo`, `topic hz` and `topic bw`. Publishers always send on their PUB socket (also
when they offer reliable delivery), so a tap never slows the graph down; it only reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import zmq

from persist_rt import security
from persist_rt.cli.common import Graph
from persist_rt.codec import Codec, DecodeError, Header
from protocols import SCHEMAS

REFRESH_S = 1.0
ARRAY_SHOWN = 16  # arrays longer than this are summarised


@dataclass
class Received:
    header: Header
    size: int  # bytes over all frames
    frames: list[Any]


class TopicTap:
    def __init__(self, graph: Graph, topic: str) -> None:
        self.graph = graph
        self.topic = topic
        self.topic_b = topic.encode()
        self.info = graph.topic(topic)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        self.sock.setsockopt(zmq.SUBSCRIBE, self.topic_b)
        self.connected: set[str] = set()
        self.codec = Codec()
        self.rejected = 0
        self._next_refresh = 0.0
        self._connect()

    def _connect(self) -> None:
        self._next_refresh = time.monotonic() + REFRESH_S
        try:
            pubs = self.graph.call("lookup", {"topic": self.topic}).get("publishers", [])
        except Exception:  # registry gone for a moment: keep the connections we have
            return
        for p in pubs:
            endpoint = p.get("endpoint")
            if endpoint and endpoint not in self.connected:
                curve = security.process_curve()
                if curve is not None:  # the graph's keys: this connect checks the publisher's
                    curve.client(self.sock, p.get("node", "?"))
                self.sock.connect(endpoint)
                self.connected.add(endpoint)

    def messages(self, timeout_s: float | None = None) -> Iterator[Received]:
        """Messages as they arrive; stops after ``timeout_s`` without waiting longer than that in total."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while end is None or time.monotonic() < end:
            if time.monotonic() >= self._next_refresh:
                self._connect()
            wait = 200 if end is None else max(0, min(200, int((end - time.monotonic()) * 1000)))
            if not poller.poll(wait):
                continue
            while True:
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if frames[0].bytes != self.topic_b or len(frames) < 3:
                    continue
                try:
                    header = self.codec.decode_header(frames[1].buffer)
                except DecodeError:
                    self.rejected += 1
                    continue
                yield Received(header, sum(len(f.buffer) for f in frames), [f.buffer for f in frames])

    def decode(self, rec: Received) -> Any:
        """The message as plain data: by its schema when this process knows it, else raw msgpack."""
        cls = SCHEMAS.get(rec.header.schema)
        if cls is not None and cls.VERSION == rec.header.version:
            try:
                return msgspec.to_builtins(self.codec.decode(rec.frames, cls, rec.header), enc_hook=_plain)
            except DecodeError as exc:
                return {"<undecodable>": str(exc)}
        try:
            raw = msgspec.msgpack.decode(rec.frames[2], ext_hook=lambda code, data: f"<ext {code}, {len(data)} B>")
        except msgspec.DecodeError as exc:
            return {"<undecodable>": str(exc)}
        return msgspec.to_builtins(raw, enc_hook=_plain)

    def close(self) -> None:
        self.sock.close(0)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.size <= ARRAY_SHOWN:
            return obj.tolist()
        flat = obj.reshape(-1)[:8].tolist()
        return {"array": {"shape": list(obj.shape), "dtype": obj.dtype.name, "first": flat}}
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)
