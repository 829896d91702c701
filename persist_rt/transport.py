"""Publishers, subscriptions and timers: the data path between nodes.

Best effort (latest, queue): the publisher's PUB socket, subscribers' SUB sockets connected
straight to it. Reliable: the publisher's ROUTER socket, one DEALER per (subscription, publisher);
the subscriber grants credit (``HELLO`` with the window, then ``CREDIT n`` as it consumes), the
publisher sends only against credit and buffers up to ``buffer`` messages per peer, then blocks
its own executor until credit arrives. Messages sent but not yet paid back by credit stay with the
publisher: if the subscriber's node dies and comes back (a ``HELLO`` from the same node name), the
new peer replaces the old one and gets them again, then everything still pending. Delivery across
such a restart is at least once: a message the dead process consumed but had not yet credited
comes again. A backlog goes out as one ``BATCH`` frame. Wire details: docs/wire.md.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from persist_rt.codec import DecodeError, Header, HeaderPacker
from persist_rt.log import should_log
from persist_rt.qos import QoS, compatible
from protocols.base import Message, schema_id

if TYPE_CHECKING:
    from persist_rt.executor import Executor
    from persist_rt.node import Node

HELLO, CREDIT, BYE = b"HELLO", b"CREDIT", b"BYE"  # upstream (subscriber -> publisher)
ACK, NACK, SYNC, BATCH = b"ACK", b"NACK", b"SYNC", b"BATCH"  # downstream, in frame 0 where data has its topic
CONTROL = {ACK, NACK, SYNC}
PEER_TIMEOUT_S = 30.0  # a connected peer that neither credits nor answers SYNC for this long is dropped
GONE_GRACE_S = 10.0  # a peer whose connection closed keeps its backlog this long for its node to come back
SYNC_PERIOD_S = 0.5  # liveness probe of a peer the publisher is blocked on
DRAIN_SYNC_S = 0.05  # how often drain() asks a peer for the credit it owes
DRAIN_LIMIT = 10_000  # messages read from one socket per executor turn
MAX_WINDOW = 1 << 16  # credit a subscriber may hold; a larger request is clamped
MAX_SENDERS = 1024  # senders whose sequence numbers a subscription remembers
BATCH_MAX_MESSAGES = 1024
COALESCE_LINGER_S = 0.02  # the longest a coalescing publisher holds a message back for its batch
BATCH_MAX_BYTES = 1 << 20
_NOBLOCK, _SNDMORE, _EVENTS, _POLLIN = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.EVENTS), int(zmq.POLLIN)
# pyzmq's Python-level wrappers cost more than the call itself for small frames: go to the backend directly
_zsend, _zrecv, _zget = zmq.backend.Socket.send, zmq.backend.Socket.recv, zmq.backend.Socket.get
_EHOSTUNREACH = int(zmq.EHOSTUNREACH)
MAX_SENDER_LABELS = 32  # distinct unauthorised senders counted by name per subscription; the rest as `other`


def ipc_domain() -> str | None:
    """Where this process's abstract IPC names are reachable: one boot of one kernel, one network namespace
    (hostnames can repeat across machines). None where same-host edges should not ride IPC: not Linux, or
    ``PERSIST_SAME_HOST_IPC=0``."""
    if sys.platform != "linux" or os.environ.get("PERSIST_SAME_HOST_IPC", "1") == "0":
        return None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        return None


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
    __slots__ = ("credit", "gone_since", "identity", "last_credit", "last_sync", "node", "pending", "topic",
                 "unacked")

    def __init__(self, identity: bytes, topic: str, node: str, credit: int) -> None:
        self.identity = identity
        self.topic = topic
        self.node = node
        self.credit = credit
        self.pending: deque[list[Any]] = deque()  # accepted, not sent yet
        self.unacked: deque[list[Any]] = deque()  # sent, not paid back by credit yet (at most the window)
        self.last_credit = self.last_sync = time.monotonic()
        self.gone_since: float | None = None  # when its connection closed (send said EHOSTUNREACH)


class Publisher:
    """One topic of one node. It sends on the node's PUB socket (best effort) and through its ``ReliableRouter``;
    while it waits for credit it asks the node for control turns only (``Node.serve_control``: credit, services,
    the registry lease), so no data callback of the node runs inside ``publish``."""

    def __init__(self, node: Node, topic: str, msg_type: type[Message], *, reliable: bool, buffer: int,
                 pub_sock: zmq.Socket, router: ReliableRouter | None = None, coalesce: int = 1) -> None:
        if reliable and router is None:
            raise ValueError(f"topic `{topic}`: a reliable publisher needs the node's reliable router")
        if not 1 <= coalesce <= buffer:
            raise ValueError(f"topic `{topic}`: coalesce must be between 1 and buffer ({buffer}), got {coalesce}")
        self.node = node
        self.topic = topic
        self.topic_b = topic.encode()
        self.msg_type = msg_type
        self.reliable = reliable
        self.buffer = buffer
        self.coalesce = coalesce  # reliable peers get up to this many messages per send (one BATCH frame)
        self.held_since: float | None = None  # when a message was first held back for a batch, while any is
        self.seq = 0
        self.peers: dict[bytes, _ReliablePeer] = {}
        self.blocked_s = 0.0
        self.peers_lost = 0
        self.peers_replaced = 0
        self.pending_max = 0  # high-water mark of any peer's buffer: bounded by ``buffer`` + 1 (+ a dead peer's)
        self.best_effort = False  # does any best-effort subscriber listen (XPUB told us)?
        self._peer_list: list[_ReliablePeer] = []  # replaced, never mutated: publish() iterates it
        self._header = HeaderPacker(msg_type.SCHEMA, msg_type.VERSION, node.name)
        self._encode = node.codec.encode_frames
        self._pub_sock = pub_sock
        self._router = router

    def update_best_effort(self, prefixes: set[bytes]) -> None:
        self.best_effort = any(self.topic_b.startswith(p) for p in prefixes)

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "schema": schema_id(self.msg_type), "reliable": self.reliable}

    def stats(self) -> dict[str, Any]:
        return {"sent": self.seq, "schema": schema_id(self.msg_type), "reliable_peers": len(self.peers),
                "pending": sum(len(p.pending) for p in self.peers.values()),
                "unacked": sum(len(p.unacked) for p in self.peers.values()),
                "pending_max": self.pending_max, "blocked_s": round(self.blocked_s, 6),
                "peers_lost": self.peers_lost, "peers_replaced": self.peers_replaced}

    def matched(self) -> list[str]:
        """Names of the nodes connected to this topic with reliable QoS (handshake done)."""
        return sorted(p.node for p in self.peers.values())

    def publish(self, msg: Message, *, step: int = -1, sim_time: float = 0.0) -> None:
        if type(msg) is not self.msg_type:
            raise TypeError(f"topic `{self.topic}` carries {self.msg_type.__name__}, got {type(msg).__name__}")
        self.seq = seq = self.seq + 1
        frames = self._encode(self.topic_b, self._header.pack(seq, step, sim_time), msg)
        if self.best_effort:
            send_frames(self._pub_sock, frames)
        peers = self._peer_list
        for peer in peers:
            if peers is not self._peer_list:  # a peer was replaced or dropped while we waited for credit
                current = self._current(peer)
                if current is None:
                    continue
                peer = current
            if peer.credit > 0 and not peer.pending and self.coalesce == 1 and self._send_to(peer, frames):
                continue
            pending = peer.pending
            pending.append(frames)
            if len(pending) > self.pending_max:
                self.pending_max = len(pending)
            if len(pending) >= self.coalesce > 1:
                self.flush(peer)
            if len(pending) > self.buffer:
                self._wait_for_credit(peer)
        if self.coalesce > 1 and self.held_since is None and any(p.pending for p in self._peer_list):
            self.held_since = time.monotonic()

    def flush_held(self) -> None:
        """Send what a coalescing publisher holds back, as far as credit goes (the executor calls this once the
        oldest held message has waited ``COALESCE_LINGER_S``); what credit does not cover goes with the next
        credit, as on any reliable edge."""
        self.held_since = None
        for peer in self._peer_list:
            self.flush(peer)

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Wait up to ``timeout_s`` until every reliable peer has been sent and has consumed (paid back by
        credit) everything published so far; True if so. Peers whose connection is gone are not waited for."""
        node = self.node
        deadline = time.monotonic() + timeout_s
        self.held_since = None
        while True:
            now = time.monotonic()
            waiting = [p for p in self._peer_list if (p.pending or p.unacked) and p.gone_since is None]
            if not waiting or now >= deadline:
                break
            for peer in waiting:
                self.flush(peer)
                if not peer.pending and peer.unacked and now - peer.last_sync >= DRAIN_SYNC_S:
                    self._sync(peer)
            node.serve_control(max(1, min(20, int((deadline - now) * 1000))))
        return not any(p.pending or p.unacked for p in self.peers.values())

    def flush(self, peer: _ReliablePeer) -> None:
        """Send what is pending for ``peer`` as far as its credit goes; a backlog goes out in batches."""
        pending = peer.pending
        while peer.credit > 0 and pending and peer.gone_since is None:
            if peer.credit > 1 and len(pending) > 1 and len(pending[0]) == 3 and len(pending[1]) == 3:
                if not self._send_batch(peer):
                    return
            else:
                if not self._send_to(peer, pending[0]):
                    return
                pending.popleft()

    def close(self) -> None:
        """Forget reliable peers; messages still pending for them are counted as undelivered."""
        for peer in list(self.peers.values()):
            self._count_undelivered(peer)
        self.peers.clear()
        self._peers_changed()

    # --- internals ----------------------------------------------------------------------------

    def _send_to(self, peer: _ReliablePeer, frames: list[Any]) -> bool:
        """Send one message to a reliable peer; False if it stays pending (socket full or peer gone)."""
        try:
            send_frames(self._router_sock(), frames, _NOBLOCK, identity=peer.identity)
        except zmq.Again:  # the pipe to this peer is full: keep the message, retry on the next credit
            return False
        except zmq.ZMQError as exc:
            self._send_failed(peer, exc)
            return False
        peer.credit -= 1
        peer.unacked.append(frames)
        return True

    def _send_batch(self, peer: _ReliablePeer) -> bool:
        """Send the longest run of array-free messages at the head of ``peer.pending`` as one BATCH frame."""
        pending = peer.pending
        limit = min(peer.credit, len(pending), BATCH_MAX_MESSAGES)
        parts = [b""]
        size = 0
        count = 0
        for frames in itertools.islice(pending, limit):
            if len(frames) != 3 or (count and size + len(frames[1]) + len(frames[2]) > BATCH_MAX_BYTES):
                break
            parts += (b"\x92", frames[1], frames[2])
            size += len(frames[1]) + len(frames[2])
            count += 1
        parts[0] = b"\xdd" + count.to_bytes(4, "big")  # msgpack array32 of [header, payload] pairs
        sock = self._router_sock()
        try:
            _zsend(sock, peer.identity, _SNDMORE | _NOBLOCK)
            _zsend(sock, BATCH, _SNDMORE)
            _zsend(sock, self.topic_b, _SNDMORE)
            _zsend(sock, b"".join(parts), 0)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            self._send_failed(peer, exc)
            return False
        peer.credit -= count
        unacked = peer.unacked
        for _ in range(count):
            unacked.append(pending.popleft())
        return True

    def _send_failed(self, peer: _ReliablePeer, exc: zmq.ZMQError) -> None:
        if exc.errno != _EHOSTUNREACH:
            raise exc
        if peer.gone_since is None:  # the subscriber's connection closed: keep its backlog for a replacement
            peer.gone_since = time.monotonic()
            self.node.log.warning("reliable_peer_disconnected", topic=self.topic, peer=peer.node,
                                  pending=len(peer.pending) + len(peer.unacked))

    def _sync(self, peer: _ReliablePeer) -> None:
        """Ask ``peer`` for the credit it owes; also a liveness probe (a closed connection fails the send)."""
        peer.last_sync = time.monotonic()
        sock = self._router_sock()
        try:
            _zsend(sock, peer.identity, _SNDMORE | _NOBLOCK)
            _zsend(sock, SYNC, _SNDMORE)
            _zsend(sock, msgspec.msgpack.encode({"topic": self.topic}), 0)
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            self._send_failed(peer, exc)

    def _peers_changed(self) -> None:
        self._peer_list = list(self.peers.values())

    def _peer_named(self, node: str) -> _ReliablePeer | None:
        return next((p for p in self.peers.values() if p.node == node), None)

    def _current(self, peer: _ReliablePeer) -> _ReliablePeer | None:
        """The peer now serving ``peer``'s node: itself, its replacement, or None if it was dropped."""
        return peer if self.peers.get(peer.identity) is peer else self._peer_named(peer.node)

    def _count_undelivered(self, peer: _ReliablePeer) -> None:
        if peer.pending:
            self.node.count(f"edge.{self.topic}.undelivered", len(peer.pending))
        if peer.unacked:  # sent, but the subscriber never said it consumed them
            self.node.count(f"edge.{self.topic}.unconfirmed", len(peer.unacked))

    def _remove_peer(self, peer: _ReliablePeer) -> bool:
        if self.peers.get(peer.identity) is not peer:
            return False
        del self.peers[peer.identity]
        self._peers_changed()
        self._count_undelivered(peer)
        return True

    def _drop_peer(self, peer: _ReliablePeer, why: str) -> None:
        if self._remove_peer(peer):
            self.peers_lost += 1
            self.node.count(f"edge.{self.topic}.peer_lost")
            self.node.log.warning("reliable_peer_dropped", topic=self.topic, peer=peer.node, reason=why,
                                  pending=len(peer.pending) + len(peer.unacked))

    def _replace_peer(self, old: _ReliablePeer, new: _ReliablePeer) -> None:
        """``new`` (the same node, reconnected) takes over: what ``old`` may not have consumed, then its backlog."""
        del self.peers[old.identity]
        new.pending = old.unacked
        new.pending.extend(old.pending)
        self.peers_replaced += 1
        self.node.count(f"edge.{self.topic}.peer_replaced")
        self.node.log.warning("reliable_peer_replaced", topic=self.topic, peer=new.node,
                              resent=len(old.unacked), pending=len(new.pending))

    def _router_sock(self) -> zmq.Socket:
        assert self._router is not None  # only reliable publishers have peers
        return self._router.sock

    def _wait_for_credit(self, peer: _ReliablePeer) -> None:
        """Block the producer (bounded buffer full) while still answering control traffic. A peer replaced by
        a reconnecting node of the same name hands the wait over to the new peer."""
        start = time.monotonic()
        while True:
            current = self._current(peer)
            if current is None or len(current.pending) <= self.buffer:
                break
            peer = current
            self.node.serve_control(50)
            now = time.monotonic()
            if peer.gone_since is None and now - peer.last_sync >= SYNC_PERIOD_S:
                self._sync(peer)
            if peer.gone_since is not None and now - peer.gone_since > GONE_GRACE_S:
                self._drop_peer(peer, f"connection closed and no node `{peer.node}` came back in {GONE_GRACE_S:g} s")
            elif now - peer.last_credit > PEER_TIMEOUT_S:
                self._drop_peer(peer, f"no credit for {PEER_TIMEOUT_S:g} s")
        self.blocked_s += time.monotonic() - start

    # --- peers, as the router reports them ----------------------------------------------------

    def accept_peer(self, identity: bytes, node: str, window: int) -> _ReliablePeer:
        """A subscriber's HELLO: a new peer, or the same node reconnected (it takes over the old one's backlog)."""
        peer = _ReliablePeer(identity, self.topic, node, window)
        old = self.peers.get(identity) or self._peer_named(node)
        if old is not None:
            self._replace_peer(old, peer)
        self.peers[identity] = peer
        self._peers_changed()
        return peer

    def on_credit(self, identity: bytes, n: int) -> None:
        peer = self.peers.get(identity)
        if peer is None:
            return
        peer.credit = min(MAX_WINDOW, peer.credit + n)
        peer.last_credit = time.monotonic()
        unacked = peer.unacked
        for _ in range(min(n, len(unacked))):
            unacked.popleft()
        self.flush(peer)

    def on_bye(self, identity: bytes) -> None:
        peer = self.peers.get(identity)
        if peer is not None:
            self._remove_peer(peer)


class ReliableRouter:
    """The node's one ROUTER socket for its reliable publishers, and the one owner of the subscribers' control
    frames on it (HELLO, CREDIT, BYE): it checks them and hands each to the publisher of its topic."""

    def __init__(self, node: Node, sock: zmq.Socket, publishers: dict[str, Publisher]) -> None:
        self.node = node
        self.sock = sock
        self._publishers = publishers

    def on_readable(self) -> None:
        sock = self.sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 3:
                self._reject("frames", f"expected 3 frames (identity, kind, body), got {len(frames)}")
                continue
            identity, kind, body = frames
            field = "kind"
            try:
                if kind not in (HELLO, CREDIT, BYE):
                    raise ValueError(f"unknown control frame {kind[:16]!r}")
                field = "body"
                info = msgspec.msgpack.decode(body)
                topic = info["topic"]
                window = min(MAX_WINDOW, max(1, int(info.get("window", 1))))
                credit = max(0, int(info.get("n", 0)))
                if not isinstance(topic, str):
                    raise ValueError("field `topic` must be a string")
            except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                self._reject(field, str(exc) or type(exc).__name__)
                continue
            pub = self._publishers.get(topic)
            if kind == HELLO:
                self._hello(identity, topic, pub, info, window)
            elif pub is not None and kind == CREDIT:
                pub.on_credit(identity, credit)
            elif pub is not None:
                pub.on_bye(identity)

    def _reject(self, field: str, reason: str) -> None:
        self.node.count(f"rejected.reliable_control.{field}")
        if should_log(self.node.count("rejected.reliable_control")):
            self.node.log.warning("reliable_control_rejected", field=field, reason=reason)

    def _hello(self, identity: bytes, topic: str, pub: Publisher | None, info: dict[str, Any], window: int) -> None:
        node = self.node
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
            _send_control(self.sock, identity, NACK, {"topic": topic, "reason": reason})
            return
        assert pub is not None
        peer = pub.accept_peer(identity, str(info.get("node", "?")), window)
        if _send_control(self.sock, identity, ACK, {"topic": topic}):
            node.log.info("reliable_peer_matched", topic=topic, peer=peer.node, window=window)
            pub.flush(peer)
        else:  # gone already; its backlog waits for the next HELLO from the same node
            peer.gone_since = time.monotonic()


def recv_frames(sock: zmq.Socket) -> list[Any]:
    """One multipart message, non-blocking. Topic, header and payload come as bytes (copying small frames
    is cheaper than wrapping them); out-of-band array frames stay zmq.Frames, so they decode without a copy.
    Each frame is received as a zmq.Frame for its `more` flag: asking the socket for RCVMORE instead costs
    pyzmq an option lookup per frame, more than the receive itself."""
    frame = _zrecv(sock, _NOBLOCK, False)
    frames: list[Any] = [frame.bytes]
    while frame.more:
        frame = _zrecv(sock, 0, False)
        frames.append(frame.bytes if len(frames) < 3 else frame)
    return frames


def readable(sock: zmq.Socket) -> bool:
    """Is another message waiting? Cheaper than letting a non-blocking recv raise zmq.Again."""
    return bool(_zget(sock, _EVENTS) & _POLLIN)


def send_frames(sock: zmq.Socket, frames: list[Any], flags: int = 0, identity: bytes | None = None) -> None:
    """Send ``[topic, header, payload, *arrays]`` (after ``identity`` on a ROUTER): small frames copied, array
    frames zero-copy. Plain ints for flags: pyzmq's enum arithmetic costs more than a small send."""
    if identity is not None:
        _zsend(sock, identity, flags | _SNDMORE)
        flags = 0  # a ROUTER refuses (Again/EHOSTUNREACH) on the first frame or not at all
    last = len(frames) - 1
    _zsend(sock, frames[0], flags | _SNDMORE)
    _zsend(sock, frames[1], flags | _SNDMORE)
    if last == 2:
        _zsend(sock, frames[2], flags)
        return
    _zsend(sock, frames[2], flags | _SNDMORE)
    for i in range(3, last + 1):
        _zsend(sock, frames[i], flags | _SNDMORE if i < last else flags, False)


def _send_control(sock: zmq.Socket, identity: bytes, kind: bytes, body: dict[str, Any]) -> bool:
    try:
        sock.send_multipart([identity, kind, msgspec.msgpack.encode(body)], zmq.NOBLOCK)
    except zmq.ZMQError:  # the peer left (EHOSTUNREACH) or its pipe is full
        return False
    return True


class Subscription:
    """One subscription of one node; connects to every publisher of its topic."""

    def __init__(self, node: Node, topic: str, msg_type: type[Message], callback: Callable[[Any], Any],
                 qos: QoS, executor: Executor) -> None:
        self.node = node
        self._executor = executor
        self.topic = topic
        self.topic_b = topic.encode()
        self.msg_type = msg_type
        self.schema = schema_id(msg_type)
        self.callback = callback
        self._decoder = node.codec.decoder_for(msg_type)
        self._batch_decoder = node.codec.decoder_for(list[tuple[Header, msg_type]])  # type: ignore[valid-type]
        self.qos = qos
        self.endpoints: dict[str, zmq.Socket | None] = {}  # endpoint -> DEALER (reliable) or None
        self.last_header: Header | None = None
        self.incompatible: dict[str, str] = {}
        self.rejected_by: dict[str, int] = {}  # field -> count
        self.last_error = ""
        self.received = self.delivered = self.dropped = self.lost = self.rejected = self.errors = 0
        self.batches = 0  # BATCH frames received (a backlog, or a coalescing publisher)
        # command authority: None, anyone may publish this topic; else only these nodes (docs/security.md)
        self.authorised: frozenset[str] | None = node.authority.get(topic)
        self.unauthorised = 0  # messages dropped because their sender may not publish this topic
        self.unauthorised_by: dict[str, int] = {}  # sender -> messages dropped
        self.dropped_by: dict[str, int] = {}  # sender -> messages dropped for newer ones (queue full or `latest`)
        self._refused: dict[zmq.Socket, str] = {}  # DEALER to an unauthorised publisher -> its registered name
        self._publisher_at: dict[str, str] = {}  # endpoint -> the node the registry said publishes there
        self._last_seq: dict[str, int] = {}  # sender -> last sequence number (at most MAX_SENDERS)
        self._last_wall: dict[str, float] = {}  # sender -> send time of that message
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=256)
        self._credit_owed: dict[zmq.Socket, int] = {}
        self.sock: zmq.Socket | None = None
        if not qos.reliable:
            self.sock = node.ctx.socket(zmq.SUB)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.RCVHWM, max(1000, qos.depth))
            self.sock.setsockopt(zmq.SUBSCRIBE, self.topic_b)
            executor.watch(self.sock, self._on_best_effort)

    # --- graph ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "schema": self.schema, "qos": str(self.qos)}

    def counts(self) -> dict[str, int]:
        return {"received": self.received, "delivered": self.delivered, "dropped": self.dropped,
                "lost": self.lost, "rejected": self.rejected, "callback_errors": self.errors,
                "unauthorised": self.unauthorised}

    def stats(self) -> dict[str, Any]:
        rate = 0.0
        if len(self._rate_window) >= 2:
            (t0, n0), (t1, n1) = self._rate_window[0], self._rate_window[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
        return {**self.counts(), "qos": str(self.qos), "schema": self.schema, "rate_hz": round(rate, 3),
                "publishers": len(self.endpoints), "endpoints": sorted(self.endpoints), "batches": self.batches,
                "incompatible": dict(self.incompatible), "rejected_by": dict(self.rejected_by),
                "unauthorised_by": dict(self.unauthorised_by), "dropped_by": dict(self.dropped_by),
                "last_error": self.last_error}

    @property
    def needs_lookup(self) -> bool:
        return not self.endpoints

    def update_publishers(self, publishers: list[dict[str, Any]], drop_missing: bool = True) -> None:
        """Connect to new publishers, drop gone ones (unless the registry has just restarted and may not
        know them yet); refuse incompatible ones by name."""
        wanted: dict[str, str] = {}  # endpoint -> the publisher's node name
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
            tcp, local = (("reliable_endpoint", "reliable_local_endpoint") if self.qos.reliable
                          else ("endpoint", "local_endpoint"))
            same_host = self.node.ipc_domain is not None and p.get("ipc_domain") == self.node.ipc_domain
            endpoint = (same_host and p.get(local)) or p.get(tcp)
            if endpoint and self._may_connect(p["node"]):
                wanted[endpoint] = p["node"]
        if self.authorised is not None:  # an endpoint now another node's (a port reused): judge it afresh
            for endpoint in [e for e in wanted if e in self.endpoints and self._publisher_at.get(e) != wanted[e]]:
                self.disconnect(endpoint)
        for endpoint in wanted.keys() - self.endpoints.keys():
            self.connect(endpoint, wanted[endpoint])
        if drop_missing:
            for endpoint in self.endpoints.keys() - wanted.keys():
                self.disconnect(endpoint)

    def _may_connect(self, publisher: str) -> bool:
        """Connect to this publisher? An unauthorised one only over a reliable edge, where its connection is
        its own and every frame on it can be dropped and counted under its name; a best-effort SUB socket
        cannot tell its publishers apart, so an unauthorised publisher is not connected to at all."""
        if self.authorised is None or publisher in self.authorised or self.qos.reliable:
            return True
        if self.incompatible.get(publisher) != "unauthorised":
            self.incompatible[publisher] = "unauthorised"
            self.node.count(f"authority.{self.topic}.refused_publisher")
            self.node.log.error("unauthorised_publisher", topic=self.topic, publisher=publisher,
                                authorised=sorted(self.authorised))
        return False

    def connect(self, endpoint: str, publisher: str | None = None) -> None:
        if endpoint in self.endpoints:
            return
        self._publisher_at[endpoint] = publisher or "?"
        curve = self.node.curve_id
        if self.qos.reliable:
            dealer = self.node.ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            if curve is not None:  # the handshake proves the publisher holds the key of the name it registered
                curve.client(dealer, publisher or "?")
            # notice a publisher host that vanished without a FIN; set before connect, or libzmq ignores them
            dealer.setsockopt(zmq.HEARTBEAT_IVL, 1000)
            dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
            dealer.connect(endpoint)
            dealer.send_multipart([HELLO, msgspec.msgpack.encode(
                {"topic": self.topic, "schema": self.schema, "window": self.qos.depth, "node": self.node.name})])
            self.endpoints[endpoint] = dealer
            if self.authorised is not None and publisher not in self.authorised:
                self._refused[dealer] = publisher or "?"
                self.node.log.error("unauthorised_publisher", topic=self.topic, publisher=publisher,
                                    authorised=sorted(self.authorised), action="its messages are dropped")
                self._executor.watch(dealer, lambda d=dealer: self._on_refused(d))
                return
            self._credit_owed[dealer] = 0
            self._executor.watch(dealer, lambda d=dealer: self._on_reliable(d))
        else:
            assert self.sock is not None
            if curve is not None:  # applies to this connect: each publisher's connection checks its own key
                curve.client(self.sock, publisher or "?")
            self.sock.connect(endpoint)
            self.endpoints[endpoint] = None

    def disconnect(self, endpoint: str) -> None:
        dealer = self.endpoints.pop(endpoint, None)
        self._publisher_at.pop(endpoint, None)
        if dealer is not None:
            self._executor.unwatch(dealer)
            self._credit_owed.pop(dealer, None)
            self._refused.pop(dealer, None)
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
            self._executor.unwatch(self.sock)
            self.sock.close(0)
            self.sock = None

    # --- receive ----------------------------------------------------------------------------

    def _on_best_effort(self) -> None:
        sock = self.sock
        assert sock is not None
        topic_b = self.topic_b
        batch: list[tuple[Header, list[Any]]] = []
        while len(batch) < DRAIN_LIMIT:
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                break
            if frames[0] == topic_b:  # else a longer topic sharing our prefix
                header = self._track_seq(frames)
                if header is not None:
                    batch.append((header, frames))
            if not _zget(sock, _EVENTS) & _POLLIN:
                break
        if not batch:
            return
        self.received += len(batch)
        self._note_rate()
        if len(batch) == 1:
            self._deliver(*batch[0])
            return
        # delivery is synchronous, so the queue is what arrived in this turn: keep its newest ``depth``
        keep = 1 if self.qos.kind == "latest" else self.qos.depth
        if len(batch) > keep:
            self.dropped += len(batch) - keep
            for header, _ in batch[:-keep]:
                self.dropped_by[header.sender] = self.dropped_by.get(header.sender, 0) + 1
            del batch[:-keep]
        for header, frames in batch:
            self._deliver(header, frames)

    def _on_reliable(self, dealer: zmq.Socket) -> None:
        # What is consumed but not yet credited lives in self._credit_owed throughout, never in a local: a callback
        # can run the node's control traffic (a publisher's drain does), whose heartbeat pays back what is owed,
        # and whose registry update can drop this very publisher (its DEALER is then closed, its entry gone).
        owed = self._credit_owed
        got = 0
        while got < DRAIN_LIMIT:
            try:
                frames = recv_frames(dealer)
            except zmq.Again:
                break
            head = frames[0]
            if head == BATCH:
                self.batches += 1
                n = self._on_batch(frames)
                got += n
                if dealer in owed:
                    owed[dealer] += n
            elif head == SYNC:  # the publisher asks what we consumed: everything before this frame
                if self._grant(dealer, owed[dealer]):
                    owed[dealer] = 0
            elif head in CONTROL:
                self._on_control(head, frames)
            else:
                got += 1
                owed[dealer] += 1
                header = self._track_seq(frames)
                if header is not None:
                    self._deliver(header, frames)
            if dealer.closed or not _zget(dealer, _EVENTS) & _POLLIN:
                break
        if got:
            self.received += got
            self._note_rate()
        n = owed.get(dealer)  # None: the publisher was dropped (disconnect closes its DEALER and forgets it)
        if n is not None and n * 2 >= self.qos.depth and self._grant(dealer, n):
            owed[dealer] = 0

    def _on_refused(self, dealer: zmq.Socket) -> None:
        """An unauthorised publisher's connection: every message on it is dropped and counted under its name,
        never decoded; credit is paid back so that each further attempt arrives and is counted too."""
        got = 0
        while got < DRAIN_LIMIT and readable(dealer):
            frames = recv_frames(dealer)
            if frames[0] in CONTROL:
                if frames[0] != SYNC:
                    self._on_control(frames[0], frames)
            elif frames[0] == BATCH and len(frames) == 3 and frames[2][:1] == b"\xdd":  # msgpack array32 of messages
                got += min(BATCH_MAX_MESSAGES, max(1, int.from_bytes(frames[2][1:5], "big")))
            else:
                got += 1
        if got:
            self.received += got
            self._drop_unauthorised(self._refused.get(dealer, "?"), got)
            self._grant(dealer, got)

    def _drop_unauthorised(self, sender: str, n: int) -> None:
        self.unauthorised += n
        by = self.unauthorised_by
        if sender not in by and len(by) >= MAX_SENDER_LABELS:
            sender = "other"  # a name per attacker must not grow the counters without bound
        before = by.get(sender, 0)
        by[sender] = before + n
        self.node.count(f"authority.{self.topic}.refused.{sender}", n)
        if before < 5 or before // 1000 != by[sender] // 1000:
            self.node.log.warning("unauthorised_message", topic=self.topic, sender=sender, dropped=by[sender],
                                  authorised=sorted(self.authorised or ()))

    def grant_owed(self) -> None:
        """Pay back credit for what was consumed but not yet credited (the executor calls this when idle), so
        the publisher can forget those messages."""
        for dealer, owed in self._credit_owed.items():
            if owed and self._grant(dealer, owed):
                self._credit_owed[dealer] = 0

    def _grant(self, dealer: zmq.Socket, n: int) -> bool:
        try:
            dealer.send_multipart([CREDIT, msgspec.msgpack.encode({"topic": self.topic, "n": n})], zmq.NOBLOCK)
        except zmq.Again:  # not connected right now: the credit is kept and granted later
            return False
        return True

    def _on_batch(self, frames: list[Any]) -> int:
        """Deliver a ``[BATCH, topic, [[header, payload], ...]]`` frame; returns how many messages it held."""
        codec = self.node.codec
        if len(frames) != 3 or len(frames[2]) > codec.max_message_bytes:
            self._reject(DecodeError("batch", f"expected 3 frames within {codec.max_message_bytes} bytes"))
            return 1
        try:
            items = codec.decode_payload(frames, self._batch_decoder)
        except DecodeError:
            return self._on_batch_items(frames)  # find the bad ones, keep the others
        schema, version = self.msg_type.SCHEMA, self.msg_type.VERSION
        if any(header.schema != schema or header.version != version for header, _ in items):
            return self._on_batch_items(frames)
        authorised = self.authorised
        for header, msg in items:
            if authorised is not None and header.sender not in authorised:
                self._drop_unauthorised(header.sender, 1)
            elif self._note_seq(header):
                self._dispatch(header, msg)
            else:
                self._reject_replay(header)
        return len(items)

    def _on_batch_items(self, frames: list[Any]) -> int:
        """A batch that did not decode as a whole: judge its messages one at a time."""
        try:
            items = msgspec.msgpack.decode(frames[2], type=list[tuple[msgspec.Raw, msgspec.Raw]])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._reject(DecodeError("batch", f"not a msgpack array of [header, payload] pairs ({exc})"))
            return 1
        codec = self.node.codec
        for raw_header, raw_payload in items:
            header = self._track_seq([frames[1], raw_header, raw_payload])
            if header is None:
                continue
            try:
                msg = codec.decode_payload((), self._decoder, raw_payload)  # no array frames in a batch
            except DecodeError as exc:
                self._reject(exc)
                continue
            self._dispatch(header, msg)
        return len(items)

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
        """Check size and header, count sequence gaps (messages lost in transport), refuse replays and check the
        schema; None if rejected. A message with a readable header takes its sequence number even if refused."""
        codec = self.node.codec
        if len(frames) < 3:
            self._reject(DecodeError("frames", f"expected at least 3 frames, got {len(frames)}"))
            return None
        try:
            if len(frames) != 3 or type(frames[2]) is not bytes or \
                    len(frames[0]) + len(frames[1]) + len(frames[2]) > codec.max_message_bytes:
                codec.check_size(frames)  # the general case; raises with the figures
            header = codec.decode_header(frames[1])
        except DecodeError as exc:
            self._reject(exc)
            return None
        if self.authorised is not None and header.sender not in self.authorised:
            self._drop_unauthorised(header.sender, 1)  # a message of an authorised connection, in another's name
            return None
        if not self._note_seq(header):
            self._reject_replay(header)
            return None
        msg_type = self.msg_type
        if header.schema != msg_type.SCHEMA or header.version != msg_type.VERSION:
            self._reject(DecodeError("header.schema", f"got {header.schema}@{header.version}, this edge carries "
                                                      f"{msg_type.SCHEMA}@{msg_type.VERSION}"))
            return None
        return header

    def _note_seq(self, header: Header) -> bool:
        """Take the sender's sequence number, counting gaps as lost; False for a replay: a number not above the
        last one with a send time not after it. A lower number sent later is a restarted publisher, followed."""
        sender, seq = header.sender, header.seq
        last = self._last_seq.get(sender)
        if last is not None:
            if seq <= last and header.wall_time <= self._last_wall[sender]:
                return False
            if seq > last + 1:
                self.lost += seq - last - 1
        elif len(self._last_seq) >= MAX_SENDERS:  # senders are names anyone can write: keep the newest
            oldest = next(iter(self._last_seq))
            del self._last_seq[oldest], self._last_wall[oldest]
        self._last_seq[sender] = seq
        self._last_wall[sender] = header.wall_time
        return True

    def _reject_replay(self, header: Header) -> None:
        self._reject(DecodeError("header.seq", f"sequence number {header.seq} from {header.sender!r} is a replay "
                                               f"(not newer than {self._last_seq[header.sender]})"))

    def _deliver(self, header: Header, frames: list[Any]) -> None:
        try:
            msg = self.node.codec.decode_payload(frames, self._decoder)
        except DecodeError as exc:
            self._reject(exc)
            return
        self._dispatch(header, msg)

    def _dispatch(self, header: Header, msg: Any) -> None:
        self.last_header = header
        self.delivered += 1
        try:
            self.callback(msg)
        except Exception as exc:  # a failing callback never takes the node down
            self.errors += 1
            self.node.log.exception("callback_failed", topic=self.topic, error=str(exc))

    def _reject(self, exc: DecodeError) -> None:
        self.rejected += 1
        self.rejected_by[exc.field] = self.rejected_by.get(exc.field, 0) + 1
        self.last_error = str(exc)
        if should_log(self.rejected):
            self.node.log.warning("message_rejected", topic=self.topic, field=exc.field, reason=exc.reason,
                                  rejected_total=self.rejected)
