"""Who may do what in a graph: command authority per topic, and the graph's keys.

Authority: a launch file's ``authority`` maps a topic to the nodes that may publish it, e.g.
``action/safe: [shield]``. The supervisor hands the map to the registry and to every node in
``PERSIST_AUTHORITY`` (JSON); a subscription of a listed topic takes messages from those nodes only and
drops, counts and logs every other frame (persist_rt.transport). docs/security.md says what it protects.

Keys: a launch file's ``keys: DIR`` (made by ``persist keys init``) turns on CurveZMQ for every socket of the
graph, TCP and IPC alike: a server socket (registry, services, publishers) lets only the graph's keys in, a
client checks the server's key before it sends anything, so a node's name is proven by its key.

Introspection: a launch file's ``introspection: open`` (with keys) lets a client holding no graph key through the
handshake of the registry and of every node's service socket, where it may call the read-only services alone
(``REGISTRY_READS`` and the services a node declares read-only); the default, ``closed``, lets no such client in.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

AUTHORITY_ENV = "PERSIST_AUTHORITY"

Authority = dict[str, frozenset[str]]  # topic -> names of the nodes that may publish it


def parse_authority(value: Any, field: str = "authority") -> Authority:
    """A checked authority map; ValueError names the field and the reason."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: must be a map of topic -> list of node names, got {type(value).__name__}")
    out: Authority = {}
    for topic, names in value.items():
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"{field}: topic names must be non-empty strings, got {topic!r}")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{field}.{topic}: must be a non-empty list of node names, got {names!r}")
        out[topic] = frozenset(names)
    return out


def authority_from_env() -> Authority:
    """The launch's authority map, as the supervisor passed it (none outside a launch)."""
    raw = os.environ.get(AUTHORITY_ENV)
    if not raw:
        return {}
    try:
        return parse_authority(json.loads(raw), AUTHORITY_ENV)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{AUTHORITY_ENV}: not JSON ({exc})") from None


def authority_json(authority: Mapping[str, Any]) -> str:
    return json.dumps({t: sorted(n) for t, n in authority.items()})


# --- introspection: read-only services open to clients without a graph key --------------------------------

INTROSPECTION_ENV = "PERSIST_INTROSPECTION"
INTROSPECTION = ("closed", "open")
REGISTRY_READS = frozenset({"lookup", "nodes", "topics", "node", "stats", "ping"})  # the registry's read-only services


def parse_introspection(value: Any, field: str = "introspection") -> str:
    """``open`` or ``closed`` (None: closed); ValueError names the field and the reason."""
    if value is None:
        return "closed"
    if value not in INTROSPECTION:
        raise ValueError(f"{field}: must be `open` or `closed`, got {value!r}")
    return str(value)


def introspection_open() -> bool:
    """Whether the launch opened its read-only services to clients without a graph key (only with keys)."""
    return parse_introspection(os.environ.get(INTROSPECTION_ENV) or None, INTROSPECTION_ENV) == "open"


# --- keys: CurveZMQ on every socket ----------------------------------------------------------------------

KEYS_ENV = "PERSIST_KEYS"
CLIENT, REGISTRY = "client", "registry"  # the CLI's key (and attached nodes'), the registry's key
ZAP_DOMAIN = "persist"
OPEN_DOMAIN = "persist.open"  # a server socket that lets any key through the handshake (open introspection)
# handshakes a server socket refuses: no CURVE at all, a key that is not the graph's, a wrong server key
HANDSHAKE_FAILURES = (int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL) | int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
                      | int(zmq.EVENT_HANDSHAKE_FAILED_AUTH))


class KeysError(ValueError):
    """A key directory that cannot be used; the message names the file and the reason."""


def _stem(name: str) -> str:
    return name.replace("/", ".")  # node names never hold a dot, so namespaced names map back and forth


class KeySet:
    """A graph's key directory (``persist keys init``): ``registry``, ``client`` and ``nodes/<name>`` certificates
    in zmq.auth's format, ``.key`` (public) and ``.key_secret``. A node's public key is bound to its name by the
    file it is in; a name without a file of its own (a node started with ``persist attach``) uses the client's."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).expanduser().resolve()
        if not self.dir.is_dir():
            raise KeysError(f"keys: {self.dir} is not a directory (make one with `persist keys init`)")
        if self.dir.stat().st_mode & 0o077:
            raise KeysError(f"keys: {self.dir} is open to other users (mode {self.dir.stat().st_mode & 0o777:o}); "
                            "chmod 700 it")
        self.publics: dict[str, bytes] = {}
        for path in sorted((self.dir / "nodes").glob("*.key")):
            self.publics[path.stem.replace(".", "/")] = self._public(path)
        for role in (CLIENT, REGISTRY):
            self.publics[role] = self._public(self.dir / f"{role}.key")
        self.by_key = {key: name for name, key in self.publics.items()}

    @staticmethod
    def _public(path: Path) -> bytes:
        try:
            public, _ = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise KeysError(f"keys: {path}: {exc}") from None
        return public

    def _file(self, name: str) -> Path:
        if name in (CLIENT, REGISTRY):
            return self.dir / f"{name}.key"
        path = self.dir / "nodes" / f"{_stem(name)}.key"
        return path if path.exists() else self.dir / f"{CLIENT}.key"

    def has_node(self, name: str) -> bool:
        return name in self.publics and name not in (CLIENT, REGISTRY)

    def public(self, name: str) -> bytes:
        """The key a server socket of node ``name`` proves (the client's for a name without its own key)."""
        return self.publics[name] if self.has_node(name) or name in (CLIENT, REGISTRY) else self.publics[CLIENT]

    def secret(self, name: str) -> tuple[bytes, bytes]:
        """(public, secret) of ``name``; KeysError when this process may not read it or it is unsafe."""
        path = self._file(name).with_suffix(".key_secret")
        try:
            if path.stat().st_mode & 0o077:
                raise KeysError(f"keys: {path} is readable by other users; chmod 600 it")
            public, secret = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise KeysError(f"keys: {path}: {exc}") from None
        if secret is None:
            raise KeysError(f"keys: {path} holds no secret key")
        return public, secret

    def name_of(self, key: bytes | str | None) -> str | None:
        """The name a proven public key (z85) is bound to, or None for a key not of this graph."""
        if key is None:
            return None
        return self.by_key.get(key.encode() if isinstance(key, str) else key)

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if not self.has_node(n)]

    @staticmethod
    def create(directory: str | os.PathLike[str], names: list[str]) -> list[Path]:
        """Write a key pair per node name plus the client's and the registry's; existing pairs are kept (a graph
        that gains a node keeps the keys its other nodes have). Returns the public key files written."""
        root = Path(directory).expanduser()
        nodes = root / "nodes"
        nodes.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(root, 0o700)
        os.chmod(nodes, 0o700)
        written = []
        old = os.umask(0o077)  # files are born 0600: never readable by others, not even for an instant
        try:
            for name, where in [(CLIENT, root), (REGISTRY, root), *((_stem(n), nodes) for n in names)]:
                if not (where / f"{name}.key_secret").exists():
                    public, _ = zmq.auth.create_certificates(where, name)
                    written.append(Path(public))
                for suffix in (".key", ".key_secret"):
                    os.chmod(where / f"{name}{suffix}", 0o600)
        finally:
            os.umask(old)
        return written


_keys: dict[str, KeySet] = {}


def keys_from_env() -> KeySet | None:
    """The launch's key set (``PERSIST_KEYS``), loaded once per process; None: the graph runs without keys."""
    where = os.environ.get(KEYS_ENV)
    if not where:
        return None
    if where not in _keys:
        _keys[where] = KeySet(where)
    return _keys[where]


class Curve:
    """One process's CURVE identity: its key pair, the graph's key set, and the ZAP handler that lets only the
    graph's keys complete a handshake with this process's server sockets (counted when it refuses one)."""

    def __init__(self, keys: KeySet, name: str, ctx: zmq.Context) -> None:
        self.keys = keys
        self.name = name
        self.public, self._secret = keys.secret(name)
        self.denied = 0  # keys the ZAP handler refused (its thread counts; readers take a snapshot)
        self.denied_keys: dict[str, int] = {}
        self.admitted = 0  # handshakes of keys not of this graph let in by an open socket (read-only calls alone)
        self._ctx = ctx

    def watch(self) -> Curve:
        """Let the ZAP handler of this process's context ask this identity about client keys (once it serves)."""
        _authenticator(self._ctx, self)
        return self

    def callback(self, domain: str, key: bytes) -> bool:  # the ZAP handler's question, on its thread
        if self.keys.name_of(key) is not None:
            return True
        if domain == OPEN_DOMAIN:  # its requests are judged by the service's guard: read-only ones alone pass
            self.admitted += 1
            return True
        self.denied += 1
        label = key.decode(errors="replace")[:12]
        if label in self.denied_keys or len(self.denied_keys) < 32:
            self.denied_keys[label] = self.denied_keys.get(label, 0) + 1
        return False

    def server(self, sock: zmq.Socket, open_handshake: bool = False) -> None:
        """Make ``sock`` (before it binds) a CURVE server proving this process's key. ``open_handshake``: any key
        completes the handshake (still encrypted, the server still proven); the socket's guard must then refuse
        what a key not of this graph may not do."""
        self.watch()
        sock.curve_server = True
        sock.curve_publickey = self.public
        sock.curve_secretkey = self._secret
        sock.zap_domain = (OPEN_DOMAIN if open_handshake else ZAP_DOMAIN).encode()

    def client(self, sock: zmq.Socket, server: str) -> None:
        """Make ``sock``'s next connects go to node (or role) ``server``, whose key they check."""
        sock.curve_publickey = self.public
        sock.curve_secretkey = self._secret
        sock.curve_serverkey = self.keys.public(server)

    def caller(self, frame: zmq.Frame) -> str | None:
        """The name bound to the key that sent ``frame`` on a server socket of this process."""
        try:
            return self.keys.name_of(frame.get("User-Id"))
        except zmq.ZMQError:
            return None


_authenticators: dict[int, Any] = {}
_process: list[Curve] = []  # this process's identity for the service calls it makes
_servers: dict[str, str] = {}  # endpoint -> the node (or role) serving it: whose key a client demands there


def use_curve(curve: Curve | None) -> None:
    """Service calls from this process prove ``curve``'s key (None: no keys)."""
    _process[:] = [curve] if curve is not None else []


def process_curve() -> Curve | None:
    return _process[0] if _process else None


def expect_server(endpoint: str, name: str) -> None:
    """A client reaching ``endpoint`` demands ``name``'s key there. Learned from the registry: a wrong entry
    makes a call fail its handshake, it never makes a client trust another key for a name."""
    _servers[endpoint] = name


def server_at(endpoint: str) -> str | None:
    return _servers.get(endpoint)


def _authenticator(ctx: zmq.Context, curve: Curve) -> Any:
    """One ZAP handler per context (a thread), asking ``curve`` about every client key."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = _authenticators.get(id(ctx))
    if auth is None:
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("persist.zap"))
        auth.start()
        _authenticators[id(ctx)] = auth
    auth.configure_curve_callback(ZAP_DOMAIN, curve)
    auth.configure_curve_callback(OPEN_DOMAIN, curve)
    return auth


def monitor_handshakes(sock: zmq.Socket) -> zmq.Socket:
    """A monitor socket reporting each handshake ``sock`` refuses (read it with ``handshake_failures``)."""
    return sock.get_monitor_socket(HANDSHAKE_FAILURES)


def handshake_failures(monitor: zmq.Socket) -> list[str]:
    """The refused handshakes a monitor socket reported since the last call, each as a short reason."""
    from zmq.utils.monitor import recv_monitor_message

    out = []
    while True:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return out
        kind = zmq.Event(event["event"])
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            out.append("key not of this graph")
        elif event.get("value") == getattr(zmq, "ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", 0x11000002):
            out.append("no CURVE (plain connection)")
        else:
            out.append("CURVE handshake failed (wrong server key or bad crypto)")
