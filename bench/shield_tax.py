"""What the main job's reward asks of a policy that does its task: how often the shield changes the actions of the
scripted station keeper, of random actions and of standing still, which barrier does it, and how many tokens a
greedy token-chaser takes when nothing else matters. One JSON line.

Every policy runs on GridLife's defaults on the evaluation seed (16 arenas x 1,000 steps), behind the shield's core
(QP filter) for the intervention figures and unshielded for the greedy chaser. `tax_per_1000_steps` is what the
launch file's `intervention_penalty` (1.0) charges for living like that policy, next to its tokens.

    .venv/bin/python bench/shield_tax.py [--arenas 16] [--steps 1000]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig, obs_names
from nodes.env.scripted import seek_station_policy
from nodes.shield.core import ShieldCore
from protocols import MODE_PASS

EVAL_SEED = 10_000
PENALTY = 1.0  # launch/single_agent.yaml's intervention_penalty


def shielded(policy: str, arenas: int, steps: int) -> dict[str, object]:
    cfg = GridLifeConfig()
    env, shield = GridLifeBatch(cfg, arenas), ShieldCore(cfg)
    env.reset(seed=EVAL_SEED)
    rng = np.random.default_rng(EVAL_SEED)
    by_constraint: collections.Counter[str] = collections.Counter()
    interventions = tokens = 0
    for t in range(steps):
        if policy == "keeper":
            proposed = seek_station_policy(env.positions, env.internal, env.tokens, cfg, env.layout)
        elif policy == "random":
            proposed = rng.uniform(-1, 1, (arenas, 2)).astype(np.float32)
        else:
            proposed = np.zeros((arenas, 2), np.float32)
        d = shield.step(t, env.positions.copy(), env.internal.copy(), proposed, 0.0)
        for i in np.flatnonzero(d.mode != MODE_PASS):
            by_constraint[str(d.constraint[i])] += 1
        interventions += int((d.mode != MODE_PASS).sum())
        tokens += int(env.step(d.actions).task_reward.sum())
    per_step = interventions / (arenas * steps)
    return {"interventions_per_step": round(per_step, 4), "tax_per_1000_steps": round(1000 * per_step * PENALTY, 1),
            "tokens_per_1000_steps": round(1000 * tokens / (arenas * steps), 2),
            "by_constraint": dict(by_constraint.most_common())}


def greedy(arenas: int, steps: int) -> dict[str, float]:
    """Full speed along the observation's token direction, unshielded; tokens per 1,000 steps alive."""
    cfg = GridLifeConfig()
    names = obs_names(cfg)
    cols = [names.index("token_dx"), names.index("token_dy")]
    env = GridLifeBatch(cfg, arenas)
    obs = env.reset(seed=EVAL_SEED)
    alive, lived, tokens = np.ones(arenas, bool), np.zeros(arenas), np.zeros(arenas)
    for _ in range(steps):
        offset = obs[:, cols].astype(np.float64) * cfg.arena_size  # metres to the nearest token
        dist = np.linalg.norm(offset, axis=1, keepdims=True)
        action = offset / np.maximum(dist, 1e-9) * np.minimum(1.0, dist / (cfg.dt * cfg.vmax))
        out = env.step(action.astype(np.float32))
        tokens += alive * out.task_reward
        lived += alive
        alive &= ~out.done
        obs = out.reset_obs
    return {"tokens_per_1000_steps_alive": round(1000 * tokens.sum() / lived.sum(), 2),
            "mean_survival_steps": round(float(lived.mean()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arenas", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    out: dict[str, object] = {"bench": "shield_tax", "arenas": args.arenas, "steps": args.steps, "seed": EVAL_SEED}
    for policy in ("keeper", "random", "still"):
        out[f"shielded.{policy}"] = shielded(policy, args.arenas, args.steps)
    out["unshielded.greedy_tokens"] = greedy(args.arenas * 4, args.steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
