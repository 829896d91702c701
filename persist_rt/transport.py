"""Publishers, subscriptions and timers: the data path between nodes.

Best effort (latest, queue): the publisher's PUB socket, subscribers' SUB sockets connected
straight to it. Reliable: the publisher's ROUTER socket, one DEALER per (subscription, publisher);
the subscriber grants credit (``HELLO`` with the window, then ``CREDIT n`` as it consumes), the
publisher sends only against credit and buffers up to ``buffer`` messages per peer, then blocks
its own executor until credit arrives. Control frames: ``[b"HELLO"|b"CREDIT"|b"BYE", msgpack]``
upstream and ``[b"ACK"|b"NACK", msgpack]`` downstream; data frames are ``[topic, header, payload, ...]``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from persist_rt.codec import Codec, DecodeError, Header
from persist_rt.qos import QoS, compatible
from protocols.base import Message, schema_id

if TYPE_CHECKING:
    from persist_rt.node import Node

HELLO, CREDIT, BYE, ACK, NACK = b"HELLO", b"CREDIT", b"BYE", b"ACK", b"NACK"
CONTROL = {ACK, NACK}
PEER_TIMEOUT_S = 30.0
DRAIN_LIMIT = 10_000  # messages read from one socket per executor turn
MAX_WINDOW = 1 << 16  # credit a subscriber may hold; a larger request is clamped
_NOBLOCK, _SNDMORE, _RCVMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.RCVMORE)


class Timer:
    def __init__(self, period_s: float, callback: Callable[[], Any]) -> None:
        self.period = period_s
        self.callback = callback
        self.due = time.monotonic() + period_s
        self.errors = 0

    def fire(self, now: float) -> None:
        """Run the callback; an exception is counted and re-raised for the executor to log."""
        self.due += self.period
        if self.due < now:  # we fell behind: skip missed ticks instead of bursting
            self.due = now + self.period
        try:
            self.callback()
        except Exception:
            self.errors += 1
            raise


class _ReliablePeer:
    __slots__ = ("credit", "identity", "last_credit", "node", "pending", "topic")

    def __init__(self, identity: bytes, topic: str, node: str, credit: int) -> None:
        self.identity = identity
        self.topic = topic
        self.node = node
        self.credit = credit
        self.pending: deque[list[Any]] = deque()
        self.last_credit = time.monotonic()


class Publisher:
    def __init__(self, node: Node, topic: str, msg_type: type[Message], *, reliable: bool, buffer: int) -> None:
        self.node = node
        self.topic = topic
        self.topic_b = topic.encode()
        self.msg_type = msg_type
        self.reliable = reliable
        self.buffer = buffer
        self.seq = 0
        self.peers: dict[bytes, _ReliablePeer] = {}
        self.blocked_s = 0.0
        self.peers_lost = 0
        self.pending_max = 0  # high-water mark of any peer's buffer: bounded by ``buffer`` + 1
        self.best_effort = False  # does any best-effort subscriber listen (XPUB told us)?
        self.update_best_effort(node._best_effort_prefixes)

    def update_best_effort(self, prefixes: set[bytes]) -> None:
        self.best_effort = any(self.topic_b.startswith(p) for p in prefixes)

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "schema": schema_id(self.msg_type), "reliable": self.reliable}

    def stats(self) -> dict[str, Any]:
        return {"sent": self.seq, "schema": schema_id(self.msg_type), "reliable_peers": len(self.peers),
                "pending": sum(len(p.pending) for p in self.peers.values()),
                "pending_max": self.pending_max, "blocked_s": round(self.blocked_s, 6),
                "peers_lost": self.peers_lost}

    def matched(self) -> list[str]:
        """Names of the nodes connected to this topic with reliable QoS (handshake done)."""
        return sorted(p.node for p in self.peers.values())

    def publish(self, msg: Message, *, step: int = -1, sim_time: float = 0.0) -> None:
        if type(msg) is not self.msg_type:
            raise TypeError(f"topic `{self.topic}` carries {self.msg_type.__name__}, got {type(msg).__name__}")
        node = self.node
        self.seq += 1
        frames = [self.topic_b, Codec.encode_header(self.msg_type, self.seq, node.name, step, sim_time),
                  *node.codec.encode_payload(msg)]
        if self.best_effort:
            send_frames(node._pub_sock, frames)  # type: ignore[arg-type]
        if not self.peers:
            return
        for peer in list(self.peers.values()):
            if peer.credit > 0 and not peer.pending and self._send_to(peer, frames):
                continue
            if peer.identity in self.peers:
                peer.pending.append(frames)
                self.pending_max = max(self.pending_max, len(peer.pending))
                if len(peer.pending) > self.buffer:
                    self._wait_for_credit(peer)

    def _send_to(self, peer: _ReliablePeer, frames: list[Any]) -> bool:
        """Send one message to a reliable peer; False if it stays pending (socket full or peer gone)."""
        try:
            send_frames(self.node._rel_sock, [peer.identity, *frames], _NOBLOCK, first_array=4)  # type: ignore[arg-type]
        except zmq.Again:  # the pipe to this peer is full: keep the message, retry on the next credit
            return False
        except zmq.ZMQError:  # EHOSTUNREACH: the subscriber is gone
            self._drop_peer(peer, "disconnected")
            return False
        peer.credit -= 1
        return True

    def flush(self, peer: _ReliablePeer) -> None:
        while peer.credit > 0 and peer.pending and peer.identity in self.peers:
            if not self._send_to(peer, peer.pending[0]):
                return
            peer.pending.popleft()

    def close(self) -> None:
        """Forget reliable peers; messages still pending for them are counted as undelivered."""
        for peer in list(self.peers.values()):
            if peer.pending:
                self.node.count(f"edge.{self.topic}.undelivered", len(peer.pending))
        self.peers.clear()

    def _drop_peer(self, peer: _ReliablePeer, why: str) -> None:
        if self.peers.pop(peer.identity, None) is not None:
            self.peers_lost += 1
            self.node.count(f"edge.{self.topic}.peer_lost")
            self.node.log.warning("reliable_peer_dropped", topic=self.topic, peer=peer.node, reason=why,
                                  pending=len(peer.pending))

    def _wait_for_credit(self, peer: _ReliablePeer) -> None:
        """Block the producer (bounded buffer full) while still answering control traffic."""
        node = self.node
        start = time.monotonic()
        poller = zmq.Poller()
        for sock in (node._rel_sock, node._svc_sock, node._reg_sock):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        while len(peer.pending) > self.buffer and peer.identity in self.peers:
            for sock, _ in poller.poll(50):
                node._handlers[sock]()
            if time.monotonic() >= node._next_heartbeat:
                node._heartbeat()
            if time.monotonic() - peer.last_credit > PEER_TIMEOUT_S:
                self._drop_peer(peer, f"no credit for {PEER_TIMEOUT_S:g} s")
        self.blocked_s += time.monotonic() - start

    @staticmethod
    def handle_reliable_control(node: Node) -> None:
        sock = node._rel_sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)  # type: ignore[union-attr]
            except zmq.Again:
                return
            if len(frames) != 3:
                node.count("rejected.reliable_control")
                continue
            identity, kind, body = frames
            try:
                info = msgspec.msgpack.decode(body)
                topic = info["topic"]
                window = min(MAX_WINDOW, max(1, int(info.get("window", 1))))
                credit = max(0, int(info.get("n", 0)))
                if kind not in (HELLO, CREDIT, BYE) or not isinstance(topic, str):
                    raise ValueError(f"unknown control frame {kind[:16]!r}")
            except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                node.count("rejected.reliable_control")
                node.log.warning("reliable_control_rejected", reason=str(exc) or type(exc).__name__)
                continue
            pub = node.publishers.get(topic)
            if kind == HELLO:
                reason = None
                if pub is None:
                    reason = f"node {node.name} does not publish `{topic}`"
                elif info.get("schema") != schema_id(pub.msg_type):
                    reason = (f"schema mismatch on `{topic}`: publisher sends {schema_id(pub.msg_type)}, "
                              f"subscriber expects {info.get('schema')}")
                else:
                    reason = compatible(pub.reliable, QoS("reliable", 1))
                if reason:
                    node.count("edge.incompatible")
                    node.log.error("incompatible_subscriber", topic=topic, subscriber=info.get("node"), reason=reason)
                    _send_control(sock, identity, NACK, {"topic": topic, "reason": reason})
                    continue
                assert pub is not None
                old = pub.peers.get(identity)
                peer = _ReliablePeer(identity, topic, str(info.get("node", "?")), window)
                if old is not None:
                    peer.pending = old.pending
                pub.peers[identity] = peer
                if _send_control(sock, identity, ACK, {"topic": topic}):
                    node.log.info("reliable_peer_matched", topic=topic, peer=peer.node, window=window)
                    pub.flush(peer)
                else:
                    pub.peers.pop(identity, None)
            elif pub is not None and identity in pub.peers:
                peer = pub.peers[identity]
                if kind == CREDIT:
                    peer.credit = min(MAX_WINDOW, peer.credit + credit)
                    peer.last_credit = time.monotonic()
                    pub.flush(peer)
                elif kind == BYE:
                    pub.peers.pop(identity, None)


def recv_frames(sock: zmq.Socket) -> list[Any]:
    """One multipart message, non-blocking. Topic, header and payload come as bytes (copying small frames
    is cheaper than wrapping them); out-of-band array frames stay zmq.Frames, so they decode without a copy."""
    frames: list[Any] = [sock.recv(_NOBLOCK)]
    while sock.getsockopt(_RCVMORE):
        frames.append(sock.recv(0, copy=len(frames) < 3))
    return frames


def send_frames(sock: zmq.Socket, frames: list[Any], flags: int = 0, first_array: int = 3) -> None:
    """Send a multipart message: small frames copied, array frames (from ``first_array`` on) zero-copy.
    Plain ints for flags: pyzmq's enum arithmetic costs more than the send itself for small messages."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, flags | _SNDMORE if i < last else flags, copy=i < first_array)


def _send_control(sock: zmq.Socket, identity: bytes, kind: bytes, body: dict[str, Any]) -> bool:
    try:
        sock.send_multipart([identity, kind, msgspec.msgpack.encode(body)], zmq.NOBLOCK)
    except zmq.ZMQError:  # the peer left (EHOSTUNREACH) or its pipe is full
        return False
    return True


class Subscription:
    """One subscription of one node; connects to every publisher of its topic."""

    def __init__(self, node: Node, topic: str, msg_type: type[Message], callback: Callable[[Any], Any],
                 qos: QoS) -> None:
        self.node = node
        self.topic = topic
        self.topic_b = topic.encode()
        self.msg_type = msg_type
        self.schema = schema_id(msg_type)
        self.callback = callback
        self.qos = qos
        self.endpoints: dict[str, zmq.Socket | None] = {}  # endpoint -> DEALER (reliable) or None
        self.last_header: Header | None = None
        self.incompatible: dict[str, str] = {}
        self.rejected_by: dict[str, int] = {}  # field -> count
        self.last_error = ""
        self.received = self.delivered = self.dropped = self.lost = self.rejected = self.errors = 0
        self._last_seq: dict[str, int] = {}
        self._queue: deque[tuple[Header, list[Any]]] = deque(maxlen=qos.depth)
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=256)
        self._credit_owed: dict[zmq.Socket, int] = {}
        self.sock: zmq.Socket | None = None
        if not qos.reliable:
            self.sock = node.ctx.socket(zmq.SUB)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.RCVHWM, max(1000, qos.depth))
            self.sock.setsockopt(zmq.SUBSCRIBE, self.topic_b)
            node._watch(self.sock, self._on_best_effort)

    # --- graph ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "schema": self.schema, "qos": str(self.qos)}

    def counts(self) -> dict[str, int]:
        return {"received": self.received, "delivered": self.delivered, "dropped": self.dropped,
                "lost": self.lost, "rejected": self.rejected, "callback_errors": self.errors}

    def stats(self) -> dict[str, Any]:
        rate = 0.0
        if len(self._rate_window) >= 2:
            (t0, n0), (t1, n1) = self._rate_window[0], self._rate_window[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        return {**self.counts(), "qos": str(self.qos), "schema": self.schema, "rate_hz": round(rate, 3),
                "publishers": len(self.endpoints), "incompatible": dict(self.incompatible),
                "rejected_by": dict(self.rejected_by), "last_error": self.last_error}

    @property
    def needs_lookup(self) -> bool:
        return not self.endpoints

    def update_publishers(self, publishers: list[dict[str, Any]], drop_missing: bool = True) -> None:
        """Connect to new publishers, drop gone ones (unless the registry has just restarted and may not
        know them yet); refuse incompatible ones by name."""
        wanted: set[str] = set()
        for p in publishers:
            reason = None
            if p.get("schema") != self.schema:
                reason = f"schema mismatch: publisher sends {p.get('schema')}, this subscription expects {self.schema}"
            else:
                reason = compatible(bool(p.get("reliable")), self.qos)
            if reason:
                if self.incompatible.get(p["node"]) != reason:
                    self.incompatible[p["node"]] = reason
                    self.node.count("edge.incompatible")
                    self.node.log.error("incompatible_publisher", topic=self.topic, publisher=p["node"],
                                        reason=reason)
                continue
            self.incompatible.pop(p["node"], None)
            endpoint = p.get("reliable_endpoint") if self.qos.reliable else p.get("endpoint")
            if endpoint:
                wanted.add(endpoint)
        for endpoint in wanted - set(self.endpoints):
            self.connect(endpoint)
        if drop_missing:
            for endpoint in set(self.endpoints) - wanted:
                self.disconnect(endpoint)

    def connect(self, endpoint: str) -> None:
        if endpoint in self.endpoints:
            return
        if self.qos.reliable:
            dealer = self.node.ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(endpoint)
            dealer.send_multipart([HELLO, msgspec.msgpack.encode(
                {"topic": self.topic, "schema": self.schema, "window": self.qos.depth, "node": self.node.name})])
            self._credit_owed[dealer] = 0
            self.node._watch(dealer, lambda d=dealer: self._on_reliable(d))
            self.endpoints[endpoint] = dealer
        else:
            assert self.sock is not None
            self.sock.connect(endpoint)
            self.endpoints[endpoint] = None

    def disconnect(self, endpoint: str) -> None:
        dealer = self.endpoints.pop(endpoint, None)
        if dealer is not None:
            self.node._unwatch(dealer)
            self._credit_owed.pop(dealer, None)
            dealer.close(0)
        elif self.sock is not None:
            try:
                self.sock.disconnect(endpoint)
            except zmq.ZMQError:
                pass

    def close(self) -> None:
        for endpoint, dealer in list(self.endpoints.items()):
            if dealer is not None:
                try:
                    dealer.send_multipart([BYE, msgspec.msgpack.encode({"topic": self.topic})], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self.disconnect(endpoint)
        if self.sock is not None:
            self.node._unwatch(self.sock)
            self.sock.close(0)
            self.sock = None

    # --- receive ----------------------------------------------------------------------------

    def _on_best_effort(self) -> None:
        sock = self.sock
        assert sock is not None
        batch: list[list[Any]] = []
        while len(batch) < DRAIN_LIMIT:
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                break
            if frames[0] != self.topic_b:
                continue  # a longer topic sharing our prefix
            header = self._track_seq(frames)
            if header is not None:
                batch.append((header, frames))
        if not batch:
            return
        self.received += len(batch)
        self._note_rate()
        if self.qos.kind == "latest":
            self.dropped += len(batch) - 1
            self._deliver(*batch[-1])
            return
        overflow = max(0, len(self._queue) + len(batch) - self.qos.depth)
        self.dropped += overflow
        self._queue.extend(batch)
        while self._queue:
            self._deliver(*self._queue.popleft())

    def _on_reliable(self, dealer: zmq.Socket) -> None:
        got = 0
        while got < DRAIN_LIMIT:
            try:
                frames = recv_frames(dealer)
            except zmq.Again:
                break
            head = frames[0]
            if head in CONTROL:
                self._on_control(head, frames)
                continue
            got += 1
            header = self._track_seq(frames)
            if header is not None:
                self._deliver(header, frames)
        if got:
            self.received += got
            self._note_rate()
            owed = self._credit_owed.get(dealer, 0) + got
            if owed * 2 >= self.qos.depth:
                dealer.send_multipart([CREDIT, msgspec.msgpack.encode({"topic": self.topic, "n": owed})])
                owed = 0
            self._credit_owed[dealer] = owed

    def _on_control(self, head: bytes, frames: list[Any]) -> None:
        if head == NACK:
            try:
                reason = msgspec.msgpack.decode(frames[1]).get("reason", "")
            except (msgspec.DecodeError, AttributeError, IndexError):
                reason = "refused"
            self.node.count("edge.incompatible")
            self.incompatible["?"] = reason
            self.node.log.error("reliable_subscription_refused", topic=self.topic, reason=reason)

    def _note_rate(self) -> None:
        self._rate_window.append((time.monotonic(), self.received))

    def _track_seq(self, frames: list[Any]) -> Header | None:
        """Decode the header and count sequence gaps (messages lost in transport); None if rejected."""
        if len(frames) < 3:
            self._reject(DecodeError("frames", f"expected at least 3 frames, got {len(frames)}"))
            return None
        try:
            self.node.codec.check_size(frames)
            header = self.node.codec.decode_header(frames[1])
        except DecodeError as exc:
            self._reject(exc)
            return None
        last = self._last_seq.get(header.sender)
        if last is not None and header.seq > last + 1:
            self.lost += header.seq - last - 1
        self._last_seq[header.sender] = header.seq
        return header

    def _deliver(self, header: Header, frames: list[Any]) -> None:
        node = self.node
        try:
            msg = node.codec.decode(frames, self.msg_type, header)
        except DecodeError as exc:
            self._reject(exc)
            return
        self.last_header = header
        self.delivered += 1
        try:
            self.callback(msg)
        except Exception as exc:  # a failing callback never takes the node down
            self.errors += 1
            node.log.exception("callback_failed", topic=self.topic, error=str(exc))

    def _reject(self, exc: DecodeError) -> None:
        self.rejected += 1
        self.rejected_by[exc.field] = self.rejected_by.get(exc.field, 0) + 1
        self.last_error = str(exc)
        if self.rejected <= 5 or self.rejected % 100 == 0:
            self.node.log.warning("message_rejected", topic=self.topic, field=exc.field, reason=exc.reason,
                                  rejected_total=self.rejected)
