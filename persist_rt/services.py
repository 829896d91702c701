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

Handler = Callable[[dict[str, Any]], Any]
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
              frames: list[bytes] | None = None) -> None:
    """Answer one pending request on a ROUTER socket (non-blocking), or ``frames`` already read from it.
    ``on_error(field, text)`` hears of each refusal."""
    frames = sock.recv_multipart(zmq.NOBLOCK) if frames is None else frames
    identity = frames[0]
    req_id: Any = None
    try:
        req_id, service, args = parse_request(frames)
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
        return reply.get("result")
    finally:
        sock.close(0)
