"""Per-body shields under the CBF coupler: do the coupler's joint actions keep each body's own homeostatic
guarantee? The baseline, measured in the same run on the same arenas and proposals, is the shields alone.

Workload: `arenas` multi-agent GridLife arenas of `agents` bodies (default world), uniform random proposals for
every body; each step the shield core (nodes/shield/core.py, rows = bodies, the world's one layout) filters the
proposals, and in the coupled variant the coupler (nodes/cbf_coupler/core.py, hazard rows and walls as each
body's own rows) then solves for the joint actions, which execute. Each variant runs with the world's
station capacity (1: a station's rate is shared among the bodies in it, which the shield's single-body model
does not know) and with capacity = agents (no body is ever served below full rate).

Keys: `violations.<variant>.capacity_<c>.<cause>` (body-steps whose next state broke that constraint; `dead`
marks those that ended the body), `collisions.<variant>.capacity_<c>`; variants `shield`, `shield_coupler` and
`shield_coupler_row` (the coupler with `right_of_way` k, `--right-of-way`, priority the body's smallest internal
margin, as the coupler node gives it), `shield_crowd` and `shield_crowd_coupler` (the shield's model serves a body
capacity / agents of each station's rate, the share of all bodies in one station, so its backup waits longer).

    .venv/bin/python bench/multi_agent_shields.py [--steps 1000] [--arenas 4] [--agents 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

import numpy as np

from nodes.cbf_coupler.core import Coupler, CouplerConfig, hazard_rows
from nodes.env.gridlife import crowded_world
from nodes.env.multi_gridlife import MultiGridLifeBatch, MultiGridLifeConfig
from nodes.shield.core import ShieldConfig, ShieldCore


def run(agents: int, arenas: int, steps: int, capacity: float, coupled: bool, seed: int,
        right_of_way: float = 0.0, crowd: bool = False) -> dict[str, Any]:  # fmt: skip
    cfg = MultiGridLifeConfig(num_agents=agents, station_capacity=capacity)
    world = cfg.world
    batch = MultiGridLifeBatch(cfg, arenas)
    batch.reset(seed)
    # crowd: the shield's model serves a body capacity / agents of a station's rate (all bodies in one station)
    shield = ShieldCore(crowded_world(world, agents, capacity) if crowd else world, ShieldConfig())
    step_len = np.full(agents, world.dt * world.vmax)
    coupler_cfg = CouplerConfig(min_separation=cfg.min_separation, gamma=0.5, arena_size=world.arena_size,
                                right_of_way=right_of_way)  # fmt: skip
    couplers = [Coupler(coupler_cfg, step_len) for _ in range(arenas)]
    layout = batch.layout
    rng = np.random.default_rng(seed)
    causes: dict[str, int] = {}
    collisions = 0
    for t in range(steps):
        pos, h = np.array(batch.positions).reshape(-1, 2), np.array(batch.internal).reshape(-1, 3)
        proposed = rng.uniform(-1.0, 1.0, (arenas * agents, 2)).astype(np.float32)
        actions = shield.step(t, pos, h, proposed, 0.0).actions.copy()
        if coupled:
            for i, coupler in enumerate(couplers):
                rows = slice(i * agents, (i + 1) * agents)
                A, b = hazard_rows(pos[rows], layout.hazard_centres, layout.hazard_radii, step_len, coupler_cfg.gamma)
                priority = np.minimum(np.minimum(h[rows, 0], 1.0 - h[rows, 1]), h[rows, 2])
                actions[rows] = coupler.step(pos[rows], actions[rows], A, b, priority).actions
        result = batch.step(actions.reshape(arenas, agents, 2))
        collisions += int(result.collision.sum())
        for index in zip(*np.nonzero(result.violation), strict=True):
            broken = ",".join(name for name, margin in result.margins.items() if margin[index] < 0)
            key = broken + (" dead" if result.terminated[index] else "")
            causes[key] = causes.get(key, 0) + 1
    return {"violations": dict(sorted(causes.items())), "collisions": collisions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--arenas", type=int, default=4)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--right-of-way", type=float, default=20.0, help="k of the variant shield_coupler_row")
    args = parser.parse_args()
    out: dict[str, Any] = {"bench": "multi_agent_shields", "python": platform.python_version(), "steps": args.steps,
                           "arenas": args.arenas, "agents": args.agents, "seed": args.seed,
                           "violations": {}, "collisions": {}}  # fmt: skip
    variants = (("shield", False, 0.0, False), ("shield_coupler", True, 0.0, False),
                ("shield_coupler_row", True, args.right_of_way, False), ("shield_crowd", False, 0.0, True),
                ("shield_crowd_coupler", True, 0.0, True))  # fmt: skip
    for variant, coupled, right_of_way, crowd in variants:
        for capacity in (1.0, float(args.agents)):
            found = run(args.agents, args.arenas, args.steps, capacity, coupled, args.seed, right_of_way, crowd)
            key = f"capacity_{capacity:g}"
            out["violations"].setdefault(variant, {})[key] = found["violations"]
            out["collisions"].setdefault(variant, {})[key] = found["collisions"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
