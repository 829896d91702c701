"""The executor's socket table: which handler serves which socket. A node owns one; publishers and subscriptions
see only this (to watch their own sockets), never the node's private members."""

from __future__ import annotations

from collections.abc import Callable

import zmq


class Executor:
    def __init__(self) -> None:
        self._poller = zmq.Poller()
        self._handlers: dict[zmq.Socket, Callable[[], None]] = {}

    def watch(self, sock: zmq.Socket, handler: Callable[[], None]) -> None:
        """Call ``handler()`` whenever ``sock`` is readable."""
        self._poller.register(sock, zmq.POLLIN)
        self._handlers[sock] = handler

    def unwatch(self, sock: zmq.Socket) -> None:
        if sock in self._handlers:
            self._poller.unregister(sock)
            del self._handlers[sock]

    def poll(self, timeout_ms: int) -> list[tuple[zmq.Socket, int]]:
        return self._poller.poll(timeout_ms)

    def dispatch(self, ready: list[tuple[zmq.Socket, int]]) -> None:
        for sock, _ in ready:
            handler = self._handlers.get(sock)  # None: an earlier handler of this turn let the socket go
            if handler is not None:
                handler()
