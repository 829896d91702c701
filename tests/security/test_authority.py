"""Command authority without keys: during a real launch of the single-agent graph a rogue process publishes
`action/safe` on every observation (its headers naming the shield as sender) and claims the shield's name at the
registry. None of its actions reaches the env's step, every one is counted under its name, the claim is refused,
and the run's books and safety figures are those of any shielded run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import zmq

from persist_rt import services
from tests.graph.conftest import LiveRun, launch_single_agent
from tests.launch.conftest import ROOT, wait_for

ROGUE = Path(__file__).with_name("rogue_node.py")
REFUSED = "authority.action/safe.refused.rogue"


def claim_name(registry: str, name: str) -> dict:
    """A raw registration in another node's name, from a connection of its own; the registry's reply."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(registry)
    try:
        sock.send(services.encode_request("register", {
            "name": name, "kind": "rogue", "pid": os.getpid(), "host": os.uname().nodename, "endpoints": {},
            "publications": [{"topic": "action/safe", "schema": "persist.SafeAction@1"}], "subscriptions": []}))
        assert sock.poll(5000), "the registry did not answer"
        return msgspec.msgpack.decode(sock.recv())
    finally:
        sock.close(0)


def test_rogue_publisher_is_never_executed(tmp_path: Path, launched: list[LiveRun]) -> None:
    run = launch_single_agent(tmp_path, "--arg", "steps=1000000")
    launched.append(run)
    wait_for("training under way", lambda: run.metric_above("env", "progress.steps", 40), deadline_s=120)
    shield_before = run.nodes()["shield"]

    reply = claim_name(run.registry, "shield")
    assert not reply["ok"] and "already registered" in reply["error"]
    assert run.nodes()["shield"]["pid"] == shield_before["pid"]  # the record still names the real shield
    assert services.call(run.registry, "stats")["refused"]["name_taken"] == 1

    report = tmp_path / "rogue.json"
    rogue = subprocess.Popen(
        [sys.executable, "-m", "persist_rt.cli", "attach", str(ROGUE), "--name", "rogue", "--registry", run.registry,
         "-p", f"report={report}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for("the env to count the rogue's actions", lambda: run.metric_above("env", REFUSED, 30), deadline_s=30)
    finally:
        rogue.send_signal(signal.SIGINT)
        out = rogue.communicate(timeout=30)[0].decode(errors="replace")
    rogue_books = json.loads(report.read_text())
    assert rogue_books["confirmed"] > 30, out
    # every action the env took in is counted (a loaded machine may resend some after a reconnection: at least once)
    wait_for("every rogue action counted", lambda: run.metric("env", REFUSED) >= rogue_books["confirmed"],
             deadline_s=10)
    edge = run.stats("env")["subscriptions"]["action/safe"]
    assert set(edge["unauthorised_by"]) == {"rogue"}  # counted under its registered name, not the forged one
    assert edge["unauthorised"] == edge["unauthorised_by"]["rogue"] >= rogue_books["confirmed"]
    assert edge["delivered"] <= run.stats("shield")["publishers"]["action/safe"]["sent"]  # the shield's alone
    assert services.call(run.registry, "stats")["refused"]["unauthorised_publication"] >= 1
    assert any(e.get("event") == "unauthorised_message" and e.get("sender") == "rogue"
               for e in run.log_events("env"))
    run.stop()  # (a node still stopping at the shutdown deadline of a loaded machine is killed: not at issue)
    assert run.summary()["launch"]["nodes"]["env"]["exit_codes"] == [0]
    train = run.summary()["train"]
    assert train["violations_executed"] == 0
    assert train["executed_steps"] + train["fallback_steps"] == run.summary()["env_steps"]
    assert run.output().count("names no `keys`") == 1  # a launch without keys says so, once
