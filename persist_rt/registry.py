"""The registry: discovery, the node list and the graph. It never carries data.

Nodes register (name, kind, pid, endpoints, publications, subscriptions), renew a lease with
heartbeats and look up publishers. When a node's lease runs out it disappears. When the registry
restarts, heartbeats come back with ``known: false`` and nodes register again, so the graph is
rebuilt; the peer-to-peer data connections are untouched meanwhile.

Run on its own: ``python -m persist_rt.registry --bind tcp://127.0.0.1:0``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from persist_rt import qos as qos_mod
from persist_rt.log import should_log
from persist_rt.parent_death import die_with_supervisor
from persist_rt.security import (
    CLIENT,
    REGISTRY,
    REGISTRY_READS,
    Curve,
    authority_from_env,
    handshake_failures,
    introspection_open,
    keys_from_env,
    monitor_handshakes,
)
from persist_rt.services import RequestError, parse_request, serve_one

LEASE_SERVICES = ("heartbeat", "register", "unregister")  # answered before anything else read in the same turn
READ_LIMIT = 4096  # frames read per turn before answering (a bounded turn under a flood)
REFUSAL_BURST = 20.0  # malformed requests answered per sender at once...
REFUSAL_RATE = 20.0  # ...and per second after that; the others are counted, not answered
MAX_BUDGETS = 4096  # senders whose refusal budget is remembered
REPORT_EVERY_S = 10.0  # a summary line of the rejections not logged one by one


class Registry:
    def __init__(self, bind: str = "tcp://127.0.0.1:0", lease_s: float = 3.0) -> None:
        self.lease_s = lease_s
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        keys = keys_from_env()
        self.curve = Curve(keys, REGISTRY, self.ctx) if keys is not None else None
        self.monitor: zmq.Socket | None = None
        # open introspection: any key passes the handshake, and a key not of this graph may read (REGISTRY_READS)
        self.open_reads = self.curve is not None and introspection_open()
        if self.curve is not None:  # only the graph's keys get in; a registration's name must be its key's
            self.curve.server(self.sock, self.open_reads)
            self.monitor = monitor_handshakes(self.sock)
        self.sock.bind(bind)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.expiry: dict[str, float] = {}
        self.graph_version = 1
        self.started = time.time()
        self._started_mono = time.monotonic()
        self.errors = 0  # requests refused
        self.rejected_by: dict[str, int] = {}  # field -> refusals
        self.unanswered = 0  # refusals over a sender's budget, counted but not answered
        self.stalls = 0  # turns the registry did not listen for a quarter lease; leases were extended by as much
        self._unlogged = 0
        self._next_report = 0.0
        self._refusal_budget: dict[bytes, tuple[float, float]] = {}  # sender identity -> (tokens, time)
        self.authority = authority_from_env()  # topic -> the nodes the launch lets publish it
        self.owner: dict[str, bytes] = {}  # node name -> the connection that registered it
        self.refused: dict[str, int] = {}  # reason -> requests refused for it
        self.open_reads_served = 0  # read-only requests answered to keys not of this graph (open introspection)
        self._caller = b""  # the connection of the request being served
        self._caller_key: str | None = None  # with keys: the name its proven key is bound to
        self._running = True
        self.handlers = {
            "register": self.register,
            "heartbeat": self.heartbeat,
            "unregister": self.unregister,
            "lookup": self.lookup,
            "nodes": lambda a: self.node_list(),
            "topics": lambda a: self.topic_list(),
            "node": self.node_info,
            "stats": lambda a: self.stats(),
            "ping": lambda a: {"graph_version": self.graph_version, "uptime_s": time.time() - self.started},
        }

    # --- handlers ----------------------------------------------------------------------------

    def register(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("field `name` must be a non-empty string")
        _check_registration(args)
        if not isinstance(args.get("pid"), int):
            raise ValueError("field `pid` must be an integer")
        self._check_key(name)
        old = self.nodes.get(name)
        if old is not None and self.owner.get(name) != self._caller and self.expiry.get(name, 0) > time.monotonic():
            # A live node holds this name, and this request comes from another connection: only a respawned
            # node (same host, its predecessor's process gone) may take the name over.
            if old.get("host") != args.get("host") or _pid_alive(old.get("pid")):
                self.refused["name_taken"] = self.refused.get("name_taken", 0) + 1  # _on_error logs it
                raise PermissionError(f"field `name`: node {name!r} is already registered by another live "
                                      f"process (pid {old.get('pid')} on {old.get('host')})")
        for p in args.get("publications", []):
            allowed = self.authority.get(p["topic"])
            if allowed is not None and name not in allowed:
                self._refuse("unauthorised_publication", f"{name} publishes {p['topic']} "
                                                         f"(only {', '.join(sorted(allowed))} may)")
        self.nodes[name] = dict(args)
        self.owner[name] = self._caller
        self.expiry[name] = time.monotonic() + self.lease_s
        self.graph_version += 1
        return {"graph_version": self.graph_version}

    def heartbeat(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        info = self.nodes.get(name)  # type: ignore[arg-type]
        if info is None or info.get("pid") != args.get("pid") or self.owner.get(name) != self._caller:
            return {"known": False, "graph_version": self.graph_version}
        self.expiry[name] = time.monotonic() + self.lease_s  # type: ignore[index]
        for key in ("state", "status"):
            if key in args:
                if key == "state" and info.get("state") != args[key]:
                    self.graph_version += 1
                info[key] = args[key]
        return {"known": True, "graph_version": self.graph_version}

    def unregister(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        gone = name in self.nodes and self.nodes[name].get("pid") == args.get("pid") \
            and self.owner.get(name) == self._caller
        if gone:
            del self.nodes[name]
            self.expiry.pop(name, None)
            self.owner.pop(name, None)
            self.graph_version += 1
        return {"graph_version": self.graph_version, "unregistered": gone}

    def lookup(self, args: dict[str, Any]) -> dict[str, Any]:
        topic = args.get("topic")
        pubs = [
            {"node": n, "ipc_domain": info.get("ipc_domain"), "endpoint": info["endpoints"].get("pub"),
             "reliable_endpoint": info["endpoints"].get("reliable"),
             "local_endpoint": info["endpoints"].get("pub_local"),
             "reliable_local_endpoint": info["endpoints"].get("reliable_local"),
             "authorised": self._may_publish(n, topic), **p}
            for n, info in self.nodes.items()
            for p in info.get("publications", [])
            if p["topic"] == topic
        ]
        # until one lease has passed since start, nodes may still be re-registering: an absent publisher
        # is not yet a gone one
        settled = time.monotonic() - self._started_mono >= self.lease_s
        return {"topic": topic, "publishers": pubs, "graph_version": self.graph_version, "settled": settled}

    def node_info(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if name not in self.nodes:
            raise LookupError(f"no node named {name!r} (known: {', '.join(sorted(self.nodes)) or 'none'})")
        return self._public(name)

    def _public(self, name: str) -> dict[str, Any]:
        info = dict(self.nodes[name])
        info["lease_left_s"] = round(self.expiry[name] - time.monotonic(), 3)
        return info

    def _may_publish(self, name: str, topic: Any) -> bool:
        allowed = self.authority.get(topic)
        return allowed is None or name in allowed

    def _refuse(self, reason: str, text: str) -> None:
        n = self.refused[reason] = self.refused.get(reason, 0) + 1
        if should_log(n):  # a flood is counted in full, not printed in full
            print(f"registry: refused ({reason}, {n} so far): {text}", file=sys.stderr, flush=True)

    def _guard(self, service: str, identity: bytes, frame: zmq.Frame) -> None:
        self._caller = identity
        if self.curve is not None:
            self._caller_key = self.curve.caller(frame)
            if self._caller_key is None:
                if self.open_reads and service in REGISTRY_READS:
                    self.open_reads_served += 1
                    return
                self._refuse("unknown_key", f"a `{service}` request whose key is not of this graph")
                if self.open_reads:
                    raise PermissionError(f"service `{service}`: needs a graph key (introspection is open to "
                                          f"{', '.join(sorted(REGISTRY_READS))} alone)")
                raise PermissionError("the caller's key is not one of this graph's")

    def _check_key(self, name: str) -> None:
        """With keys, a node's name is its key's: a launch node registers with its own key, any other name (a node
        started with `persist attach`) with the client's."""
        if self.curve is None:
            return
        keys, caller = self.curve.keys, self._caller_key
        owner = name if keys.has_node(name) else CLIENT
        if caller != owner:
            self._refuse("wrong_key", f"{name} claimed with {caller}'s key")
            raise PermissionError(f"field `name`: {name!r} registers with {owner}'s key, this request proves "
                                  f"{caller}'s")

    def node_list(self) -> list[dict[str, Any]]:
        return [self._public(n) for n in sorted(self.nodes)]

    def topic_list(self) -> list[dict[str, Any]]:
        topics: dict[str, dict[str, Any]] = {}
        for n, info in self.nodes.items():
            for p in info.get("publications", []):
                t = topics.setdefault(p["topic"], {"name": p["topic"], "schema": p["schema"], "publishers": [],
                                                   "subscribers": [], "incompatible": []})
                t["publishers"].append({"node": n, "endpoint": info["endpoints"].get("pub"),
                                        "reliable_endpoint": info["endpoints"].get("reliable"),
                                        "schema": p["schema"], "reliable": p.get("reliable", False),
                                        "authorised": self._may_publish(n, p["topic"])})
        for n, info in self.nodes.items():
            for s in info.get("subscriptions", []):
                t = topics.setdefault(s["topic"], {"name": s["topic"], "schema": s["schema"], "publishers": [],
                                                   "subscribers": [], "incompatible": []})
                t["subscribers"].append({"node": n, "schema": s["schema"], "qos": s["qos"]})
                for p in t["publishers"]:
                    reason = edge_problem(p, s)
                    if reason:
                        t["incompatible"].append({"publisher": p["node"], "subscriber": n, "reason": reason})
        return [topics[k] for k in sorted(topics)]

    # --- loop --------------------------------------------------------------------------------

    def expire(self) -> None:
        now = time.monotonic()
        for name in [n for n, t in self.expiry.items() if t < now]:
            del self.nodes[name]
            del self.expiry[name]
            self.owner.pop(name, None)
            self.graph_version += 1

    def serve(self, should_run: Any = None) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)
        turn_end = time.monotonic()
        while self._running and (should_run is None or should_run()):
            if poller.poll(100):
                if self.monitor is not None:
                    for reason in handshake_failures(self.monitor):
                        self._refuse("handshake", reason)
                self._drain()
            now = time.monotonic()
            if now - turn_end > self.lease_s / 4:
                self._extend_leases(now - turn_end)
            turn_end = now
            self._report_rejections(now)
            self.expire()
        self.sock.close(0)
        if self.monitor is not None:
            self.monitor.close(0)

    def _drain(self) -> None:
        """Read what is pending (at most READ_LIMIT frames), then answer lease traffic first, other requests next,
        and refuse malformed ones last, each sender's refusals answered within its REFUSAL_BURST budget."""
        pending: list[tuple[int, list[zmq.Frame], Any]] = []
        for _ in range(READ_LIMIT):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)  # a frame carries its CURVE key
            except zmq.Again:
                break
            try:
                parsed: Any = parse_request([f.bytes for f in frames])
                rank = 0 if parsed[1] in LEASE_SERVICES else 1
            except RequestError as exc:
                parsed, rank = exc, 2
            pending.append((rank, frames, parsed))
        pending.sort(key=lambda p: p[0])  # stable: arrival order within a rank
        now = time.monotonic()
        for rank, frames, parsed in pending:
            if rank < 2:
                serve_one(self.sock, self.handlers, self._on_error, self._guard, frames)
            elif self._refusal_allowed(frames[0].bytes, now):
                serve_one(self.sock, self.handlers, self._on_error, self._guard, frames)  # answers the refusal
            else:
                self._on_error(parsed.field, str(parsed), answered=False)

    def _refusal_allowed(self, identity: bytes, now: float) -> bool:
        """Token bucket per sender: REFUSAL_BURST refusals answered, refilled at REFUSAL_RATE per second."""
        tokens, last = self._refusal_budget.pop(identity, (REFUSAL_BURST, now))
        tokens = min(REFUSAL_BURST, tokens + (now - last) * REFUSAL_RATE)
        allowed = tokens >= 1.0
        self._refusal_budget[identity] = (tokens - 1.0 if allowed else tokens, now)  # newest last
        if len(self._refusal_budget) > MAX_BUDGETS:
            del self._refusal_budget[next(iter(self._refusal_budget))]
        return allowed

    def _extend_leases(self, gap: float) -> None:
        """The registry did not listen for ``gap`` seconds (a flood, a stalled pipe, a paused machine): no lease
        may run out for heartbeats it could not hear."""
        self.stalls += 1
        for name in self.expiry:
            self.expiry[name] += gap

    def stats(self) -> dict[str, Any]:
        return {"rejected": self.errors, "errors": self.errors, "rejected_by": dict(self.rejected_by),
                "unanswered": self.unanswered, "stalls": self.stalls, "nodes": len(self.nodes),
                "graph_version": self.graph_version, "refused": dict(self.refused),
                "open_reads": self.open_reads_served,
                "authority": {t: sorted(n) for t, n in self.authority.items()}}

    def stop(self, *_: Any) -> None:
        self._running = False

    def _on_error(self, field: str, text: str, answered: bool = True) -> None:
        self.errors += 1
        self.rejected_by[field] = self.rejected_by.get(field, 0) + 1
        self.unanswered += not answered
        if should_log(self.errors):
            print(f"registry: rejected request ({field}): {text[:300]} [{self.errors} rejected]", file=sys.stderr,
                  flush=True)
        else:
            self._unlogged += 1

    def _report_rejections(self, now: float) -> None:
        """One line every REPORT_EVERY_S at most for the rejections not logged one by one."""
        if self._unlogged and now >= self._next_report:
            print(f"registry: {self._unlogged} more requests rejected (by field: {self.rejected_by})",
                  file=sys.stderr, flush=True)
            self._unlogged = 0
            self._next_report = now + REPORT_EVERY_S


def edge_problem(pub: dict[str, Any], sub: dict[str, Any]) -> str | None:
    """Why a publisher cannot serve a subscription, or None."""
    if pub["schema"] != sub["schema"]:
        return f"schema mismatch: publisher sends {pub['schema']}, subscriber expects {sub['schema']}"
    return qos_mod.compatible(pub.get("reliable", False), qos_mod.QoS.parse(sub["qos"]))


def _check_registration(args: dict[str, Any]) -> None:
    """Refuse a registration that would break lookups for everyone else."""
    endpoints = args.get("endpoints", {})
    if not isinstance(endpoints, dict) or not all(isinstance(v, str) for v in endpoints.values()):
        raise ValueError("field `endpoints` must be a map of role -> endpoint string")
    for field, keys in (("publications", ("topic", "schema")), ("subscriptions", ("topic", "schema", "qos"))):
        entries = args.get(field, [])
        if not isinstance(entries, list):
            raise ValueError(f"field `{field}` must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in keys):
                raise ValueError(f"field `{field}[{i}]` must be a map with string {', '.join(keys)}")
        if field == "subscriptions":
            for i, entry in enumerate(entries):
                try:
                    qos_mod.QoS.parse(entry["qos"])
                except ValueError as exc:
                    raise ValueError(f"field `subscriptions[{i}].qos`: {exc}") from None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> None:
    die_with_supervisor()
    parser = argparse.ArgumentParser(prog="persist-registry")
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--address-file", default=None, help="write the bound address here")
    args = parser.parse_args(argv)
    reg = Registry(args.bind, args.lease)
    signal.signal(signal.SIGTERM, reg.stop)
    signal.signal(signal.SIGINT, reg.stop)
    if args.address_file:
        Path(args.address_file).write_text(reg.endpoint + "\n")
    print(reg.endpoint, flush=True)
    reg.serve()


if __name__ == "__main__":
    main()
