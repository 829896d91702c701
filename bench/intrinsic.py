"""Intrinsic rewards and risk-aware agents against plain SAC, on the same seeds and budget, in one run. One JSON line.

    .venv/bin/python bench/intrinsic.py [--steps 4000] [--arenas 8] [--eval-episodes 16] [--eval-cap 300]

Each method trains in-process behind the shield (the learner node fed transition messages without sockets, the
env's reward: task + 10 x homeostatic - 10 on death - 1 per intervention, charged to the proposal), then is
evaluated unshielded and deterministic on fixed seeds. Methods: sac, surprise_minimise, surprise_seek, rnd,
empowerment (SAC + that intrinsic term, lambda_intr 0.1), cvar_sac (cvar_alpha 0.25) and mpc (no training: it
plans). Variants: ``default`` GridLife, and ``sparse``: one token worth 5 (placed afresh wherever it is taken), so
the task reward is rare and far from most starts: the exploration terms (rnd, surprise_seek) exist for this; and
``drift``: basal energy use and heating double half-way through training and half-way through every evaluation
episode (``GridLifeBatch.shift_rates``), unannounced to the agent: a policy that keeps close to predictable,
well-supplied states should outlive the shift, which is what surprise_minimise and empowerment exist for.

results.<variant>.<method>: survival (unshielded eval, mean fraction of the episode cap survived), return (its mean
episode return), coverage (fraction of the arena's 1 m cells visited during training), return_q05 (5% quantile of
the eval episode returns), interventions_per_step (training, per arena-step), violations (executed during shielded
training), eval_violations (unshielded eval, arena-steps in violation), updates_per_s (learner updates per second
of update time during training, intrinsic term included) and update_cost: this method's time per learner update
over plain SAC's, measured on one fixed replay buffer in interleaved blocks (median block time of each), so that a
busy machine slows both alike (top-level ``update_cost``; it does not depend on the variant).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig, obs_names
from nodes.env.reward import RewardTerms
from nodes.learner.node import LearnerNode
from nodes.mpc.planner import CEMPlanner, MPCConfig
from nodes.sac.inference import make_inference_actor
from nodes.shield.core import ShieldCore
from protocols import MODE_PASS, TransitionBatch

METHODS = ("sac", "surprise_minimise", "surprise_seek", "rnd", "empowerment", "cvar_sac", "mpc")
VARIANTS = {"default": {}, "sparse": {"n_tokens": 1, "token_reward": 5.0}, "drift": {}}
# drift: basal energy use and heating double half-way through training and half-way through each evaluation episode
DRIFT = {"drift": {"k_basal": 0.06, "eta_basal": 0.04}}
REWARD = RewardTerms(lambda_homeo=10.0, death_penalty=-10.0, intervention_penalty=1.0)  # as launch/single_agent.yaml
TRAIN_SEED, EVAL_SEED = 0, 10_000


def learner_params(method: str) -> dict[str, Any]:
    params: dict[str, Any] = {"device": "cpu", "seed": 0, "checkpoint_every_s": 0.0,
                              "sac": {"utd_ratio": 0.25, "gamma": 0.98, "learning_starts": 500, "batch_size": 128,
                                      "publish_period": 25}}
    if method == "cvar_sac":
        params.update(algorithm="cvar_sac", cvar_sac={"cvar_alpha": 0.25})
    elif method != "sac":
        params.update(intrinsic=method, lambda_intr=0.1)
    return params


class Planner:
    """The MPC agent as an actor over GridLife states (the agent node's ``plan`` does the same from a message)."""

    def __init__(self, cfg: GridLifeConfig) -> None:
        self.planner = CEMPlanner(cfg, MPCConfig(population=32, iterations=2, elites=4))
        names = obs_names(cfg)
        self.cols = [names.index("token_dx"), names.index("token_dy")]
        self.size = cfg.arena_size

    def act(self, env: GridLifeBatch, obs: np.ndarray) -> np.ndarray:
        token = env.positions + self.size * obs[:, self.cols].astype(np.float64)
        return self.planner.plan(env.positions, env.internal, token)


def train(method: str, cfg: GridLifeConfig, steps: int, arenas: int, drift: dict[str, float] | None = None,
          ) -> tuple[Any, dict[str, float]]:
    """Shielded training; the acting policy (or planner) and the training figures. ``drift``: the rates that
    hold from half-way on (the shield is told, as a safety layer whose model is kept current; the agent is not)."""
    env, shield = GridLifeBatch(cfg, arenas), ShieldCore(cfg)
    obs = env.reset(seed=TRAIN_SEED)
    rng = np.random.default_rng(TRAIN_SEED)
    planner = Planner(cfg) if method == "mpc" else None
    node = None if planner else LearnerNode("learner", params=learner_params(method), run_dir=tempfile.mkdtemp())
    if node is not None:
        node.transition("inactive")
    actor, version = None, 0
    visited = np.zeros((int(cfg.arena_size),) * 2, dtype=bool)
    interventions = violations = 0
    for step in range(steps // arenas):
        if drift and step == steps // arenas // 2:
            env.shift_rates(**drift)
            shield = ShieldCore(env.cfg)
        if planner is not None:
            proposed = planner.act(env, obs)
        elif actor is None:
            proposed = rng.uniform(-1, 1, (arenas, 2)).astype(np.float32)
        else:
            proposed = actor.act(obs, deterministic=False, rng=rng)
        decision = shield.step(step, env.positions.copy(), env.internal.copy(), proposed, 0.0)
        changed = decision.mode != MODE_PASS
        out = env.step(decision.actions)
        interventions += int(changed.sum())
        violations += int(out.violation.sum())
        cell = np.clip(out.next_positions.astype(int), 0, visited.shape[0] - 1)
        visited[cell[:, 0], cell[:, 1]] = True
        if node is not None:
            reward = REWARD.compose(out)
            REWARD.penalise(reward, changed)
            node.on_transitions(TransitionBatch(
                step=step, obs=obs, actions=np.where(changed[:, None], decision.proposed, decision.actions)
                .astype(np.float32), reward=reward, reward_task=out.task_reward.astype(np.float32),
                reward_homeo=out.homeo_reward.astype(np.float32), next_obs=out.next_obs, terminated=out.terminated,
                truncated=out.truncated))
            if node.algo is not None and node.algo.num_updates >= version + 25:  # the agent's weights, every 25
                actor, version = make_inference_actor(node.algo.policy()), node.algo.num_updates
        obs = out.reset_obs
    figures = {"coverage": float(visited.mean()), "interventions_per_step": interventions / max(1, steps),
               "violations": violations, "updates_per_s": 0.0}
    if node is not None:
        node.refresh()
        figures["updates_per_s"] = float(node.gauges.get("updates_per_s", 0.0))
        final = make_inference_actor(node.algo.policy()) if node.algo is not None and node.algo.num_updates else None
        node.close()
        return final, figures
    return planner, figures


def evaluate(agent: Any, cfg: GridLifeConfig, episodes: int, drift: dict[str, float] | None = None,
             ) -> dict[str, float]:
    """Unshielded, deterministic, one episode per arena on the evaluation seed; each arena counts its first episode.
    ``drift``: the rates that hold from half-way through the episode on."""
    env = GridLifeBatch(cfg, episodes)
    obs = env.reset(seed=EVAL_SEED)
    rng = np.random.default_rng(EVAL_SEED)
    returns, lengths = np.zeros(episodes), np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    eval_violations = 0
    for t in range(cfg.episode_cap):
        if drift and t == cfg.episode_cap // 2:
            env.shift_rates(**drift)
        if isinstance(agent, Planner):
            actions = agent.act(env, obs)
        elif agent is None:
            actions = rng.uniform(-1, 1, (episodes, 2)).astype(np.float32)
        else:
            actions = agent.act(obs, deterministic=True)
        out = env.step(actions)
        reward = REWARD.compose(out, dtype=np.float64)
        returns += running * reward
        lengths += running
        eval_violations += int((running & out.violation).sum())
        running &= ~out.done
        obs = out.reset_obs
        if not running.any():
            break
    return {"survival": float(np.mean(lengths) / cfg.episode_cap), "return": float(returns.mean()),
            "return_q05": float(np.quantile(returns, 0.05)), "eval_violations": eval_violations}


def update_cost(methods: list[str], obs_dim: int, blocks: int = 7, per_block: int = 20) -> dict[str, float]:
    """Time per update of each method over plain SAC's: the learner's own update path (SAC's update on the batch
    with the intrinsic term fitted and recomputed), on the same random replay, blocks interleaved."""
    rng = np.random.default_rng(0)
    nodes = {}
    for method in ["sac", *[m for m in methods if m not in ("sac", "mpc")]]:
        node = LearnerNode("learner", params=learner_params(method))
        node.transition("inactive")
        node.build(obs_dim, 2)
        n = 5000
        node.replay.add_batch(rng.normal(size=(n, obs_dim)).astype(np.float32),
                              rng.uniform(-1, 1, (n, 2)).astype(np.float32), rng.normal(size=n).astype(np.float32),
                              rng.normal(size=(n, obs_dim)).astype(np.float32), np.zeros(n, np.float32))
        nodes[method] = node
    times: dict[str, list[float]] = {m: [] for m in nodes}
    for block in range(blocks + 1):  # the first block warms up
        for method, node in nodes.items():
            t0 = time.perf_counter()
            for _ in range(per_block):
                batch = node.replay.sample(node.algo.config.batch_size, node.algo.generator)
                node.algo.update(batch if node.intr is None else node.with_intrinsic(batch, report=False))
            if block:
                times[method].append(time.perf_counter() - t0)
    for node in nodes.values():
        node.close()
    base = float(np.median(times["sac"]))
    return {m: round(float(np.median(t)) / base, 3) for m, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="training budget per method, arena-steps")
    parser.add_argument("--arenas", type=int, default=8)
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--eval-cap", type=int, default=300, help="evaluation episode cap (steps)")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    start = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for variant, changes in VARIANTS.items():
        cfg = GridLifeConfig(**changes, episode_cap=args.eval_cap)
        results[variant] = {}
        for method in methods:
            agent, figures = train(method, cfg, args.steps, args.arenas, DRIFT.get(variant))
            results[variant][method] = {**evaluate(agent, cfg, args.eval_episodes, DRIFT.get(variant)), **figures}
    costs = update_cost(methods, GridLifeConfig().obs_dim)
    for per_method in results.values():
        for method, figures in per_method.items():
            figures["update_cost"] = costs.get(method)  # type: ignore[assignment]
    print(json.dumps({"bench": "intrinsic", "steps": args.steps, "arenas": args.arenas,
                      "eval_episodes": args.eval_episodes, "eval_cap": args.eval_cap,
                      "wall_s": round(time.perf_counter() - start, 1), "update_cost": costs,
                      "results": {v: {m: {k: round(x, 4) if isinstance(x, float) else x for k, x in f.items()}
                                      for m, f in r.items()} for v, r in results.items()}}))


if __name__ == "__main__":
    main()
