"""Intrinsic rewards on fixed datasets: each test asserts the property the term exists for."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nodes import intrinsic
from nodes.intrinsic.base import RunningMoments
from nodes.intrinsic.empowerment import InfoNCECritic
from persist_rt.checkpoint import CheckpointError


def linear_data(n: int, obs_dim: int = 6, act_dim: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    a_mat = torch.eye(obs_dim) * 0.9
    b_mat = torch.randn(act_dim, obs_dim, generator=g) * 0.5
    obs = torch.randn(n, obs_dim, generator=g)
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    return obs, act, obs @ a_mat + act @ b_mat


def test_running_moments_match_numpy() -> None:
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1)) * 4 + 2
    m = RunningMoments((3,))
    for chunk in x.split(37):
        m.update(chunk)
    np.testing.assert_allclose(m.mean.numpy(), x.mean(0).numpy(), atol=1e-3)
    np.testing.assert_allclose(m.var.numpy(), x.var(0, unbiased=False).numpy(), rtol=1e-3)


def test_unknown_method_is_refused_by_field() -> None:
    with pytest.raises(ValueError, match=r"field 'intrinsic'.*'curiosity'"):
        intrinsic.make("curiosity", 4, 2)
    assert intrinsic.make("none", 4, 2) is None


def test_surprise_error_falls_and_signs_are_opposite() -> None:
    obs, act, nxt = linear_data(512)
    seek = intrinsic.make("surprise_seek", 6, 2, seed=0)
    before = float(seek.model.prediction_error(obs, act, nxt).mean().detach())
    for _ in range(300):
        seek.fit(obs, act, nxt)
    after = float(seek.model.prediction_error(obs, act, nxt).mean().detach())
    assert after < 0.2 * before, (before, after)

    minimise = intrinsic.make("surprise_minimise", 6, 2, seed=0)
    minimise.load_state_arrays(seek.state_arrays(), "copy")
    r_seek, r_min = seek.reward(obs, act, nxt), minimise.reward(obs, act, nxt)
    assert (r_seek > 0).all() and (r_min < 0).all()
    torch.testing.assert_close(r_min, -r_seek)


def test_rnd_reward_falls_on_seen_states_and_stays_high_on_novel_ones() -> None:
    g = torch.Generator().manual_seed(2)
    seen = torch.randn(512, 8, generator=g)
    novel = torch.randn(512, 8, generator=g) + 3.0
    rnd = intrinsic.make("rnd", 8, 2, seed=0)
    zeros = torch.zeros(512, 2)
    for _ in range(400):
        rnd.fit(seen, zeros, seen)
    r_seen = rnd.reward(seen, zeros, seen, update_scale=False).mean()
    r_novel = rnd.reward(novel, zeros, novel, update_scale=False).mean()
    # stated ratio: novel states earn at least 5x the reward of states seen in training
    assert r_novel > 5 * r_seen, (float(r_seen), float(r_novel))


def test_checkpoint_round_trip_and_wrong_architecture() -> None:
    obs, act, nxt = linear_data(64)
    for name in ("surprise_seek", "rnd", "empowerment"):
        a = intrinsic.make(name, 6, 2, seed=0)
        for _ in range(3):
            a.fit(obs, act, nxt)
        b = intrinsic.make(name, 6, 2, seed=5)
        b.load_state_arrays(a.state_arrays(), "ckpt")
        torch.testing.assert_close(a.reward(obs, act, nxt), b.reward(obs, act, nxt))
        a.fit(obs, act, nxt)
        b.fit(obs, act, nxt)  # optimizer moments were restored too: the next step is the same
        torch.testing.assert_close(a.state_arrays()["model.scale.mean"], b.state_arrays()["model.scale.mean"])
        other = intrinsic.make(name, 7, 2)
        with pytest.raises(CheckpointError, match="tensor"):
            other.load_state_arrays(a.state_arrays(), "ckpt")


# --- empowerment against the analytic answer ------------------------------------------------------------------

# 5 actions: stay, up, down, left, right; a move into a wall or off the map stays. '#' is a wall.
MAP = ["......",
       "......",
       "......",
       ".#.#..",
       ".#.#..",
       ".###.."]
MOVES = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
OPEN = [(r, c) for r, row in enumerate(MAP) for c, ch in enumerate(row) if ch == "."]
INDEX = {cell: i for i, cell in enumerate(OPEN)}


def step(cell: tuple[int, int], a: int) -> tuple[int, int]:
    r, c = cell[0] + MOVES[a][0], cell[1] + MOVES[a][1]
    return (r, c) if (r, c) in INDEX else cell


def reachable(cell: tuple[int, int]) -> int:
    return len({step(cell, a) for a in range(5)})


def uniform_source_information(cell: tuple[int, int]) -> float:
    """I(A; S') for the uniform source = H(S'), exact."""
    outcomes = [step(cell, a) for a in range(5)]
    return -sum(outcomes.count(o) / 5 * math.log(outcomes.count(o) / 5) for o in set(outcomes))


def test_empowerment_matches_log_n_and_ranks_states() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n_cells, samples = len(OPEN), 128  # InfoNCE is bounded by log 128 = 4.85 >> log 5 = 1.61
    eye_s, eye_a = torch.eye(n_cells), torch.eye(5)
    table = torch.tensor([[INDEX[step(cell, a)] for a in range(5)] for cell in OPEN])
    critic = InfoNCECritic(n_cells, 5, hidden=(64,), features=32)
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)

    def batch(cells: torch.Tensor) -> tuple[torch.Tensor, ...]:
        acts = torch.randint(0, 5, (cells.shape[0], samples), generator=g)
        return eye_s[cells], eye_a[acts], eye_s[table[cells.unsqueeze(1), acts]]

    for _ in range(400):
        loss = -critic.bound(*batch(torch.randint(0, n_cells, (32,), generator=g))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def estimate(cell: tuple[int, int]) -> float:
        with torch.no_grad():
            return float(critic.bound(*batch(torch.full((64,), INDEX[cell]))).mean())

    centre, corner, dead_end, open_cell = (1, 2), (0, 0), (4, 2), (2, 2)
    assert (reachable(centre), reachable(corner), reachable(dead_end), reachable(open_cell)) == (5, 3, 2, 5)
    est = {cell: estimate(cell) for cell in (centre, corner, dead_end, open_cell)}
    assert est[corner] < est[centre] and est[dead_end] < est[open_cell]
    for cell, value in est.items():
        # where the uniform source reaches n cells equally often (open cells) I = log n: within 0.15 nats of it
        assert abs(value - uniform_source_information(cell)) < 0.15, (cell, value)
        # and never above log n (the capacity) by more than the estimator's noise; at most 0.5 nats below it
        assert math.log(reachable(cell)) - 0.5 < value < math.log(reachable(cell)) + 0.1, (cell, value)


def test_empowerment_fit_reward_pays_the_bound_the_step_fits() -> None:
    obs, act, nxt = linear_data(64)
    a, b = intrinsic.make("empowerment", 6, 2, seed=0), intrinsic.make("empowerment", 6, 2, seed=0)
    for _ in range(3):
        a.fit(obs, act, nxt)
        b.fit(obs, act, nxt)
    expected = b.reward(obs, act, nxt)  # the critic as it is before the step, on the same action sequences
    losses, reward = a.fit_reward(obs, act, nxt)
    torch.testing.assert_close(reward, expected)
    assert set(losses) == {"reconstruction", "latent_prediction", "prediction", "infonce"}
    stepped, before = a.state_arrays()["model.critic.phi.0.weight"], b.state_arrays()["model.critic.phi.0.weight"]
    assert not np.array_equal(stepped, before)  # and the critic did take its step
