"""GridLife tuning figures: first-episode survival of a uniform-random policy and of the scripted
station-seeking controller on the same seeds, per layout.  Prints one JSON line.

    .venv/bin/python bench/gridlife_tuning.py [--num-envs 64] [--layout-seeds 0 1 2] [--seed 0]
"""

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy

Policy = Callable[[GridLifeBatch, np.random.Generator], np.ndarray]


def uniform_random(batch: GridLifeBatch, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(batch.num_envs, 2)).astype(np.float32)


def scripted(batch: GridLifeBatch, rng: np.random.Generator) -> np.ndarray:
    return seek_station_policy(batch.positions, batch.internal, batch.tokens, batch.cfg, batch.layout)


def first_episodes(cfg: GridLifeConfig, policy: Policy, num_envs: int, seed: int) -> dict[str, float]:
    """Run every arena through its first episode; survival, deaths by cause, violations and tokens."""
    batch = GridLifeBatch(cfg, num_envs=num_envs)
    batch.reset(seed=seed)
    rng = np.random.default_rng(seed)
    lengths = np.full(num_envs, cfg.episode_cap)
    running = np.ones(num_envs, dtype=bool)
    violations = np.zeros(num_envs, dtype=np.int64)
    tokens = np.zeros(num_envs)
    causes = {"energy": 0, "temperature": 0, "integrity": 0}
    start = time.perf_counter()
    steps = 0
    while running.any():
        result = batch.step(policy(batch, rng))
        steps += 1
        violations += result.violation & running
        tokens += result.task_reward * running
        ended = result.done & running
        lengths[ended] = result.episode_steps[ended]
        for name in causes:
            causes[name] += int(np.sum(ended & result.terminated & (result.margins[name] <= 0)))
        running &= ~ended
    elapsed = time.perf_counter() - start
    return {
        "mean_survival_steps": float(lengths.mean()),
        "survival_fraction_of_cap": float(lengths.mean() / cfg.episode_cap),
        "survival_rate": float(np.mean(lengths == cfg.episode_cap)),
        "deaths": causes,
        "violations_per_episode": float(violations.mean()),
        "tokens_per_episode": float(tokens.mean()),
        "arena_steps_per_s": float(steps * num_envs / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--layout-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    layouts = {}
    for layout_seed in args.layout_seeds:
        cfg = GridLifeConfig(layout_seed=layout_seed)
        layouts[str(layout_seed)] = {
            "random": first_episodes(cfg, uniform_random, args.num_envs, args.seed),
            "scripted": first_episodes(cfg, scripted, args.num_envs, args.seed),
        }
    default = layouts[str(args.layout_seeds[0])]
    print(
        json.dumps(
            {
                "bench": "gridlife_tuning",
                "episode_cap": GridLifeConfig().episode_cap,
                "num_envs": args.num_envs,
                "seed": args.seed,
                "random_survival_fraction": default["random"]["survival_fraction_of_cap"],
                "scripted_survival_fraction": default["scripted"]["survival_fraction_of_cap"],
                "layouts": layouts,
            }
        )
    )


if __name__ == "__main__":
    main()
