"""CBF coupler decision latency against a dense centralised OSQP over all pairs, in the same run.

Workload, per N in (2, 8, 32, 128): N bodies in one multi-agent GridLife arena (the default 10 m arena,
min_separation 0.4 m), each heading at full speed for a goal of its own (a new one once reached), in closed
loop: the coupler's actions are the ones the env executes. Own rows are each body's hazard rows (the
tangent half-planes the shield uses) and the walls. Every step both the coupler (`persist`: close pairs
from the spatial grid, one small QP per body) and the dense baseline (nodes/cbf_coupler/dense.py: one OSQP
problem with the joint row of every pair, set up once and updated) decide on the same state and proposals;
only the first is executed. `persist_osqp` is the coupler with `solver="osqp"` (each body's QP through the
shield's BarrierQP instead of the exact two-variable projection) on the same inputs.
Keys `coupler_us.{persist,dense,persist_osqp}.<N>.{p50,p99}` (microseconds per decision, as
the deciding thread's CPU time, `time.thread_time`: on a shared machine the wall clock also counts the time
other processes hold the cores; `wall_us.<...>.<N>.p50` gives the wall-clock median beside it),
`speedup.<N>` (dense p99 / persist p99), and per N the mean close pairs and solved bodies per decision, the
coupler's infeasible and deadlock counts and the collisions executed (which must be 0).

Closed loop through the graph (`persist launch launch/multi_agent.yaml --arg bodies=scripted`, every node its own
process, training only): env steps per second at N = 4 and 32 bodies (`steps_per_s.graph_<N>`, from the run's
summary: body-steps over the training wall time, over N), with the coupler bypassed in the same run as the baseline
(`steps_per_s.graph_<N>_coupler_off`), and the collisions each executed (`collisions.graph_<N>[_coupler_off]`).

    .venv/bin/python bench/multi_agent.py [--steps 400] [--steps-128 120] [--warmup 30] [--graph-steps 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nodes.cbf_coupler.core import Coupler, CouplerConfig, hazard_rows
from nodes.cbf_coupler.dense import DenseCoupler
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig

SIZES = (2, 8, 32, 128)
GRAPH_SIZES = (4, 32)
ROOT = Path(__file__).resolve().parent.parent


def run(n: int, steps: int, warmup: int, seed: int) -> dict[str, float]:
    cfg = MultiGridLifeConfig(num_agents=n, min_separation=0.4)
    batch = MultiGridLifeBatch(cfg)
    batch.reset(seed=seed)
    rng = np.random.default_rng(seed)
    step_len = np.full(n, cfg.world.dt * cfg.world.vmax)
    coupler_cfg = CouplerConfig(min_separation=cfg.min_separation, arena_size=cfg.world.arena_size)
    coupler = Coupler(coupler_cfg, step_len)
    via_osqp = Coupler(dataclasses.replace(coupler_cfg, solver="osqp"), step_len)
    dense = DenseCoupler(Coupler(coupler_cfg, step_len), n_rows=len(batch.layout.hazard_radii))
    goals = rng.uniform(1.0, 9.0, (n, 2))
    persist_us, dense_us, osqp_us, wall_us, pairs, solved = [], [], [], [], [], []
    collisions = dense_failed = 0
    for t in range(warmup + steps):
        pos = batch.positions[0].copy()
        heading = goals - pos
        dist = np.linalg.norm(heading, axis=1, keepdims=True)
        reached = dist[:, 0] < 0.3
        goals[reached] = rng.uniform(1.0, 9.0, (int(reached.sum()), 2))
        proposals = heading / np.maximum(dist, 1e-9)
        A, b = hazard_rows(pos, batch.layout.hazard_centres, batch.layout.hazard_radii, step_len, coupler_cfg.gamma)
        h = batch.internal[0]
        priority = np.minimum(np.minimum(h[:, 0], 1.0 - h[:, 1]), h[:, 2])
        w0, t0 = time.perf_counter(), time.thread_time()
        decision = coupler.step(pos, proposals, A, b, priority)
        w1, t1 = time.perf_counter(), time.thread_time()
        joint = dense.step(pos, proposals, A, b)
        w2, t2 = time.perf_counter(), time.thread_time()
        via_osqp.step(pos, proposals, A, b, priority)
        t3 = time.thread_time()
        result = batch.step(decision.actions[None].astype(np.float64))
        if t >= warmup:
            persist_us.append((t1 - t0) * 1e6)
            dense_us.append((t2 - t1) * 1e6)
            osqp_us.append((t3 - t2) * 1e6)
            wall_us.append(((w1 - w0) * 1e6, (w2 - w1) * 1e6))
            pairs.append(decision.pairs)
            solved.append(decision.solved)
            collisions += int(result.collision.sum())
            dense_failed += joint is None
    out = {}
    for name, values in (("persist", persist_us), ("dense", dense_us), ("persist_osqp", osqp_us)):
        out[f"coupler_us.{name}.{n}.p50"] = round(float(np.percentile(values, 50)), 1)
        out[f"coupler_us.{name}.{n}.p99"] = round(float(np.percentile(values, 99)), 1)
    for k, name in enumerate(("persist", "dense")):
        out[f"wall_us.{name}.{n}.p50"] = round(float(np.percentile([w[k] for w in wall_us], 50)), 1)
    out[f"speedup.{n}"] = round(out[f"coupler_us.dense.{n}.p99"] / out[f"coupler_us.persist.{n}.p99"], 2)
    out[f"pairs_mean.{n}"] = round(float(np.mean(pairs)), 2)
    out[f"solved_mean.{n}"] = round(float(np.mean(solved)), 2)
    out[f"coupler.infeasible.{n}"] = coupler.counts["infeasible"]
    out[f"coupler.deadlocks.{n}"] = coupler.counts["deadlocks"]
    out[f"collisions_executed.{n}"] = collisions
    out[f"dense_unsolved.{n}"] = dense_failed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="measured decisions per N (N < 128)")
    parser.add_argument("--steps-128", type=int, default=120, help="measured decisions at N = 128")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--graph-steps", type=int, default=300, help="env steps of each closed-loop graph run")
    args = parser.parse_args()
    out: dict[str, object] = {"bench": "multi_agent", "python": platform.python_version(),
                              "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}  # fmt: skip
    for n in SIZES:
        out.update(run(n, args.steps_128 if n >= 128 else args.steps, args.warmup, args.seed))
    for n in GRAPH_SIZES:
        for coupler in (True, False):
            key = f"graph_{n}" if coupler else f"graph_{n}_coupler_off"
            summary = graph_run(n, args.graph_steps, coupler, args.seed)
            per_s = summary.get("env_steps_per_s")  # body-steps per second of training
            out[f"steps_per_s.{key}"] = None if per_s is None else round(per_s / n, 1)
            out[f"collisions.{key}"] = summary.get("train", {}).get("collisions")
    print(json.dumps(out))


def graph_run(agents: int, steps: int, coupler: bool, seed: int) -> dict:  # type: ignore[type-arg]
    """One `persist launch launch/multi_agent.yaml` run; its summary.json ({} if it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        command = [sys.executable, "-m", "persist_rt.cli", "launch", str(ROOT / "launch" / "multi_agent.yaml"),
                   "--run-dir", str(run_dir), "--arg", f"agents={agents}", "--arg", f"steps={steps * agents}",
                   "--arg", f"coupler={'true' if coupler else 'false'}", "--arg", f"seed={seed}",
                   "--arg", "bodies=scripted", "--arg", "eval_episodes=0"]  # the loop alone: no learning, no evaluation
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
        summary_path = run_dir / "summary.json"
        if done.returncode != 0 or not summary_path.exists():
            print(done.stdout[-2000:], file=sys.stderr)
            return {}
        return json.loads(summary_path.read_text())


if __name__ == "__main__":
    main()
