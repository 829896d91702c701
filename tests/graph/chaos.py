"""Kill -9, in turn and at seeded random times, every process of a training run of the single-agent graph (the
estimator's too, under partial observability); the run
must complete with no violation executed and its books whole. Shared by tests/graph/test_chaos.py and
bench/chaos.py (a longer version)."""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persist_rt import services
from tests.graph.conftest import LiveRun, launch_single_agent
from tests.launch.conftest import wait_for

# every process of a partially observed run, in the order; a fully observed run has no estimator
VICTIMS = ("env", "agent", "learner", "shield", "estimator", "telemetry", "registry")
# the launch starts the estimator too; `--set env.config` (tests.graph.conftest.SMALL) replaces the mapping the
# argument fills in, so the env's hiding of its internal variables is repeated there
PARTIAL = ("--arg", "partial_observability=true",
           "--set", 'env.config={"episode_cap": 150, "partial_observability": true}')
# Short cadences, so that every kill finds something saved: the env's books, the learner's checkpoint and replay.
# No evaluations: the run completes when training does (evaluation is tested elsewhere and kills nothing more).
CHAOS_ARGS = ("--arg", "steps=100000000", "--arg", "eval_episodes=0", "--set", "env.books_every_s=0.5",
              "--set", "learner.checkpoint_every_s=1", "--set", "env.deadline_s=0.2")


@dataclass
class Kill:
    victim: str
    pid: int
    at_steps: float  # the env's training steps when it was killed


@dataclass
class ChaosRun:
    run: LiveRun
    kills: list[Kill] = field(default_factory=list)


def _registry_pid(run: LiveRun) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"persist_rt.registry" in (entry / "cmdline").read_bytes() and \
                        f"PERSIST_RUN_ID={run.run_dir.name}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError("the run's registry is not running")


def _steps(run: LiveRun) -> float | None:
    return run.metric("env", "progress.steps")


def _nodes(run: LiveRun) -> dict[str, dict[str, Any]]:
    """The registry's node list, asked directly (cheaper than `persist node list`); empty while it is away."""
    try:
        return {n["name"]: n for n in services.call(run.registry, "nodes", timeout=3.0)}
    except (services.ServiceError, services.ServiceTimeout):
        return {}


def _back(run: LiveRun, victim: str, old_pid: int, names: set[str]) -> bool:
    """The killed process is replaced and every node is listed and active again."""
    if victim == "registry":
        try:
            if _registry_pid(run) == old_pid:
                return False
        except AssertionError:
            return False
    nodes = _nodes(run)
    if set(nodes) < names or any(n["state"] != "active" for n in nodes.values()):
        return False
    return victim == "registry" or nodes[victim]["pid"] != old_pid


def victims_of(partial_observability: bool) -> tuple[str, ...]:
    """The processes a run starts, in kill order."""
    return VICTIMS if partial_observability else tuple(v for v in VICTIMS if v != "estimator")


def chaos(tmp: Path, seed: int, rounds: int = 1, extra_steps: int = 500, gap_s: tuple[float, float] = (0.2, 1.0),
          victims: tuple[str, ...] = VICTIMS, args: tuple[str, ...] = PARTIAL) -> ChaosRun:
    """Launch, kill each victim in turn (``rounds`` times) at seeded random gaps once it is back, then let the
    run finish its training (``extra_steps`` more) and its evaluations."""
    rng = random.Random(seed)
    run = launch_single_agent(tmp, *CHAOS_ARGS, *args)
    result = ChaosRun(run)
    wait_for("training under way", lambda: (s := _steps(run)) is not None and s > 200, deadline_s=180)
    wait_for("a learner checkpoint with its replay buffer",
             lambda: (run.run_dir / "checkpoints" / "replay.safetensors").exists(), deadline_s=120)
    names = set(_nodes(run))
    for _ in range(rounds):
        for victim in victims:
            time.sleep(rng.uniform(*gap_s))
            pid = _registry_pid(run) if victim == "registry" else _nodes(run)[victim]["pid"]
            steps = _steps(run) or 0.0
            os.kill(pid, signal.SIGKILL)
            result.kills.append(Kill(victim, pid, steps))
            wait_for(f"{victim} to come back", lambda v=victim, p=pid: _back(run, v, p, names), deadline_s=120)
    # every node back: now the run may end; the env's budget is its books' steps plus a little
    done_at = wait_for("the env's books", lambda: _steps(run), deadline_s=60) + extra_steps
    env = _nodes(run)["env"]["endpoints"]["service"]
    services.call(env, "param.set", {"name": "total_steps", "value": int(done_at)}, timeout=10.0)
    return result


def check(result: ChaosRun) -> dict[str, Any]:
    """The run's figures after it ended: what the test asserts and the benchmark prints."""
    run = result.run
    summary = run.summary()
    train = summary["train"]
    nodes = summary["launch"]["nodes"]
    restarts = {name: node["restarts"] for name, node in nodes.items()}
    restarts["registry"] = summary["launch"]["registry_restarts"]
    events = {name: [e["event"] for e in run.log_events(name)] for name in ("env", "learner")}
    resumed = [e["env_steps"] for e in run.log_events("env") if e["event"] == "books_resumed"]
    env_kills = [k.at_steps for k in result.kills if k.victim == "env"]
    return {
        "summary": summary,
        "kills": len(result.kills),
        "restarts": sum(restarts.values()),
        "restarts_by_node": restarts,
        "violations_executed": train["violations_executed"],
        "books_consistent": train["executed_steps"] + train["fallback_steps"] == summary["env_steps"],
        "env_books_resumed": events["env"].count("books_resumed"),
        # training steps booked when the env was killed (its gauge, read just before) minus those it resumed with:
        # the steps a kill cost the books, at most about one `books_every_s` of stepping
        "env_steps_unbooked": [max(0, int(k - r)) for k, r in zip(env_kills, resumed, strict=False)],
        "learner_replay_resumed": events["learner"].count("replay_resumed"),
        "complete": summary["complete"],
    }
