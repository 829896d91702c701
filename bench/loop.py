"""Closed-loop env arena-steps per second: the process graph against the same loop in one process.

`graph_N`: `persist launch launch/single_agent.yaml` with N arenas, lockstep, shield (QP filter) in the
loop, learner present but never updating (huge `learning_starts`), so the figure measures the transport
loop env -> agent -> shield -> env. It is the env's `env_steps_per_s` from summary.json (training phase
only, start-up excluded). Same-host edges ride IPC, as in any launch; `graph_1_tcp` is the 1-arena graph
with `PERSIST_SAME_HOST_IPC=0` (every edge on loopback TCP), the baseline of that choice;
`graph_1_no_busy_poll` is the 1-arena graph with `--arg busy_poll_us=0` (every node sleeps in its poll at
once), the baseline of the launch file's idle strategy (docs/launch.md); `graph_1_keys` is the 1-arena graph
with CurveZMQ on every edge (`--arg keys=DIR`, a fresh `persist keys init`), against `graph_1` without keys:
the cost of encryption (docs/security.md). Each is the median of `--repeats-1`
launches, alternating (`graph_1_runs` lists them all). `inproc_N`: the
same env + policy + ShieldCore computations in this process with no transport, the limit the graph can
approach. "The same" includes the proposals and the episodes. The graph's learner never sends weights, so
its agent proposes uniform random actions, as a SAC agent does before its first update; the in-process loop
draws them too (the shield's work depends on them: about a quarter of random proposals are filtered, and a
tenth meet an infeasible QP and get the fallback). The launch file's env trains with `train_cap` (250), and
the shield's work depends on it too (its rollouts are longer from fresh start states), so the in-process env
restarts episodes at that cap.

Where a 1-arena graph step goes, measured in the same run (bench/loop_floor.py): `transport_only_1` is the
same lockstep topology and messages (env/obs to agent and shield, action/proposed, action/safe) through
PERSIST's runtime, three `persist_rt.Node` processes whose callbacks only answer: transport and node runtime
with no work. `raw_zmq_1` is that topology in plain pyzmq (three processes waiting in `zmq.Poller`,
PUB/SUB and PUSH/PULL over the same transport as the nodes, messages of the same sizes): ZeroMQ's own
floor from Python.
`per_step_us` gives each 1-arena figure as microseconds per step, so that graph_1 - transport_only_1 is
roughly the work (env step, proposal, shield QP, bookkeeping) and transport_only_1 - raw_zmq_1 is PERSIST's
runtime above ZeroMQ. Both floors use the launch file's idle strategy (`busy_poll_us`: per role, as the
launch file gives the env, agent and shield nodes). `floor_runs` counts each floor's observations re-sent
after its 1 s deadline: a floor figure is clean only with `resends_timed` 0. Prints one JSON line.

    .venv/bin/python bench/loop.py [--steps-1 5000] [--repeats-1 3] [--steps-64 200000] [--inproc-seconds 4]
                                   [--floor-steps 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loop_floor import (  # noqa: E402
    LAUNCH_FILE,
    FloorConfig,
    launch_busy_poll_us,
    raw_zmq_steps_per_s,
    transport_only_steps_per_s,
)
from nodes.env.gridlife import GridLifeBatch, GridLifeConfig  # noqa: E402
from nodes.shield.core import ShieldConfig, ShieldCore  # noqa: E402

ARENAS = (1, 64)
PER_STEP_FIGURES = ("graph_1", "graph_1_tcp", "graph_1_no_busy_poll", "graph_1_keys", "transport_only_1", "raw_zmq_1",
                    "inproc_1")
VARIANTS_1 = {"ipc": {}, "tcp": {"same_host_ipc": False}, "no_busy_poll": {"busy_poll": False},
              "keys": {"keys": True}}  # 1-arena launches
PERSIST = (sys.executable, "-m", "persist_rt.cli")  # the CLI of the interpreter running this bench
TARGET_GRAPH_1 = 1500.0  # steps/s at 1 arena
TARGET_GRAPH_64_FRACTION = 0.5  # of the in-process figure at 64 arenas


def graph_steps_per_s(arenas: int, steps: int, timeout_s: float, same_host_ipc: bool = True,
                      busy_poll: bool = True, keys: bool = False) -> dict[str, Any]:
    """One launch of the real graph; the env's training-phase throughput from its summary.json."""
    env = {**os.environ, "PERSIST_SAME_HOST_IPC": "1" if same_host_ipc else "0"}
    with tempfile.TemporaryDirectory(prefix="persist-bench-loop-") as tmp:
        run_dir = Path(tmp) / "run"
        key_args: tuple[str, ...] = ()
        if keys:
            subprocess.run([*PERSIST, "keys", "init", f"{tmp}/keys", str(LAUNCH_FILE)], cwd=REPO, check=True,
                           capture_output=True)
            key_args = ("--arg", f"keys={tmp}/keys")
        cmd = [
            *PERSIST, "launch", str(LAUNCH_FILE),
            "--arg", f"steps={steps}", "--arg", f"arenas={arenas}", "--arg", "eval_episodes=0",
            "--set", "learner.sac.learning_starts=100000000", "--run-dir", str(run_dir),
            *(() if busy_poll else ("--arg", "busy_poll_us=0")), *key_args,
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        summary_path = run_dir / "summary.json"
        if proc.returncode != 0 or not summary_path.exists():
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise RuntimeError(f"graph run with {arenas} arenas failed (exit {proc.returncode}):\n{tail}")
        summary = json.loads(summary_path.read_text())
    if not summary.get("complete") or summary["env_steps"] < steps:
        raise RuntimeError(f"graph run with {arenas} arenas incomplete: {summary['env_steps']} of {steps} steps")
    return {"steps_per_s": float(summary["env_steps_per_s"]), "env_steps": summary["env_steps"],
            "wall_s": summary["wall_s"], "fallback_steps": summary["train"]["fallback_steps"]}


def train_cap() -> int:
    """The episode cap the launch file's env trains with (its `train_cap`; 0 or absent: the config's own)."""
    launch = yaml.safe_load(LAUNCH_FILE.read_text())
    env = next(node for node in launch["nodes"] if node["name"] == "env")
    return int(env.get("params", {}).get("train_cap", 0)) or GridLifeConfig().episode_cap


def inproc_steps_per_s(arenas: int, seconds: float, seed: int = 0) -> float:
    """propose -> shield -> env.step in one loop, as the graph's training phase does it, with no transport."""
    env_cfg = GridLifeConfig()
    env = GridLifeBatch(replace(env_cfg, episode_cap=train_cap()), arenas)
    shield = ShieldCore(env_cfg, ShieldConfig(filter="qp", fallback="seek_station"))
    rng = np.random.default_rng(seed)
    env.reset(seed)

    def one_step(t: int) -> None:
        proposed = rng.uniform(-1.0, 1.0, size=(arenas, 2)).astype(np.float32)  # as the agent without weights
        decision = shield.step(t, env.positions, env.internal, proposed, input_age_s=0.0)
        env.step(decision.actions)

    for t in range(20):  # warm-up: OSQP set-up, first allocations
        one_step(t)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one_step(20 + steps)
        steps += 1
    return steps * arenas / (time.perf_counter() - t0)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median steps/s (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["steps_per_s"])[(len(runs) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-1", type=int, default=5000, help="arena-steps of the 1-arena graph run")
    parser.add_argument("--steps-64", type=int, default=200000, help="arena-steps of the 64-arena graph run")
    parser.add_argument("--inproc-seconds", type=float, default=4.0, help="measuring time per in-process loop")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per graph run")
    parser.add_argument("--repeats-1", type=int, default=3,
                        help="1-arena launches of each variant (IPC, TCP, no busy polling), alternating; "
                             "each figure is their median")
    parser.add_argument("--floor-steps", type=int, default=FloorConfig.steps,
                        help="timed steps of each 1-arena floor (transport_only_1, raw_zmq_1)")
    parser.add_argument("--only-1", default=None, metavar="VARIANTS",
                        help=f"comma-separated 1-arena variants ({', '.join(VARIANTS_1)}) to launch, and nothing else")
    args = parser.parse_args()
    for name in ("steps_1", "steps_64", "floor_steps", "repeats_1"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    if args.inproc_seconds <= 0:
        parser.error("--inproc-seconds: must be > 0")

    # a 1-arena launch measures a few seconds, so the machine's drift shows: alternate the variants' launches
    # and take each one's median
    variants = {n: VARIANTS_1[n] for n in args.only_1.split(",")} if args.only_1 else VARIANTS_1
    runs_1: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.repeats_1):
        for name, variant in variants.items():
            runs_1[name].append(graph_steps_per_s(1, args.steps_1, args.timeout, **variant))
    if args.only_1:
        print(json.dumps({"steps_per_s": {f"graph_1_{n}": round(_median_run(r)["steps_per_s"], 1)
                                          for n, r in runs_1.items()},
                          "graph_1_runs": {n: [round(x["steps_per_s"], 1) for x in r] for n, r in runs_1.items()},
                          "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}))
        return
    graph = {1: _median_run(runs_1["ipc"]), 64: graph_steps_per_s(64, args.steps_64, args.timeout)}
    floor_cfg = FloorConfig(steps=args.floor_steps, busy_poll_us=launch_busy_poll_us())
    floors = {"transport_only_1": transport_only_steps_per_s(floor_cfg), "raw_zmq_1": raw_zmq_steps_per_s(floor_cfg)}
    inproc = {n: inproc_steps_per_s(n, args.inproc_seconds) for n in ARENAS}
    exact = {f"graph_{n}": graph[n]["steps_per_s"] for n in ARENAS}
    for name in ("tcp", "no_busy_poll", "keys"):
        exact[f"graph_1_{name}"] = _median_run(runs_1[name])["steps_per_s"]
    exact.update({f"inproc_{n}": inproc[n] for n in ARENAS})
    exact.update({name: floor["steps_per_s"] for name, floor in floors.items()})
    steps_per_s = {name: round(value, 1) for name, value in exact.items()}
    ratio = {f"graph_{n}_over_inproc_{n}": round(graph[n]["steps_per_s"] / inproc[n], 3) for n in ARENAS}
    result = {
        "steps_per_s": steps_per_s,
        "per_step_us": {name: round(1e6 / exact[name], 1) for name in PER_STEP_FIGURES},
        "ratio": ratio,
        "targets": {
            "graph_1_ge_1500": graph[1]["steps_per_s"] >= TARGET_GRAPH_1,
            "graph_64_ge_half_inproc_64": graph[64]["steps_per_s"] >= TARGET_GRAPH_64_FRACTION * inproc[64],
        },
        "graph_runs": {f"graph_{n}": {k: v for k, v in graph[n].items() if k != "steps_per_s"} for n in ARENAS},
        "graph_1_runs": {name: [round(r["steps_per_s"], 1) for r in runs] for name, runs in runs_1.items()},
        "busy_poll_us": floor_cfg.busy_poll_us,
        "floor_runs": {name: {k: v for k, v in floor.items() if k != "steps_per_s"} for name, floor in floors.items()},
        "shield_filter": "qp",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
