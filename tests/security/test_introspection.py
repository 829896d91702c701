"""Open introspection on a real launch with keys: a client holding no graph key (a key pair of its own and the
graph's public keys) may list nodes and read parameters, and nothing more; each refused request is counted. Closed
(the default), the same client does not get past the handshake."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from persist_rt import security, services
from persist_rt.security import KeySet
from tests.launch.conftest import TALKER_LISTENER, persist_json, start_launch, stop_launch, wait_for
from tests.security.test_keys import act_as, rogue_keys


@contextmanager
def launched(tmp: Path, keys: Path, introspection: str | None) -> Iterator[str]:
    """A talker/listener launch with ``keys`` (and the switch, when given); yields the registry's address."""
    launch = tmp / "graph.yaml"
    launch.write_text(TALKER_LISTENER.read_text() + f"keys: {keys}\n"
                      + (f"introspection: {introspection}\n" if introspection else ""))
    run_dir = tmp / "runs" / f"run-{uuid.uuid4().hex[:8]}"
    proc = start_launch(str(launch), "--run-dir", str(run_dir), cwd=tmp, log=tmp / f"launch-{introspection}.log")
    try:
        registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                            and (run_dir / "registry").read_text().strip())
        act_as(keys, registry)
        wait_for("both nodes active", lambda: sorted(n["name"] for n in services.call(registry, "nodes")
                                                     if n["state"] == "active") == ["listener", "talker"])
        yield registry
    finally:
        security.use_curve(None)
        stop_launch(proc)


def _talker(registry: str) -> str:
    endpoint = services.call(registry, "node", {"name": "talker"})["endpoints"]["service"]
    security.expect_server(endpoint, "talker")
    return endpoint


def test_open_introspection_reads_without_the_client_key_and_writes_nothing(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeySet.create(keys, ["talker", "listener"])
    keyless = rogue_keys(keys, tmp_path / "keyless")  # its own client key: not one of the graph's

    with launched(tmp_path, keys, "open") as registry:
        act_as(keyless, registry)
        assert {n["name"] for n in services.call(registry, "nodes")} == {"talker", "listener"}
        assert {t["name"] for t in services.call(registry, "topics")} >= {"chatter"}
        talker = _talker(registry)
        assert services.call(talker, "param.get", {"name": "rate_hz"}) == 10.0
        assert "rate_hz" in {p["name"] for p in services.call(talker, "param.list")}
        for service, args in (("param.set", {"name": "rate_hz", "value": 1.0}),
                              ("lifecycle.set", {"state": "inactive"}), ("shutdown", {})):
            with pytest.raises(services.ServiceError, match=f"`{service}`: needs a graph key"):
                services.call(talker, service, args)
        with pytest.raises(services.ServiceError, match="`register`: needs a graph key"):
            services.call(registry, "register", {"name": "rogue", "pid": 1, "endpoints": {}})
        # the CLI reads the same way with a key directory of its own (the graph's public keys, its own client pair)
        listed = persist_json("node", "list", "--registry", registry, env={security.KEYS_ENV: str(keyless)})
        assert {n["name"] for n in listed} == {"talker", "listener"}

        act_as(keys, registry)
        talker = _talker(registry)
        assert services.call(talker, "param.get", {"name": "rate_hz"}) == 10.0  # nothing was changed
        assert services.call(talker, "lifecycle.get")["state"] == "active"
        counters = services.call(talker, "stats")["counters"]
        assert counters["auth.refused.request"] == 3 and counters["auth.open_read"] >= 2
        stats = services.call(registry, "stats")
        assert stats["refused"]["unknown_key"] == 1 and stats["open_reads"] >= 4
        assert "rogue" not in {n["name"] for n in services.call(registry, "nodes")}

    with launched(tmp_path, keys, None) as registry:  # closed by default: no handshake for a key not of the graph
        act_as(keyless, registry)
        with pytest.raises(services.ServiceTimeout):
            services.call(registry, "nodes", timeout=1.0)
        act_as(keys, registry)
        assert wait_for("the refused handshake counted",
                        lambda: services.call(registry, "stats")["refused"].get("handshake", 0) >= 1)
