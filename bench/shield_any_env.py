"""The shield for any Box action space (nodes/shield/any_env.py): per-decision latency and closed-loop safety.
One JSON line.

Latency (`latency_us.<filter>.<dim>.{p50,p99}`, one arena per decision, dims 1, 2, 6, 17): PointMass kept in one
halfspace (`nodes.env.point_safety:point_halfspace_rows` / `_model`), states drawn within EDGE_BAND of its edge so
that about half the random proposals break it (`projected.<dim>`: the share the qp filter changed). `qp` and
`search` are `AnyEnvShield.step`; the baseline `halfspace` is the closed-form projection onto the same row,
u - max(0, a.u - b) a / |a|^2 clipped to the box, after the same call of the rows function, in the same run.
`loadavg_1min` says how busy the machine was: p99 is where others' work shows, so `cpu_us.<filter>.<dim>.{p50,p99}`
gives the same decisions' CPU time of this thread (time descheduled left out).

Closed loop (`envs.<env_id>.<shielded|unshielded>.{violations, return}`): seeded uniform random proposals on
each tested env, through the qp filter (`shielded`, the affine description), the search filter (`shielded_search`,
the model) or unshielded, and on PointMass 2-D also through the learned margin model (`shielded_learned`, margins
only, after EXPLORE_TRANSITIONS random transitions on other seeds); `return` is the mean return of the episodes
that ended, `violations` the executed arena-steps whose next state breaks the env's constraint.

    .venv/bin/python bench/shield_any_env.py [--decisions 2000] [--arenas 8] [--steps 400]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gymnasium import spaces

import nodes.env.point_envs  # noqa: F401  (registers the point envs)
from nodes.env.gym_adapter import GymBatch
from nodes.env.node import scale_to_box
from nodes.env.point_safety import HALFSPACE_LEVEL
from nodes.shield.any_env import ANY_ENV_CAUSES, AnyEnvConfig, AnyEnvShield
from nodes.shield.description import Rows
from nodes.shield.learned_margins import LearnedMarginsConfig

torch.set_num_threads(1)  # the learned filter's small networks: faster than two threads on a shared machine
DIMS = (1, 2, 6, 17)
EXPLORE_TRANSITIONS = 2000  # the learned filter's training, before its closed loop
WARMUP = 200
EDGE_BAND = 0.02  # states this close to the halfspace's edge: about half the random proposals break it
ENVS = {  # key: (env_id, env kwargs, env constraint, rows, model, backup)
    "Pendulum-v1": ("Pendulum-v1", {}, "nodes.env.constraints:pendulum_speed", "nodes.env.pendulum_safety:speed_rows",
                    "nodes.env.pendulum_safety:speed_model", "nodes.env.pendulum_safety:brake"),
    "persist/PlanarDoubleIntegrator-v0": ("persist/PlanarDoubleIntegrator-v0", {}, "nodes.env.point_envs:planar_margin",
                                          "nodes.env.point_safety:planar_rows", "nodes.env.point_safety:planar_model",
                                          ""),
    **{f"persist/PointMass-v0(dim={d})": ("persist/PointMass-v0", {"dim": d}, "nodes.env.point_envs:point_margin",
                                          "nodes.env.point_safety:point_rows", "nodes.env.point_safety:point_model", "")
       for d in (2, 6, 17)},
}
LEARNED_ON = ("persist/PointMass-v0(dim=2)",)  # margins only: where one step decides (docs/shield.md)


def workload(dim: int, decisions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations (x, goal) with n.x within 0.15 of the halfspace's edge, and random proposals."""
    rng = np.random.default_rng(seed)
    n = np.full(dim, 1.0 / np.sqrt(dim))
    x = rng.uniform(-0.5, 0.5, (decisions, dim))
    x += (HALFSPACE_LEVEL - rng.uniform(0.0, EDGE_BAND, decisions) - x @ n)[:, None] * n[None, :]
    obs = np.concatenate([x, np.zeros((decisions, dim))], axis=1).astype(np.float32)
    return obs, rng.uniform(-1.0, 1.0, (decisions, dim)).astype(np.float32)


def percentiles(ns: list[int]) -> dict[str, float]:
    us = np.asarray(ns[WARMUP:], np.float64) / 1e3
    return {"p50": round(float(np.percentile(us, 50)), 1), "p99": round(float(np.percentile(us, 99)), 1)}


def latency(dim: int, decisions: int) -> dict[str, Any]:
    """The three deciders take turns on each decision (garbage collection off), so that whatever else the machine
    runs meanwhile falls on all three alike."""
    space = spaces.Box(-1.0, 1.0, (dim,), np.float32)
    obs, proposals = workload(dim, decisions, seed=dim)
    cores = {filt: AnyEnvShield(space, AnyEnvConfig(filter=filt, rows="nodes.env.point_safety:point_halfspace_rows",
                                                    model="nodes.env.point_safety:point_halfspace_model"))
             for filt in ("qp", "search")}
    rows = Rows("nodes.env.point_safety:point_halfspace_rows", dim)
    wall: dict[str, list[int]] = {"qp": [], "search": [], "halfspace": []}
    cpu: dict[str, list[int]] = {name: [] for name in wall}
    deciders = {filt: (lambda i, core=core: core.step(i, obs[i : i + 1], proposals[i : i + 1], 0.0))
                for filt, core in cores.items()}
    deciders["halfspace"] = lambda i: halfspace(rows, obs[i], proposals[i])
    gc.disable()
    try:
        for i in range(decisions):
            for name, decide in deciders.items():
                t, c = time.perf_counter_ns(), time.thread_time_ns()
                decide(i)
                cpu[name].append(time.thread_time_ns() - c)
                wall[name].append(time.perf_counter_ns() - t)
    finally:
        gc.enable()
    projected = cores["qp"].counts["mode.filtered"] / cores["qp"].counts["decisions"]
    return {f"latency_us.{name}": percentiles(wall[name]) for name in wall} | \
        {f"cpu_us.{name}": percentiles(cpu[name]) for name in cpu} | {"projected": round(projected, 3)}


def halfspace(rows: Rows, obs: np.ndarray, proposal: np.ndarray) -> np.ndarray:
    """The baseline: the rows function's one row, then the closed-form projection onto it, clipped to the box."""
    A, b = rows(obs.astype(np.float64))
    a, u = A[0], proposal.astype(np.float64)
    return np.minimum(np.maximum(u - max(0.0, float(a @ u - b[0])) / float(a @ a) * a, -1.0), 1.0).astype(np.float32)


def closed_loop(key: str, filt: str | None, arenas: int, steps: int) -> dict[str, Any]:
    env_id, kwargs, constraint, rows, model, backup = ENVS[key]
    sim = GymBatch(env_id, arenas, constraint, kwargs)
    obs = sim.reset(0)
    core = None if filt is None else AnyEnvShield(
        sim.action_space, AnyEnvConfig(filter=filt, rows=rows, model=model, backup=backup,  # type: ignore[arg-type]
                                       learned=LearnedMarginsConfig(min_samples=EXPLORE_TRANSITIONS // 2)))
    if core is not None and filt == "learned":
        explore(core, env_id, kwargs, constraint, arenas)
    rng = np.random.default_rng(1)
    violations, running, returns = 0, np.zeros(arenas), []
    for step in range(steps):
        proposed = rng.uniform(-1.0, 1.0, (arenas, sim.action_space.shape[0])).astype(np.float32)
        actions = proposed if core is None else core.step(step, obs, proposed, 0.0).actions
        result = sim.step(scale_to_box(actions, sim.action_space))
        violations += int(result.violation.sum())
        running += result.task_reward
        returns += running[result.done].tolist()
        running[result.done] = 0.0
        obs = result.reset_obs
    sim.close()
    out: dict[str, Any] = {"violations": violations, "return": round(float(np.mean(returns)), 2) if returns else None}
    if core is not None:
        out["interventions"] = core.counts["mode.filtered"] + core.counts["mode.fallback"]
        out["degraded"] = {c: core.counts[f"degraded.{c}"] for c in ANY_ENV_CAUSES if core.counts[f"degraded.{c}"]}
    return out


def explore(core: AnyEnvShield, env_id: str, kwargs: dict[str, Any], constraint: str, arenas: int) -> None:
    """The learned filter's training: EXPLORE_TRANSITIONS random transitions on other seeds, every one learnt."""
    sim = GymBatch(env_id, arenas, constraint, kwargs)
    sim.reset(99)
    rng = np.random.default_rng(99)
    for step in range(EXPLORE_TRANSITIONS // arenas):
        actions = rng.uniform(-1.0, 1.0, (arenas, sim.action_space.shape[0])).astype(np.float32)
        result = sim.step(scale_to_box(actions, sim.action_space))
        core.learn(result.obs, actions, np.stack(list(result.margins.values()), axis=1))
        if step % 5 == 0:
            core.train(5)
    sim.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--arenas", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    out: dict[str, object] = {"bench": "shield_any_env", "decisions": args.decisions, "warmup": WARMUP,
                              "arenas": args.arenas, "steps": args.steps,
                              "loadavg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    for dim in DIMS:
        for key, stats in latency(dim, args.decisions).items():
            if isinstance(stats, float):
                out[f"{key}.{dim}"] = stats
                continue
            for name, value in stats.items():
                out[f"{key}.{dim}.{name}"] = value
    for key in ENVS:
        shields = (("unshielded", None), ("shielded", "qp"), ("shielded_search", "search"))
        if key in LEARNED_ON:
            shields += (("shielded_learned", "learned"),)
        for label, filt in shields:
            for name, value in closed_loop(key, filt, args.arenas, args.steps).items():
                out[f"envs.{key}.{label}.{name}"] = value
    print(json.dumps(out))


if __name__ == "__main__":
    main()
