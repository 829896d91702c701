"""Reach-avoid MPC: from fixed low-energy GridLife states it reaches a refuel station before energy runs out, with
no executed violation behind the shield; bad planner settings are refused by field."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig, inside_any, obs_names
from nodes.mpc.planner import CEMPlanner, MPCConfig
from nodes.shield.core import ShieldCore

ARENAS, START_ENERGY = 2, 0.3  # about 60-100 steps of energy left, depending on effort


def test_it_reaches_a_station_before_energy_runs_out_with_no_violation_behind_the_shield() -> None:
    cfg = GridLifeConfig()
    env = GridLifeBatch(cfg, ARENAS)
    obs = env.reset(seed=3)
    env._internal[:, 0] = START_ENERGY  # fixed start states: the layout's own start positions, energy low
    planner = CEMPlanner(cfg, MPCConfig(horizon=10, population=32, iterations=2, elites=4))
    shield = ShieldCore(cfg)
    refuel = env.layout.stations("refuel")
    token_cols = [obs_names(cfg).index("token_dx"), obs_names(cfg).index("token_dy")]
    reached = np.zeros(ARENAS, dtype=bool)
    violations = 0
    for step in range(120):
        pos, internal = env.positions.copy(), env.internal.copy()
        token = pos + cfg.arena_size * obs[:, token_cols].astype(np.float64)
        decision = shield.step(step, pos, internal, planner.plan(pos, internal, token), 0.0)
        out = env.step(decision.actions)
        obs = out.reset_obs
        violations += int(out.violation.sum())
        assert not out.terminated.any(), f"an arena died at step {step}: {out.next_internal}"
        reached |= inside_any(out.next_positions, *refuel) & (out.next_internal[:, 0] > 0)
        if reached.all():
            break
    assert reached.all(), reached
    assert violations == 0


@pytest.mark.parametrize(("field", "value"), [("horizon", 0), ("population", 1.5), ("init_std", -1.0),
                                              ("elites", 100)])
def test_bad_settings_are_refused_by_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MPCConfig(**{field: value})


def test_the_agent_node_plans_with_mpc_and_ignores_learner_weights() -> None:
    from nodes.agent.node import AgentNode
    from protocols import Observation

    cfg = GridLifeConfig()
    env = GridLifeBatch(cfg, 2)
    obs = env.reset(seed=5)
    node = AgentNode("agent", params={"algorithm": "mpc", "mpc_population": 16, "mpc_iterations": 1,
                                      "mpc_horizon": 5})
    node.transition("inactive")
    try:
        msg = Observation(step=0, obs=obs, positions=env.positions.copy(), internal=env.internal.copy(),
                          episode_step=np.zeros(2, dtype=np.int64))
        actions = node.plan(msg)
        assert actions.shape == (2, 2) and actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
        node.on_weights(None)  # type: ignore[arg-type]  # ignored before it is even read
        assert node.stats()["counters"]["weights_ignored"] == 1 and node.policy is None
    finally:
        node.close()
