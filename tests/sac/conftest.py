
import numpy as np
import pytest

from nodes.sac.replay import ReplayBuffer
from tests.torch_threads import single_torch_thread  # noqa: F401 (autouse fixture)

OBS_DIM, ACT_DIM = 24, 2


@pytest.fixture
def filled_replay() -> ReplayBuffer:
    return make_filled_replay()


def make_filled_replay(device: str = "cpu") -> ReplayBuffer:
    """2,000 random transitions with a reward that depends on the action, so Q has something to fit."""
    rng = np.random.default_rng(0)
    n = 2_000
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    action = rng.uniform(-1, 1, size=(n, ACT_DIM)).astype(np.float32)
    reward = (obs[:, 0] - (action**2).sum(axis=1)).astype(np.float32)
    next_obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    done = (rng.random(n) < 0.05).astype(np.float32)
    buffer = ReplayBuffer(4_096, OBS_DIM, ACT_DIM, device)
    buffer.add_batch(obs, action, reward, next_obs, done)
    return buffer
