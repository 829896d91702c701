"""A real `persist launch` of the talker/listener graph, inspected and steered over the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from persist_rt import services
from tests.launch.conftest import (
    HERE,
    TALKER_LISTENER,
    nodes_by_name,
    persist,
    persist_json,
    run_processes,
    start_launch,
    stop_launch,
    wait_for,
)


class Live:
    def __init__(self, proc: subprocess.Popen[bytes], run_dir: Path, cwd: Path, log: Path) -> None:
        self.proc, self.run_dir, self.cwd, self.log = proc, run_dir, cwd, log
        self.registry = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("live")
    run_dir = cwd / "runs" / f"run-{uuid.uuid4().hex[:8]}"
    proc = start_launch(str(TALKER_LISTENER), "--run-dir", str(run_dir), "--arg", "rate=20", cwd=cwd,
                        log=cwd / "launch.log")
    lv = Live(proc, run_dir, cwd, cwd / "launch.log")
    try:
        lv.registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                               and (run_dir / "registry").read_text().strip())
        wait_for("both nodes active", lambda: {n["name"]: n["state"] for n in nodes_by_name(lv.registry).values()}
                 == {"talker": "active", "listener": "active"})
        yield lv
    finally:
        stop_launch(proc)


def test_node_list_json(live: Live) -> None:
    # found through the newest run directory under the working directory
    nodes = {n["name"]: n for n in persist_json("node", "list", cwd=live.cwd, env={"PERSIST_REGISTRY": ""})}
    assert set(nodes) == {"talker", "listener"}
    for n in nodes.values():
        assert {"name", "kind", "pid", "host", "state", "restarts", "endpoints"} <= set(n)
        assert n["state"] == "active" and n["restarts"] == 0 and isinstance(n["pid"], int)
        assert n["endpoints"]["service"].startswith("tcp://")
    assert nodes["talker"]["kind"] == "Talker" and "pub" in nodes["talker"]["endpoints"]


def test_topic_list_json(live: Live) -> None:
    topics = {t["name"]: t for t in persist_json("topic", "list", "--registry", live.registry)}
    chatter = topics["chatter"]
    assert chatter["schema"] == "persist.Text@1"
    assert [p["node"] for p in chatter["publishers"]] == ["talker"]
    assert chatter["publishers"][0]["endpoint"].startswith("tcp://")
    assert [s["node"] for s in chatter["subscribers"]] == ["listener"]


def test_topic_echo(live: Live) -> None:
    out = persist("topic", "echo", "chatter", "--count", "3", "--json", "--timeout", "20", "--registry", live.registry)
    assert out.returncode == 0, out.stderr
    msgs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(msgs) == 3
    assert all(m["sender"] == "talker" and m["data"]["data"].startswith("hello") for m in msgs)
    assert msgs[0]["seq"] < msgs[1]["seq"] < msgs[2]["seq"]
    human = persist("topic", "echo", "chatter", "-n", "1", "--registry", live.registry)
    assert human.returncode == 0 and '"data": "hello' in human.stdout


def test_topic_hz_bw_and_graph(live: Live) -> None:
    hz = persist("topic", "hz", "chatter", "--window", "1", "--count", "1", "--json", "--registry", live.registry)
    row = json.loads(hz.stdout.splitlines()[-1])
    assert row["rate_hz"] > 0 and "listener" in row["subscribers"] and "dropped" in row["subscribers"]["listener"]
    bw = persist("topic", "bw", "chatter", "--window", "1", "--count", "1", "--json", "--registry", live.registry)
    assert json.loads(bw.stdout.splitlines()[-1])["mean_bytes"] > 0
    text = persist("graph", "--registry", live.registry)
    assert "talker --chatter (persist.Text@1)--> listener [queue(64)]" in text.stdout
    dot = persist("graph", "--dot", "--registry", live.registry)
    assert dot.stdout.startswith("digraph persist {") and '"talker" -> "topic:chatter";' in dot.stdout


def test_param_and_lifecycle(live: Live) -> None:
    r = live.registry
    out = persist("param", "set", "talker", "rate_hz", "25", "--registry", r)
    assert out.returncode == 0, out.stderr
    assert persist("param", "get", "talker", "rate_hz", "--registry", r).stdout.strip() == "25.0"
    params = {p["name"]: p for p in persist_json("param", "list", "talker", "--registry", r)}
    assert params["rate_hz"]["value"] == 25.0 and params["rate_hz"]["type"] == "float"
    bad = persist("param", "set", "talker", "rate_hz", "fast", "--registry", r)
    assert bad.returncode == 1 and "parameter `rate_hz`: expected a number" in bad.stderr
    missing = persist("param", "get", "nobody", "x", "--registry", r)
    assert missing.returncode == 1 and "no node named 'nobody'" in missing.stderr
    assert persist("lifecycle", "get", "listener", "--registry", r).stdout.strip() == "active"
    assert persist("lifecycle", "set", "listener", "inactive", "--registry", r).stdout.strip() == "inactive"
    assert persist("lifecycle", "set", "listener", "active", "--registry", r).stdout.strip() == "active"


def test_attach_user_node(live: Live, tmp_path: Path) -> None:
    log = tmp_path / "attach.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "persist_rt.cli", "attach", str(HERE / "probe_subclass.py"),
                                 "--name", "probe", "--param", "source=chatter", "--registry", live.registry],
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        probe = wait_for("probe active", lambda: nodes_by_name(live.registry).get("probe", {}).get("state") == "active"
                         and nodes_by_name(live.registry)["probe"])
        endpoint = probe["endpoints"]["service"]
        # receiving: its subscription to the talker delivers
        wait_for("probe receiving", lambda: services.call(endpoint, "stats")["subscriptions"]["chatter"]["delivered"] > 0)
        # publishing: what it publishes reaches a reader outside it
        out = persist("topic", "echo", "probe/heard", "-n", "1", "--json", "--timeout", "20", "--registry", live.registry)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["data"]["data"].startswith("probe heard: hello")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    assert code == 0, log.read_text()
    assert "probe" not in nodes_by_name(live.registry)  # detached cleanly: unregistered at once


def test_kill_9_respawns_and_counts(live: Live) -> None:
    before = nodes_by_name(live.registry)["talker"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> dict | None:
        t = nodes_by_name(live.registry).get("talker")
        return t if t and t["pid"] != before["pid"] and t["state"] == "active" else None

    after = wait_for("talker respawned", back)
    assert after["restarts"] == before["restarts"] + 1
    assert "respawning talker (restart 1)" in live.output()


def test_sigint_leaves_no_process(live: Live) -> None:
    run_id = live.run_dir.name
    pids = run_processes(run_id)
    assert len(pids) >= 3  # registry, talker, listener
    live.proc.send_signal(signal.SIGINT)
    code = live.proc.wait(timeout=30)
    assert code == 0, live.output()
    assert run_processes(run_id) == []
    summary = json.loads((live.run_dir / "summary.json").read_text())
    assert summary["run_id"] == run_id and summary["launch"]["reason"] == "stopped by SIGINT"
    assert summary["launch"]["nodes"]["talker"]["restarts"] == 1
    assert (live.run_dir / "launch.yaml").exists() and (live.run_dir / "logs" / "talker.log").exists()
