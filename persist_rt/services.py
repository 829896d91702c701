"""Request/reply services over ZeroMQ ROUTER (server) and DEALER (client) sockets.

Request: one msgpack frame ``{"id": int, "service": str, "args": {...}}``.
Reply:   one msgpack frame ``{"id": int, "ok": bool, "result": ...}`` or ``{..., "ok": false, "error": str}``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from persist_rt import security

Handler = Callable[[dict[str, Any]], Any]
# Called before a handler with the service's name, the caller's routing id and the request's frame (whose
# "User-Id" property is the caller's proven key under CURVE); raises PermissionError to refuse the request.
Guard = Callable[[str, bytes, zmq.Frame], None]
_ids = itertools.count(1)


class ServiceError(RuntimeError):
    """The service answered with an error."""


class ServiceTimeout(TimeoutError):
    pass


def encode_request(service: str, args: dict[str, Any] | None = None, req_id: int | None = None) -> bytes:
    return msgspec.msgpack.encode({"id": next(_ids) if req_id is None else req_id, "service": service,
                                   "args": args or {}})


def serve_one(sock: zmq.Socket, handlers: dict[str, Handler], on_error: Callable[[str], None],
              guard: Guard | None = None) -> None:
    """Answer one pending request on a ROUTER socket (non-blocking); ``guard`` may refuse it first."""
    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
    identity, body = frames[0].bytes, frames[-1].bytes
    req_id: Any = None
    try:
        req = msgspec.msgpack.decode(body)
        if not isinstance(req, dict) or not isinstance(req.get("service"), str):
            raise ValueError("request must be a map with a string `service`")
        req_id = req.get("id")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("field `args` must be a map")
        handler = handlers.get(req["service"])
        if handler is None:
            raise LookupError(f"unknown service {req['service']!r} (known: {', '.join(sorted(handlers))})")
        if guard is not None:
            guard(req["service"], identity, frames[-1])
        reply = {"id": req_id, "ok": True, "result": handler(args)}
    except Exception as exc:  # a bad request never takes the node down
        on_error(f"{type(exc).__name__}: {exc}")
        reply = {"id": req_id, "ok": False, "error": str(exc)}
    try:
        body = msgspec.msgpack.encode(reply)
    except (TypeError, ValueError, OverflowError) as exc:  # the handler returned something msgpack cannot carry
        on_error(f"reply to {req_id!r} cannot be encoded: {exc}")
        body = msgspec.msgpack.encode({"id": req_id, "ok": False, "error": f"reply cannot be encoded: {exc}"})
    try:
        sock.send_multipart([identity, body], zmq.NOBLOCK)
    except zmq.ZMQError:
        pass  # the client went away


def call(endpoint: str, service: str, args: dict[str, Any] | None = None, timeout: float = 2.0,
         context: zmq.Context | None = None) -> Any:
    """Call ``service`` at ``endpoint``; return its result or raise ServiceError/ServiceTimeout."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        curve = security.process_curve()
        if curve is not None:
            server = security.server_at(endpoint)
            if server is None:
                raise ServiceError(f"keys: no key known for the server at {endpoint} (ask the registry first)")
            curve.client(sock, server)
        sock.connect(endpoint)
        req_id = next(_ids)
        sock.send(encode_request(service, args, req_id))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        deadline_ms = int(timeout * 1000)
        while True:
            if not poller.poll(deadline_ms):
                raise ServiceTimeout(f"service `{service}` at {endpoint} did not answer within {timeout:g} s")
            try:
                reply = msgspec.msgpack.decode(sock.recv_multipart()[-1])
            except msgspec.DecodeError:
                continue
            if isinstance(reply, dict) and reply.get("id") == req_id:
                break
        if not reply.get("ok"):
            raise ServiceError(reply.get("error", "unknown error"))
        result = reply.get("result")
        if service == "node" and isinstance(result, dict):  # the node's service endpoint, and whose key it is
            endpoint = (result.get("endpoints") or {}).get("service")
            if isinstance(endpoint, str) and isinstance(result.get("name"), str):
                security.expect_server(endpoint, result["name"])
        return result
    finally:
        sock.close(0)
