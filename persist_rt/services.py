"""Request/reply services over ZeroMQ ROUTER (server) and DEALER (client) sockets.

Request: one msgpack frame ``{"id": int, "service": str, "args": {...}}``.
Reply:   one msgpack frame ``{"id": int, "ok": bool, "result": ...}`` or ``{..., "ok": false, "error": str}``.
"""

from __future__ import annotations

import itertools
import re
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


class RequestError(ValueError):
    """A request refused before any handler ran; ``field`` names the part at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


_FIELD = re.compile(r"field `([^`]+)`")


def rejected_field(exc: Exception) -> str:
    """The field a refusal blames: a RequestError's own, ``args.<name>`` where a handler's message names a
    ``field `name```, else ``handler``."""
    if isinstance(exc, RequestError):
        return exc.field
    m = _FIELD.search(str(exc))
    return f"args.{m.group(1)}" if m else "handler"


def parse_request(frames: list[bytes]) -> tuple[Any, str, dict[str, Any]]:
    """(id, service, args) of a ROUTER's ``[identity, body]``; RequestError naming the field otherwise."""
    if len(frames) != 2:
        raise RequestError("frames", f"expected 2 frames (identity, request), got {len(frames)}")
    try:
        req = msgspec.msgpack.decode(frames[1])
    except msgspec.DecodeError as exc:
        raise RequestError("request", f"not msgpack ({exc})") from None
    if not isinstance(req, dict) or not isinstance(req.get("service"), str):
        raise RequestError("request", "request must be a map with a string `service`")
    args = req.get("args") or {}
    if not isinstance(args, dict):
        raise RequestError("args", "field `args` must be a map")
    return req.get("id"), req["service"], args


def serve_one(sock: zmq.Socket, handlers: dict[str, Handler], on_error: Callable[[str, str], None],
              guard: Guard | None = None, frames: list[zmq.Frame] | None = None) -> None:
    """Answer one pending request on a ROUTER socket (non-blocking), or ``frames`` already read from it (without
    copying: under CURVE a frame carries the caller's proven key); ``guard`` may refuse it first.
    ``on_error(field, text)`` hears of each refusal."""
    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False) if frames is None else frames
    identity = frames[0].bytes
    req_id: Any = None
    try:
        req_id, service, args = parse_request([f.bytes for f in frames])
        if guard is not None:  # before the lookup: a refused caller learns nothing of the services
            guard(service, identity, frames[-1])
        handler = handlers.get(service)
        if handler is None:
            raise RequestError("service", f"unknown service {service[:64]!r} (known: {', '.join(sorted(handlers))})")
        reply = {"id": req_id, "ok": True, "result": handler(args)}
    except Exception as exc:  # a bad request never takes the node down
        on_error(rejected_field(exc), f"{type(exc).__name__}: {exc}")
        reply = {"id": req_id, "ok": False, "error": str(exc)}
    try:
        body = msgspec.msgpack.encode(reply)
    except (TypeError, ValueError, OverflowError) as exc:  # the handler returned something msgpack cannot carry
        on_error("reply", f"reply to {req_id!r} cannot be encoded: {exc}")
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
