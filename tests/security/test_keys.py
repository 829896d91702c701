"""CurveZMQ keys on a real launch of the single-agent graph: a rogue with no key, or with a key of its own (and the
graph's public keys, which are no secret), cannot reach the registry, attach, set a parameter, swap a policy or get
an action executed; every attempt is refused and counted by the socket that refused it, and the run is the same."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from persist_rt import security, services
from persist_rt.security import CLIENT, REGISTRY, Curve, KeySet
from tests.graph.conftest import SINGLE_AGENT, LiveRun, launch_single_agent
from tests.launch.conftest import ROOT, wait_for

ROGUE = Path(__file__).with_name("rogue_node.py")


def act_as(keys: Path | None, registry: str) -> None:
    """This process's service calls prove the client key of ``keys`` (None: no CURVE at all)."""
    security.use_curve(Curve(KeySet(keys), CLIENT, zmq.Context.instance()) if keys else None)
    security.expect_server(registry, REGISTRY)


def rogue_keys(graph: Path, where: Path) -> Path:
    """A key set of the rogue's own, holding the graph's public keys: it knows whom to talk to, not their secrets."""
    KeySet.create(where, [])
    for public in [graph / "registry.key", *(graph / "nodes").glob("*.key")]:
        target = where / public.relative_to(graph)
        target.parent.mkdir(exist_ok=True)
        shutil.copy(public, target)
    return where


def attach(registry: str, keys: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != security.KEYS_ENV}
    if keys:
        env[security.KEYS_ENV] = str(keys)
    return subprocess.run([sys.executable, "-m", "persist_rt.cli", "attach", str(ROGUE), "--name", "rogue",
                           "--registry", registry], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_rogue_without_the_graphs_keys_gets_nothing(tmp_path: Path, launched: list[LiveRun],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    made = subprocess.run([sys.executable, "-m", "persist_rt.cli", "keys", "init", str(keys), str(SINGLE_AGENT)],
                          cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert all(p.stat().st_mode & 0o077 == 0 for p in [keys, *keys.rglob("*")])  # 0700 directories, 0600 files
    monkeypatch.setenv(security.KEYS_ENV, str(keys))  # the operator's `persist` commands hold the client key
    run = launch_single_agent(tmp_path, "--arg", "steps=1000000", "--arg", f"keys={keys}")
    launched.append(run)
    act_as(keys, run.registry)
    try:
        wait_for("training under way", lambda: run.metric_above("env", "progress.steps", 40), deadline_s=120)
        wrong = rogue_keys(keys, tmp_path / "rogue-keys")

        for rogue in (None, wrong):  # attach: the registry never answers, the node never joins
            result = attach(run.registry, rogue)
            assert result.returncode != 0 and "did not answer" in result.stderr, result.stderr
        act_as(None, run.registry)
        with pytest.raises(services.ServiceTimeout):
            services.call(run.registry, "nodes", timeout=1.0)

        act_as(keys, run.registry)
        claim = {"name": "shield", "kind": "rogue", "pid": os.getpid(), "host": os.uname().nodename, "endpoints": {}}
        with pytest.raises(services.ServiceError, match="registers with shield's key"):
            services.call(run.registry, "register", claim)  # even the client key cannot be the shield
        shield = run.nodes()["shield"]["endpoints"]["service"]
        agent = run.nodes()["agent"]["endpoints"]["service"]
        security.expect_server(shield, "shield")
        security.expect_server(agent, "agent")
        filter_before = services.call(shield, "param.get", {"name": "filter"})
        act_as(wrong, run.registry)
        security.expect_server(shield, "shield")
        security.expect_server(agent, "agent")
        with pytest.raises(services.ServiceTimeout):
            services.call(shield, "param.set", {"name": "enabled", "value": False}, timeout=1.0)
        with pytest.raises(services.ServiceTimeout):
            services.call(agent, "policy.swap", {"path": str(tmp_path / "policy.safetensors")}, timeout=1.0)

        act_as(keys, run.registry)
        assert services.call(shield, "param.get", {"name": "enabled"}) is True
        assert services.call(shield, "param.get", {"name": "filter"}) == filter_before
        assert run.metric("shield", "auth.refused.svc") >= 1
        assert run.metric("agent", "auth.refused.svc") >= 1
        refused = services.call(run.registry, "stats")["refused"]
        assert refused.get("handshake", 0) >= 3  # two attaches and one listing, each refused at the handshake
        assert refused.get("wrong_key") == 1
        assert "rogue" not in run.nodes()
        edge = run.stats("env")["subscriptions"]["action/safe"]
        assert edge["publishers"] == 1 and edge["unauthorised"] == 0  # the env hears the shield, nobody else

        # the client key attaches a node, but no key makes a node other than the shield command the env
        rogue = subprocess.Popen([sys.executable, "-m", "persist_rt.cli", "attach", str(ROGUE), "--name", "rogue",
                                  "--registry", run.registry], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        try:
            wait_for("the env to drop the attached node's actions",
                     lambda: run.metric_above("env", "authority.action/safe.refused.rogue", 10), deadline_s=60)
        finally:
            rogue.send_signal(signal.SIGINT)
            rogue.communicate(timeout=30)
        assert set(run.stats("env")["subscriptions"]["action/safe"]["unauthorised_by"]) == {"rogue"}
        run.stop()  # (a node still stopping at the shutdown deadline of a loaded machine is killed: not at issue)
        summary = run.summary()
        assert summary["launch"]["nodes"]["env"]["exit_codes"] == [0]
        train = summary["train"]
        assert train["violations_executed"] == 0 and train["executed_steps"] > 0
        assert train["executed_steps"] + train["fallback_steps"] == summary["env_steps"]
        assert "names no `keys`" not in run.output()
    finally:
        security.use_curve(None)
