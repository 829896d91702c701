"""CVaR-SAC on a two-armed bandit: alpha = 1 takes the risky arm of higher mean, alpha = 0.1 the safe one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.sac.cvar_sac import CVaRSAC, CVaRSACConfig, cvar
from nodes.sac.replay import ReplayBuffer
from nodes.sac.sac import SAC, SACConfig
from persist_rt.checkpoint import CheckpointError

SAFE, RISKY_HIGH, RISKY_LOW = 0.5, 2.5, -1.0  # risky arm: mean 0.75 > 0.5, CVaR_0.1 = -1 < 0.5


def bandit_replay(n: int = 1024, seed: int = 0) -> ReplayBuffer:
    """One-step episodes: action < 0 pulls the safe arm, action >= 0 the risky one."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    coin = rng.random(n) < 0.5
    rewards = np.where(actions[:, 0] < 0, SAFE, np.where(coin, RISKY_HIGH, RISKY_LOW)).astype(np.float32)
    obs = np.zeros((n, 1), np.float32)
    replay = ReplayBuffer(n, 1, 1)
    replay.add_batch(obs, actions, rewards, obs, np.ones(n, np.float32))
    return replay


def chosen_arm(cvar_alpha: float) -> float:
    # small nets and fast learning rates: 120 updates settle the arm (seeds 0-2 checked), in about a second
    cfg = CVaRSACConfig(cvar_alpha=cvar_alpha, hidden=(32, 32), batch_size=128, n_quantiles=16, autotune_alpha=False,
                        initial_alpha=0.02, actor_lr=3e-3, critic_lr=3e-3, learning_starts=0, seed=0)
    agent, replay = CVaRSAC(1, 1, cfg), bandit_replay()
    for _ in range(120):
        agent.update(replay.sample(cfg.batch_size, agent.generator))
    return float(agent.actor.act(torch.zeros(1, 1), deterministic=True)[0, 0])


@pytest.mark.parametrize(("cvar_alpha", "risky"), [(1.0, True), (0.1, False)])
def test_bandit_arm_follows_the_risk_level(cvar_alpha: float, risky: bool) -> None:
    action = chosen_arm(cvar_alpha)
    assert (action > 0.5) if risky else (action < -0.5), action  # a clear choice, not a coin flip near 0


def test_cvar_of_quantiles() -> None:
    q = torch.arange(10, dtype=torch.float32).unsqueeze(0)
    assert float(cvar(q, 1.0)) == 4.5 and float(cvar(q, 0.1)) == 0.0 and float(cvar(q, 0.3)) == 1.0


def test_config_and_checkpoint_refusals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="'cvar_alpha'"):
        CVaRSACConfig(cvar_alpha=0.0)
    cvar_agent = CVaRSAC(3, 2, CVaRSACConfig(hidden=(16,), learning_starts=0))
    path = cvar_agent.checkpoint(tmp_path / "cvar.safetensors")
    again = CVaRSAC(3, 2, CVaRSACConfig(hidden=(16,), learning_starts=0, seed=3))
    again.resume(path)
    assert all(torch.equal(a, b) for a, b in zip(again.critic.parameters(), cvar_agent.critic.parameters(), strict=True))
    with pytest.raises(CheckpointError, match="format"):  # a plain SAC checkpoint is another architecture
        SAC(3, 2, SACConfig(hidden=(16,))).resume(path)
    assert cvar_agent.policy().spec == SAC(3, 2, SACConfig(hidden=(16,))).policy().spec  # same served actor
