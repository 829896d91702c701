"""The node: a process that declares publishers, subscriptions, services, parameters and timers.

    class Talker(Node):
        rate_hz = Param(10.0, "publish rate", gt=0)

        def on_configure(self) -> None:
            self.out = self.publisher("chatter", Text)
            self.timer(1.0 / self.rate_hz, self.tick)

        def tick(self) -> None:
            self.out.publish(Text(data="hello"))

The runtime does the plumbing: one single-threaded executor polls every socket with
``zmq.Poller`` (blocking pyzmq: about half the round trip of ``zmq.asyncio`` here), runs due timers,
answers services and keeps the registry lease. Callbacks and timers run only while ACTIVE.

Idle strategy: by default the executor sleeps in the poll until a socket is ready. With ``busy_poll_us`` > 0 an
ACTIVE node first polls without sleeping for up to that long, yielding the CPU between polls, and only then sleeps: a
message that arrives soon is taken without waking a sleeping process (and, in a VM, a halted virtual CPU).
That is for nodes of a lockstep loop, where every step waits on a hop; it costs CPU time that others could use.

Data sockets bind TCP, and on Linux also an abstract-namespace IPC endpoint: a subscriber on the same
host (same kernel boot and network namespace) connects over IPC, cheaper per message than loopback TCP;
any other over TCP. ``PERSIST_SAME_HOST_IPC=0`` keeps a node on TCP (to capture traffic, or to compare).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import zmq

from persist_rt import lifecycle, services
from persist_rt.codec import Codec
from persist_rt.executor import Executor
from persist_rt.lifecycle import State
from persist_rt.log import get_logger, should_log
from persist_rt.params import Param, ParamError, collect
from persist_rt.qos import QoS
from persist_rt.security import (
    REGISTRY,
    Curve,
    authority_from_env,
    expect_server,
    handshake_failures,
    introspection_open,
    keys_from_env,
    monitor_handshakes,
    parse_authority,
    use_curve,
)
from persist_rt.transport import (
    COALESCE_LINGER_S,
    MAX_WINDOW,
    Publisher,
    ReliableRouter,
    Subscription,
    Timer,
    ipc_domain,
)
from protocols import Metrics, ParameterUpdate
from protocols.base import Message

M = TypeVar("M", bound=Message)

MAX_BUSY_POLL_US = 10_000.0  # longer busy polling buys no latency, only burns CPU: sleep instead


def busy_poll_seconds(us: object) -> float:
    """A busy-poll budget given in microseconds, checked, in seconds; ValueError says what is wrong."""
    if isinstance(us, bool) or not isinstance(us, int | float) or not 0.0 <= us <= MAX_BUSY_POLL_US:
        raise ValueError(f"must be a number of microseconds within [0, {MAX_BUSY_POLL_US:g}], got {us!r}")
    return float(us) * 1e-6

METRICS_TOPIC = "/metrics"
PARAM_EVENTS_TOPIC = "/parameter_events"
BUILTIN_TOPICS = (METRICS_TOPIC, PARAM_EVENTS_TOPIC)
# the built-in services that change nothing: open introspection answers them without a graph key
READ_ONLY_SERVICES = ("describe", "stats", "param.list", "param.get", "lifecycle.get")


class Node:
    """Base class of every PERSIST node. Override the ``on_*`` hooks; declare ``Param``s on the class."""

    kind: str = ""  # short name shown in `persist node list`; defaults to the class name
    heartbeat_s: float = 0.5
    metrics_period_s: float = 1.0
    max_message_bytes: int = 256 * 1024 * 1024  # larger incoming messages are rejected at the edge
    drain_timeout_s: float = 5.0  # on close, how long reliable publishers may wait for their backlog to be consumed

    def __init__(
        self,
        name: str | None = None,
        *,
        registry: str | None = None,
        params: dict[str, Any] | None = None,
        namespace: str = "",
        remaps: dict[str, str] | None = None,
        qos_overrides: dict[str, str] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        transport: str = "tcp",
        autostart: bool = True,
        busy_poll_us: float = 0.0,
        authority: dict[str, list[str]] | None = None,
    ) -> None:
        try:
            self.busy_poll_s = busy_poll_seconds(busy_poll_us)
        except ValueError as exc:
            raise ValueError(f"busy_poll_us: {exc}") from None
        self.name = name or type(self).__name__.lower()
        self.kind = self.kind or type(self).__name__
        self.namespace = namespace.strip("/")
        self.remaps = dict(remaps or {})
        self.qos_overrides = {k: QoS.parse(v) for k, v in (qos_overrides or {}).items()}
        self.registry_endpoint = registry
        # topic -> the only nodes whose messages on it this node accepts (the launch file's `authority`)
        self.authority = parse_authority(authority) if authority is not None else authority_from_env()
        self.run_dir = Path(run_dir) if run_dir else None
        self.host = host
        self.transport = transport
        # subscribers in our IPC domain reach our data sockets over IPC, and we reach such publishers that way
        self.ipc_domain = ipc_domain() if transport == "tcp" else None
        self.autostart = autostart
        self.state = State.UNCONFIGURED
        self.log = get_logger(self.name, self.run_dir)
        self.codec = Codec(max_message_bytes=self.max_message_bytes)
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.status: dict[str, Any] = {}  # a few headline figures shown by `persist node list`
        self.restarts = int(os.environ.get("PERSIST_RESTARTS", "0"))

        self._param_decls: dict[str, Param] = collect(type(self))
        self._param_values: dict[str, Any] = {k: p.default for k, p in self._param_decls.items()}
        for key, value in (params or {}).items():
            decl = self._param_decls.get(key)
            if decl is None:
                known = ", ".join(sorted(self._param_decls)) or "none"
                raise ParamError(key, f"node kind {self.kind} has no such parameter (known: {known})")
            self._param_values[key] = decl.coerce(value)

        self.ctx = zmq.Context.instance()
        keys = keys_from_env()
        # with the launch's keys, every socket of this node speaks CURVE and proves this node's key
        self.curve_id = Curve(keys, self.name, self.ctx) if keys is not None else None
        if self.curve_id is not None:
            use_curve(self.curve_id)  # this process's service calls (to the registry, to peers) prove it too
        # open introspection: a client without a graph key passes the service socket's handshake, and may call the
        # read-only services alone (_svc_guard); publishers stay closed to it
        self._open_reads = self.curve_id is not None and introspection_open()
        self._read_only: set[str] = set(READ_ONLY_SERVICES)
        self.executor = Executor()
        self._monitors: list[zmq.Socket] = []  # handshake monitors of the server sockets (with keys)
        self._services: dict[str, services.Handler] = {}
        self.publishers: dict[str, Publisher] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._timers: list[Timer] = []
        self._coalescing: list[Publisher] = []
        self._pub_sock: zmq.Socket | None = None
        self._best_effort_prefixes: set[bytes] = set()
        self._router: ReliableRouter | None = None
        self._control_poller: zmq.Poller | None = None  # the sockets a publisher waiting for credit keeps serving
        self._endpoints: dict[str, str] = {}
        self._stop_requested = False
        self._graph_version = -1
        self._next_heartbeat = 0.0
        self._next_metrics = 0.0
        self._registered = False
        self._hb_seq = 0
        self._blocked_depth = 0

        self._svc_sock = self.ctx.socket(zmq.ROUTER)
        self._svc_sock.setsockopt(zmq.LINGER, 0)
        self._endpoints["service"] = self._bind(self._svc_sock, "svc", open_handshake=self._open_reads)
        self._watch(self._svc_sock, self._on_service)
        self._reg_sock: zmq.Socket | None = None
        if registry:
            self._reg_sock = self.ctx.socket(zmq.DEALER)
            self._reg_sock.setsockopt(zmq.LINGER, 0)
            self._reg_sock.setsockopt(zmq.SNDHWM, 16)
            if self.curve_id is not None:
                self.curve_id.client(self._reg_sock, REGISTRY)
                expect_server(registry, REGISTRY)
            self._reg_sock.connect(registry)
            self._watch(self._reg_sock, self._on_registry_reply)
        self._register_builtin_services()

    # ================================ user API ==================================================

    def on_configure(self) -> None:
        """Create publishers, subscriptions, timers. Runs on unconfigured -> inactive."""

    def on_activate(self) -> None:
        """Runs on inactive -> active; timers and callbacks start after it."""

    def on_deactivate(self) -> None:
        """Runs on active -> inactive."""

    def on_cleanup(self) -> None:
        """Runs on inactive -> unconfigured."""

    def on_shutdown(self) -> None:
        """Runs once before the process ends (from any state): flush, checkpoint, close files."""

    def on_param_change(self, name: str, old: Any, new: Any) -> None:
        """Called after a live parameter update; raise to refuse it (the old value is restored)."""

    def topic_name(self, topic: str) -> str:
        """Resolve a topic as written in code to its graph name: remaps, then namespace."""
        topic = self.remaps.get(topic, topic)
        if topic.startswith("/") or not self.namespace:
            return topic
        return f"{self.namespace}/{topic}"

    def publisher(self, topic: str, msg_type: type[M], *, reliable: bool = False,
                  buffer: int = 1024, coalesce: int = 1) -> Publisher:
        """Publish ``msg_type`` on ``topic``. ``reliable`` offers credit-based delivery too. ``coalesce`` > 1
        sends to reliable subscribers in batches of that many messages (a partial batch waits at most
        ``COALESCE_LINGER_S``): one wake-up of the subscriber per batch, for streams that nobody waits on message
        by message, such as a replay stream. Best-effort subscribers get every message at once."""
        name = self.topic_name(topic)
        if name in self.publishers:
            raise ValueError(f"topic `{name}`: this node already publishes it")
        if self._pub_sock is None:
            # XPUB: subscriptions come up to us, so a topic nobody reads best-effort costs no send at all
            self._pub_sock = self.ctx.socket(zmq.XPUB)
            self._pub_sock.setsockopt(zmq.LINGER, 0)
            self._pub_sock.setsockopt(zmq.SNDHWM, 10000)
            self._endpoints["pub"] = self._bind(self._pub_sock, "pub")
            self._bind_same_host(self._pub_sock, "pub")
            self._watch(self._pub_sock, self._on_subscription_change)
        if reliable and self._router is None:
            rel_sock = self.ctx.socket(zmq.ROUTER)
            rel_sock.setsockopt(zmq.LINGER, 0)
            rel_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            rel_sock.setsockopt(zmq.SNDHWM, MAX_WINDOW)  # credit, not the HWM, bounds what is in flight
            self._endpoints["reliable"] = self._bind(rel_sock, "rel")
            self._bind_same_host(rel_sock, "reliable")
            self._router = ReliableRouter(self, rel_sock, self.publishers)
            self._watch(rel_sock, self._router.on_readable)
            self._control_poller = None
        pub = Publisher(self, name, msg_type, reliable=reliable, buffer=buffer, coalesce=coalesce,
                        pub_sock=self._pub_sock, router=self._router if reliable else None)
        pub.update_best_effort(self._best_effort_prefixes)
        self.publishers[name] = pub
        if coalesce > 1:
            self._coalescing.append(pub)
        self._graph_changed()
        return pub

    def subscribe(self, topic: str, msg_type: type[M], callback: Callable[[M], Any],
                  qos: QoS | str = "queue") -> Subscription:
        """Call ``callback(msg)`` for each message on ``topic``, with QoS latest/queue(N)/reliable."""
        name = self.topic_name(topic)
        chosen = self.qos_overrides.get(name) or self.qos_overrides.get(topic) or QoS.parse(qos)
        if name in self.subscriptions:
            raise ValueError(f"topic `{name}`: this node already subscribes to it")
        sub = Subscription(self, name, msg_type, callback, chosen, self.executor)
        self.subscriptions[name] = sub
        self._graph_changed()
        return sub

    def timer(self, period_s: float, callback: Callable[[], Any]) -> Timer:
        if period_s <= 0:
            raise ValueError(f"timer period must be > 0, got {period_s}")
        t = Timer(period_s, callback)
        self._timers.append(t)
        return t

    def call_peer(self, node: str, service: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        """Call another node's service, found through the registry; a failure is logged and counted
        (``peer_call_failures``) and gives None, so a missing peer never stops this node."""
        if not self.registry_endpoint or not node:
            return None
        try:
            info = services.call(self.registry_endpoint, "node", {"name": node}, timeout=2.0)
            return services.call(info["endpoints"]["service"], service, args or {}, timeout=timeout)
        except (services.ServiceError, services.ServiceTimeout, KeyError) as exc:
            self.log.error("peer_call_failed", node=node, service=service, args=args, error=str(exc))
            self.count("peer_call_failures")
            return None

    def service(self, name: str, handler: services.Handler, read_only: bool = False) -> None:
        """Answer requests for ``name``: ``handler(args: dict) -> result`` (msgpack-able). ``read_only``: it
        changes nothing, so a launch with open introspection answers it to clients without a graph key."""
        if name in self._services:
            raise ValueError(f"service `{name}` is already defined")
        self._services[name] = handler
        if read_only:
            self._read_only.add(name)

    def refresh(self) -> None:
        """Bring ``gauges`` and ``status`` up to date. Runs just before they leave the node (metrics, heartbeat,
        the ``stats`` service), so figures that cost something to derive need not be updated on every step."""

    def keep_alive(self) -> None:
        """Renew the registry lease from inside a callback that works for long (a learner's burst of updates),
        so that the registry does not take the node for dead; nothing else runs (no callbacks, no services)."""
        now = time.monotonic()
        if now >= self._next_heartbeat and self._registered:
            self._next_heartbeat = now + self.heartbeat_s
            self._send_heartbeat()

    def count(self, key: str, n: float = 1.0) -> float:
        value = self.counters[key] = self.counters.get(key, 0.0) + n
        return value

    def gauge(self, key: str, value: float) -> None:
        self.gauges[key] = float(value)

    # ================================ parameters ================================================

    def set_param(self, name: str, value: Any) -> Any:
        head, dot, field = name.partition(".")
        if dot and name not in self._param_decls and getattr(self._param_decls.get(head), "config", None):
            # one field of a typed config (``sac.batch_size``): the others keep their values
            name, value = head, {**self._param_values[head], field: value}
        decl = self._param_decls.get(name)
        if decl is None:
            raise ParamError(name, f"no such parameter (known: {', '.join(sorted(self._param_decls)) or 'none'})")
        if decl.read_only and self.state != State.UNCONFIGURED:
            raise ParamError(name, "is read-only once the node is configured")
        new = decl.coerce(value)
        old = self._param_values[name]
        self._param_values[name] = new
        try:
            self.on_param_change(name, old, new)
        except Exception as exc:
            self._param_values[name] = old
            raise ParamError(name, f"refused by the node: {exc}") from None
        self.log.info("param_set", param=name, old=old, new=new)
        pub = self.publishers.get(PARAM_EVENTS_TOPIC)
        if pub is not None:
            pub.publish(ParameterUpdate(node=self.name, name=name, value=_plain(new), old=_plain(old)))
        return new

    def params(self) -> dict[str, Any]:
        return dict(self._param_values)

    # ================================ lifecycle =================================================

    def transition(self, target: str) -> State:
        """Go to ``target`` (a state or a transition name), running the hooks on the way."""
        for step in lifecycle.plan(self.state, target):
            hook = {"configure": self.on_configure, "activate": self.on_activate,
                    "deactivate": self.on_deactivate, "cleanup": self.on_cleanup,
                    "shutdown": self._finalize}[step]
            hook()
            self.state = lifecycle.TRANSITIONS[step][1]
            self.log.info("lifecycle", transition=step, state=str(self.state))
            if step == "configure":
                self._start_params_publisher()
            self._heartbeat(force=True)
        return self.state

    def _start_params_publisher(self) -> None:
        if PARAM_EVENTS_TOPIC not in self.publishers:
            self.publisher(PARAM_EVENTS_TOPIC, ParameterUpdate)
        if METRICS_TOPIC not in self.publishers:
            self.publisher(METRICS_TOPIC, Metrics)

    def _finalize(self) -> None:
        try:
            self.on_shutdown()
        finally:
            self._stop_requested = True

    # ================================ executor ==================================================

    def request_stop(self, *_: Any) -> None:
        """Ask the executor to shut the node down at the next turn (signal-safe)."""
        self._stop_requested = True

    def spin(self, install_signals: bool = True) -> None:
        """Run until shutdown: the node's whole life."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        try:
            if self.autostart:
                self.transition("active")
            while not self._stop_requested:
                self.spin_once(0.1)
        finally:
            self.close()

    def spin_once(self, timeout_s: float = 0.0) -> None:
        """One executor turn: wait up to ``timeout_s`` (less if a timer is due), dispatch, run timers."""
        now = time.monotonic()
        wait = timeout_s
        if self.state == State.ACTIVE and self._timers:
            wait = max(0.0, min(wait, min(t.due for t in self._timers) - now))
        wait = min(wait, max(0.0, self._next_heartbeat - now))
        for pub in self._coalescing:
            if pub.held_since is not None:
                wait = min(wait, max(0.0, pub.held_since + COALESCE_LINGER_S - now))
        self.executor.dispatch(self._ready(wait))
        now = time.monotonic()
        for pub in self._coalescing:
            if pub.held_since is not None and now - pub.held_since >= COALESCE_LINGER_S:
                pub.flush_held()
        if self.state == State.ACTIVE:
            for t in self._timers:
                if t.due <= now:
                    try:
                        t.fire(now)
                    except Exception as exc:  # a failing timer never takes the node down
                        self.count("timer_errors")
                        self.log.exception("timer_failed", callback=getattr(t.callback, "__name__", "?"),
                                           error=str(exc), exc_info=True)
        if now >= self._next_heartbeat:
            self._heartbeat()
        if now >= self._next_metrics and self.state == State.ACTIVE:
            self._next_metrics = now + self.metrics_period_s
            self.publish_metrics()

    def _ready(self, wait_s: float) -> list[tuple[zmq.Socket, int]]:
        """Sockets ready within ``wait_s``: busy polling first for up to ``busy_poll_s`` (ACTIVE only), then
        sleeping. A hit is a message that came while polling; a miss, a budget spent before the node slept
        all the same: their ratio tells whether the budget is worth its CPU."""
        if self.busy_poll_s > 0.0 and wait_s > 0.0 and self.state == State.ACTIVE:
            if ready := self.executor.poll(0):  # already waiting: neither a hit nor a miss
                return ready
            start = time.monotonic()
            until = start + min(wait_s, self.busy_poll_s)
            while time.monotonic() < until:
                os.sched_yield()  # the I/O threads bringing the message may need this CPU
                if ready := self.executor.poll(0):
                    self.count("busy_poll.hits")
                    return ready
            wait_s = max(0.0, wait_s - (time.monotonic() - start))
            if wait_s > 0.0:
                self.count("busy_poll.misses")
        # whole milliseconds, rounded up: zmq truncates, and a 0 ms poll before each timer tick is a busy loop
        return self.executor.poll(math.ceil(wait_s * 1000.0))

    def close(self) -> None:
        if self.state != State.FINALIZED:
            try:
                self.transition("shutdown")
            except Exception as exc:  # shutting down regardless
                self.log.error("shutdown_hook_failed", error=str(exc))
                self.state = State.FINALIZED
        self.drain(self.drain_timeout_s)
        if self._reg_sock is not None:
            self._unregister()
        for sub in self.subscriptions.values():
            sub.close()
        for pub in self.publishers.values():
            pub.close()
        rel_sock = self._router.sock if self._router is not None else None
        for sock in (self._pub_sock, rel_sock, self._svc_sock, self._reg_sock, *self._monitors):
            if sock is not None:
                sock.close(0)
        self._pub_sock = self._reg_sock = self._router = None

    def drain(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s`` in all) until every reliable subscriber has consumed what this node
        published; True if all did. ``close`` calls it, so a node's last messages reach their consumers."""
        deadline = time.monotonic() + timeout_s
        done = True
        for pub in self.publishers.values():
            if pub.peers and not pub.drain(max(0.0, deadline - time.monotonic())):
                done = False
                self.log.warning("drain_incomplete", topic=pub.topic, **{k: v for k, v in pub.stats().items()
                                                                       if k in ("pending", "unacked")})
        return done

    # ================================ metrics ===================================================

    def stats(self) -> dict[str, Any]:
        """Per-edge counters: what `persist topic hz` and telemetry show."""
        self._refresh()
        return {
            "publishers": {n: p.stats() for n, p in self.publishers.items() if n not in BUILTIN_TOPICS},
            "subscriptions": {n: s.stats() for n, s in self.subscriptions.items()},
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
        }

    def publish_metrics(self) -> None:
        self._refresh()
        counters = dict(self.counters)
        for n, s in self.subscriptions.items():
            for key, value in s.counts().items():
                counters[f"edge.{n}.{key}"] = value
        for n, p in self.publishers.items():
            if n not in BUILTIN_TOPICS:
                counters[f"edge.{n}.sent"] = p.seq
        gauges = dict(self.gauges)
        gauges["restarts"] = self.restarts
        self.publishers[METRICS_TOPIC].publish(Metrics(node=self.name, counters=counters, gauges=gauges))

    # ================================ internals =================================================

    def _refresh(self) -> None:
        if self.state == State.UNCONFIGURED:  # nothing configured to derive figures from
            return
        try:
            self.refresh()
        except Exception as exc:  # stale figures, never a dead node
            self.count("refresh_errors")
            self.log.exception("refresh_failed", error=str(exc))

    def _bind(self, sock: zmq.Socket, role: str, open_handshake: bool = False) -> str:
        if self.curve_id is not None:  # a server socket: only the graph's keys complete a handshake, refusals counted
            self.curve_id.server(sock, open_handshake)
            monitor = monitor_handshakes(sock)
            self._monitors.append(monitor)
            self._watch(monitor, lambda: self._on_handshake_refused(monitor, role))
        if self.transport == "ipc":
            base = Path(os.environ.get("PERSIST_IPC_DIR", f"/tmp/persist-{os.getuid()}"))
            base.mkdir(parents=True, exist_ok=True, mode=0o700)  # without keys, the directory's mode guards them
            path = base / f"{self.name.replace('/', '_')}-{role}-{os.getpid()}.sock"
            sock.bind(f"ipc://{path}")
        else:
            sock.bind(f"tcp://{self.host}:0")
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _bind_same_host(self, sock: zmq.Socket, role: str) -> None:
        """Also bind ``sock`` to an abstract IPC name (no file to clean up), advertised as ``<role>_local``.
        Where that is refused (a sandbox without abstract sockets), the node stays on TCP alone."""
        if self.ipc_domain is None:
            return
        label = self.name.replace("/", "_").encode()[:48].decode(errors="ignore")  # a name holds 107 bytes at most
        try:
            sock.bind(f"ipc://@persist-{label}-{role}-{os.getpid()}-{os.urandom(4).hex()}")
        except zmq.ZMQError as exc:
            self.log.warning("same_host_ipc_unavailable", error=str(exc))
            self.ipc_domain = None  # neither offered nor used: every edge of this node stays on TCP
            return
        self._endpoints[f"{role}_local"] = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _on_handshake_refused(self, monitor: zmq.Socket, role: str) -> None:
        for reason in handshake_failures(monitor):
            self.count(f"auth.refused.{role}")
            refused = self.counters[f"auth.refused.{role}"]
            if refused <= 5 or refused % 100 == 0:
                self.log.warning("handshake_refused", socket=role, reason=reason, refused_total=refused)

    def _svc_guard(self, service: str, identity: bytes, frame: zmq.Frame) -> None:
        """With keys: a request whose key the graph does not know is refused (the handshake already refuses such
        a key unless introspection is open; this holds even if a ZAP handler were missing), except a read-only
        service's under open introspection."""
        assert self.curve_id is not None
        if self.curve_id.caller(frame) is None:
            if self._open_reads and service in self._read_only:
                self.count("auth.open_read")
                return
            self.count("auth.refused.request")  # _service_error logs it
            if self._open_reads:
                raise PermissionError(f"service `{service}`: needs a graph key (introspection is open to read-only "
                                      f"services alone: {', '.join(sorted(self._read_only))})")
            raise PermissionError(f"service `{service}`: the caller's key is not one of this graph's")

    def _watch(self, sock: zmq.Socket, handler: Callable[[], None]) -> None:
        self.executor.watch(sock, handler)

    def serve_control(self, timeout_ms: int) -> None:
        """One turn of control traffic only, for a publisher blocked in ``publish`` or ``drain``: reliable credit,
        services and registry replies, and the lease when due. Data callbacks and timers wait for the executor."""
        if self._control_poller is None:
            self._control_poller = zmq.Poller()
            rel_sock = self._router.sock if self._router is not None else None
            for sock in (rel_sock, self._svc_sock, self._reg_sock):
                if sock is not None:
                    self._control_poller.register(sock, zmq.POLLIN)
        self.executor.dispatch(self._control_poller.poll(timeout_ms))
        if time.monotonic() >= self._next_heartbeat:
            self._heartbeat()

    def _graph_changed(self) -> None:
        if self._registered:
            self._register()

    def _service_error(self, field: str, text: str) -> None:
        self.count(f"rejected.service.{field}")
        if should_log(self.count("rejected.service")):  # a flood must not flood the log as well
            self.log.warning("service_request_rejected", field=field, error=text,
                             rejected_total=self.counters["rejected.service"])

    def _on_service(self) -> None:
        while True:
            try:
                services.serve_one(self._svc_sock, self._services, self._service_error,
                                   self._svc_guard if self.curve_id is not None else None)
            except zmq.Again:
                return

    def _on_subscription_change(self) -> None:
        """XPUB reports the first subscribe and the last unsubscribe of each topic prefix."""
        assert self._pub_sock is not None
        while True:
            try:
                event = self._pub_sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if event[:1] == b"\x01":
                self._best_effort_prefixes.add(event[1:])
            elif event[:1] == b"\x00":
                self._best_effort_prefixes.discard(event[1:])
        for pub in self.publishers.values():
            pub.update_best_effort(self._best_effort_prefixes)

    # --- registry ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "ipc_domain": self.ipc_domain,
            "state": str(self.state),
            "restarts": self.restarts,
            "endpoints": dict(self._endpoints),
            "publications": [p.describe() for n, p in self.publishers.items()],
            "subscriptions": [s.describe() for s in self.subscriptions.values()],
            "namespace": self.namespace,
        }

    def _send_registry(self, service: str, args: dict[str, Any]) -> None:
        if self._reg_sock is None:
            return
        try:
            self._reg_sock.send(services.encode_request(service, args), zmq.NOBLOCK)
        except zmq.Again:
            pass  # registry unreachable: data keeps flowing; we retry at the next heartbeat

    def _unregister(self, timeout_s: float = 0.5) -> None:
        """Tell the registry we are leaving and wait briefly for its answer (it may be down)."""
        self._send_registry("unregister", {"name": self.name, "pid": os.getpid()})
        assert self._reg_sock is not None
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0 and self._reg_sock.poll(left * 1000.0):
            try:
                reply = msgspec.msgpack.decode(self._reg_sock.recv_multipart(zmq.NOBLOCK)[-1])
            except (zmq.Again, msgspec.DecodeError):
                continue
            if isinstance(reply, dict) and isinstance(reply.get("result"), dict) \
                    and reply["result"].get("unregistered") is not None:
                return

    def _register(self) -> None:
        self._send_registry("register", self.describe())
        self._registered = True

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        self._next_heartbeat = now + self.heartbeat_s
        if self._reg_sock is None:
            return
        if not self._registered:
            self._register()
            return
        for sub in self.subscriptions.values():
            if sub.qos.reliable:
                sub.grant_owed()
        self._send_heartbeat()
        for sub in self.subscriptions.values():
            if sub.needs_lookup:
                self._send_registry("lookup", {"topic": sub.topic})

    def _send_heartbeat(self) -> None:
        self._hb_seq += 1
        self._refresh()
        self._send_registry("heartbeat", {"name": self.name, "pid": os.getpid(), "state": str(self.state),
                                          "seq": self._hb_seq, "status": self.status})

    def _on_registry_reply(self) -> None:
        while True:
            try:
                raw = self._reg_sock.recv_multipart(zmq.NOBLOCK)[-1]  # type: ignore[union-attr]
            except zmq.Again:
                return
            try:
                reply = msgspec.msgpack.decode(raw)
            except msgspec.DecodeError:
                reply = None
            if not isinstance(reply, dict) or not isinstance(reply.get("result", {}), dict | None):
                self.count("rejected.registry")
                continue
            if not reply.get("ok"):
                self.log.error("registry_refused", error=reply.get("error"))
                continue
            result = reply.get("result") or {}
            if result.get("known") is False:
                self.log.info("registry_reregister")
                self._register()
            if "publishers" in result:
                sub = self.subscriptions.get(result.get("topic"))
                if sub is not None:
                    sub.update_publishers(result["publishers"], drop_missing=result.get("settled", True))
            version = result.get("graph_version")
            if version is not None and version != self._graph_version:
                self._graph_version = version
                for sub in self.subscriptions.values():
                    self._send_registry("lookup", {"topic": sub.topic})

    # --- built-in services ------------------------------------------------------------------

    def _register_builtin_services(self) -> None:
        self._services.update({
            "describe": lambda a: self.describe(),
            "stats": lambda a: self.stats(),
            "param.list": lambda a: [
                {**d.describe(), "value": _plain(d.effective(self._param_values[n]))}
                for n, d in self._param_decls.items()
            ],
            "param.get": self._svc_param_get,
            "param.set": self._svc_param_set,
            "lifecycle.get": lambda a: {"state": str(self.state)},
            "lifecycle.set": self._svc_lifecycle_set,
            "shutdown": self._svc_shutdown,
        })

    def _svc_param_get(self, args: dict[str, Any]) -> Any:
        name = args.get("name")
        head, dot, field = str(name).partition(".")
        decl = self._param_decls.get(head)
        if dot and name not in self._param_values and decl is not None and decl.config:  # one field of a config
            cls = decl.config_class()
            if not hasattr(cls, field):
                raise ParamError(str(name), f"{cls.__name__} has no field {field!r}")
            value = self._param_values[head].get(field, getattr(cls, field))  # a dataclass default is the class's
            return _plain(list(value) if isinstance(value, tuple) else value)
        if name not in self._param_values:
            raise ParamError(str(name), f"no such parameter (known: {', '.join(sorted(self._param_values))})")
        return _plain(self._param_values[name])

    def _svc_param_set(self, args: dict[str, Any]) -> Any:
        if "name" not in args or "value" not in args:
            raise ValueError("request needs fields `name` and `value`")
        return _plain(self.set_param(args["name"], args["value"]))

    def _svc_lifecycle_set(self, args: dict[str, Any]) -> dict[str, str]:
        target = args.get("state")
        if not isinstance(target, str):
            raise ValueError("field `state` must be a string")
        if target in ("shutdown", "finalized"):
            self._stop_requested = True
            return {"state": "finalizing"}
        return {"state": str(self.transition(target))}

    def _svc_shutdown(self, args: dict[str, Any]) -> dict[str, str]:
        self._stop_requested = True
        return {"state": "finalizing"}


def _plain(value: Any) -> Any:
    """A parameter value as msgpack-able plain data."""
    if isinstance(value, tuple):
        return list(value)
    return value
