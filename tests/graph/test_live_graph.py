"""One live single-agent graph, steered from outside: weights over the wire, a hand hot swap, a learner kill -9."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.env.gridlife import GridLifeConfig
from nodes.sac.policy_file import load_policy, save_policy
from nodes.sac.sac import SAC, SACConfig
from persist_rt.checkpoint import load as load_checkpoint
from persist_rt.cli.common import CliError, Graph
from tests.graph.conftest import LiveRun, finish, launch_single_agent
from tests.launch.conftest import persist, persist_json, wait_for

SWAPPED_VERSION = 4242
# Step-loss detectors: any lost proposal or action would show in one of these.
ENV_LOSS_COUNTERS = ("deadline_misses", "stale_or_misshapen_actions", "invalid_actions")
SHIELD_LOSS_COUNTERS = ("proposal_deadline_misses",)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    # A budget the tests never reach (they end the run with Ctrl-C); frequent checkpoints; deadlines long
    # enough that a loaded machine does not miss them, so a miss can only mean a lost step.
    run = launch_single_agent(tmp_path_factory.mktemp("live-graph"), "--arg", "steps=1000000",
                              "--set", "learner.checkpoint_every_s=2", "--set", "env.deadline_s=10",
                              "--set", "shield.proposal_deadline_s=5")
    try:
        wait_for("the agent to act with the learner's weights",
                 lambda: run.metric_above("agent", "policy_version", 0), deadline_s=90)
        yield run
        assert run.stop() == 0, run.output()[-4000:]
    finally:
        finish(run)


def counters(run: LiveRun, node: str, names: tuple[str, ...]) -> dict[str, int]:
    c = run.stats(node)["counters"]
    return {name: c.get(name, 0) for name in names}


def policy_file(path: Path, hidden: tuple[int, ...], version: int) -> Path:
    sac = SAC(GridLifeConfig().obs_dim, 2, SACConfig(hidden=hidden, seed=7))
    save_policy(path, sac.policy(version=version))
    return path


def test_weights_travel_and_a_hand_swap_loses_no_step(live: LiveRun, tmp_path: Path) -> None:
    reg = ("--registry", live.registry)
    before = persist_json("policy", "show", "agent", *reg)
    assert before["version"] > 0 and before["source"] == "policy/weights"  # the learner's, over the wire
    assert before["follow_learner"] is True
    assert before["spec"]["obs_dim"] == GridLifeConfig().obs_dim
    hidden = tuple(json.loads(persist("param", "get", "learner", "sac.hidden", *reg).stdout))
    assert hidden == SACConfig().hidden  # the launch file leaves it at the config's default
    # one field of the running learner's config, live; a field fixed by the built networks is refused by name
    assert persist("param", "set", "learner", "sac.batch_size", "48", *reg).returncode == 0
    assert json.loads(persist("param", "get", "learner", "sac.batch_size", *reg).stdout) == 48
    refused_field = persist("param", "set", "learner", "sac.hidden", "[32]", *reg)
    assert refused_field.returncode != 0 and "sac.hidden: fixed once the networks are built" in refused_field.stderr
    env_loss, shield_loss = counters(live, "env", ENV_LOSS_COUNTERS), counters(live, "shield", SHIELD_LOSS_COUNTERS)

    good = policy_file(tmp_path / "good.safetensors", hidden, SWAPPED_VERSION)
    swap = persist_json("policy", "swap", "agent", str(good), *reg)
    assert swap["old_version"] >= before["version"] and swap["new_version"] == SWAPPED_VERSION
    shown = persist_json("policy", "show", "agent", *reg)
    assert shown["version"] == SWAPPED_VERSION and shown["source"] == str(good) and shown["follow_learner"] is False

    # the agent acts with it: its proposals carry the new version, and the learner's later weights are ignored
    steps_at_swap = live.metric("env", "progress.steps") or 0.0
    wait_for("steps after the swap", lambda: live.metric_above("env", "progress.steps", steps_at_swap + 40))
    echo = persist("topic", "echo", "action/proposed", "-n", "1", "--json", "--timeout", "30", *reg)
    assert echo.returncode == 0, echo.stderr
    assert json.loads(echo.stdout)["data"]["policy_version"] == SWAPPED_VERSION

    wrong = policy_file(tmp_path / "wrong.safetensors", (32,), 7)
    refused = persist("policy", "swap", "agent", str(wrong), *reg)
    assert refused.returncode == 1
    assert "wrong architecture" in refused.stderr and "'hidden'" in refused.stderr, refused.stderr
    assert persist_json("policy", "show", "agent", *reg)["version"] == SWAPPED_VERSION

    # back by hand to the learner's weights the agent acted with before the swap (kept: the newest weights)
    assert swap["old_version"] in persist_json("policy", "show", "agent", *reg)["kept"]
    back = persist_json("policy", "use", "agent", str(swap["old_version"]), *reg)
    assert back == {"old_version": SWAPPED_VERSION, "new_version": swap["old_version"], "source": "policy/weights"}
    unknown = persist("policy", "use", "agent", str(SWAPPED_VERSION + 1), *reg)
    assert unknown.returncode == 1 and "`version`" in unknown.stderr, unknown.stderr

    # lockstep went on through both: no deadline missed, no stale step id, nothing replaced
    steps_after = live.metric("env", "progress.steps") or 0.0
    wait_for("steps after the refusal", lambda: live.metric_above("env", "progress.steps", steps_after + 40))
    assert counters(live, "env", ENV_LOSS_COUNTERS) == env_loss
    assert counters(live, "shield", SHIELD_LOSS_COUNTERS) == shield_loss


def test_policy_save_writes_what_the_agent_acts_with(live: LiveRun, tmp_path: Path) -> None:
    reg = ("--registry", live.registry)
    saved = persist_json("policy", "save", "agent", str(tmp_path / "acting.safetensors"), *reg)
    policy = load_policy(saved["path"])  # the format `policy swap` takes, validated on the way in
    assert policy.version == saved["version"] and policy.metadata["saved_from"] == "agent"
    assert policy.spec.to_dict() == persist_json("policy", "show", "agent", *reg)["spec"]
    swap = persist_json("policy", "swap", "agent", saved["path"], *reg)
    assert swap["new_version"] == saved["version"]
    assert persist_json("policy", "show", "agent", *reg)["source"] == saved["path"]

    unknown = persist("policy", "save", "no-such-agent", str(tmp_path / "x.safetensors"), *reg)
    assert unknown.returncode == 1 and "no-such-agent" in unknown.stderr, unknown.stderr
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    for bad in (not_a_dir / "x.safetensors", tmp_path / "nowhere" / "x.safetensors"):
        refused = persist("policy", "save", "agent", str(bad), *reg)
        assert refused.returncode == 1 and "argument FILE" in refused.stderr, refused.stderr
    # the agent checks the path itself too (its service is reachable without the CLI): the error names the field
    agent = Graph(live.registry)
    for path, reason in (("relative.safetensors", "absolute"), ("/proc/self/no-such-dir/x.safetensors", "cannot write")):
        with pytest.raises(CliError, match=f"field `path`.*{reason}"):
            agent.node_call("agent", "policy.save", {"path": path})
    assert counters(live, "agent", ("policy_saves",)) == {"policy_saves": 1}


def test_intervention_reports_go_out_a_period_at_a_time_and_match_the_report_file(live: LiveRun) -> None:
    echo = persist("topic", "echo", "shield/report", "-n", "1", "--json", "--timeout", "30", "--registry",
                   live.registry)
    assert echo.returncode == 0, echo.stderr
    report = json.loads(echo.stdout)["data"]
    entries = list(zip(report["step"], report["arena"], strict=True))
    assert entries and [s for s, _ in entries] == sorted(s for s, _ in entries)
    # every entry was also written to shield_reports.jsonl as its step was decided, before the message went out
    text = (live.run_dir / "shield_reports.jsonl").read_text()
    lines = text[:text.rfind("\n") + 1].splitlines()  # whole lines: the shield may be appending as we read
    written = {(r["step"], r["arena"]): r for r in map(json.loads, lines)}
    for (step, arena), mode, cause in zip(entries, report["mode"], report["cause"], strict=True):
        line = written[(step, arena)]
        assert line["mode"] == mode and cause == (line["cause"] or line["constraint"] or "")


def test_killed_learner_resumes_from_its_checkpoint_and_keeps_learning(live: LiveRun) -> None:
    checkpoint = live.run_dir / "checkpoints" / "learner.safetensors"
    def checkpoint_with_updates() -> bool:
        if not checkpoint.exists():
            return False
        tensors, _ = load_checkpoint(checkpoint)
        return int(tensors["num_updates"][0]) > 0

    wait_for("a learner checkpoint with updates in it", checkpoint_with_updates, deadline_s=60)
    old = live.nodes()["learner"]
    os.kill(old["pid"], signal.SIGKILL)

    def respawned() -> dict | None:
        node = live.nodes().get("learner")
        return node if node and node["pid"] != old["pid"] and node["state"] == "active" else None

    new = wait_for("the learner to respawn", respawned, deadline_s=60)
    assert new["restarts"] == old["restarts"] + 1
    resumed = wait_for("the respawned learner to resume from the checkpoint",
                       lambda: [e for e in live.log_events("learner") if e["event"] == "resumed"], deadline_s=90)
    assert len(resumed) == 1 and resumed[0]["path"] == str(checkpoint) and resumed[0]["updates"] > 0
    assert live.metric("learner", "resumes") == 1
    wait_for("updates beyond the checkpoint", lambda: live.metric_above("learner", "updates", resumed[0]["updates"]),
             deadline_s=90)
