import numpy as np
import pytest
import torch

from nodes.sac.replay import ReplayBuffer
from persist_rt.checkpoint import CheckpointError


def rows(start: int, n: int, obs_dim: int = 3, act_dim: int = 2) -> tuple[np.ndarray, ...]:
    """Transitions whose every field encodes its index, so we can see which rows survived."""
    idx = np.arange(start, start + n, dtype=np.float32)
    return (
        np.repeat(idx[:, None], obs_dim, axis=1),
        np.repeat(idx[:, None], act_dim, axis=1),
        idx,
        np.repeat(idx[:, None] + 0.5, obs_dim, axis=1),
        (idx % 2 == 0).astype(np.float32),
    )


def stored_rewards(buffer: ReplayBuffer) -> list[float]:
    return sorted(buffer._columns["reward"][: len(buffer)].tolist())


def test_wrap_around_keeps_the_newest_capacity_rows() -> None:
    buffer = ReplayBuffer(10, 3, 2)
    buffer.add_batch(*rows(0, 7))
    assert len(buffer) == 7
    buffer.add_batch(*rows(7, 6))  # 3 rows fit before the end, 3 wrap to the front
    assert len(buffer) == 10 and buffer.total_added == 13
    assert stored_rewards(buffer) == list(range(3, 13))
    # every column stays aligned with its row after the wrap
    col = buffer._columns
    np.testing.assert_array_equal(col["obs"][:, 0].numpy(), col["reward"].numpy())
    np.testing.assert_array_equal(col["next_obs"][:, 0].numpy(), col["reward"].numpy() + 0.5)


def test_batch_larger_than_capacity_keeps_its_tail() -> None:
    buffer = ReplayBuffer(4, 3, 2)
    buffer.add_batch(*rows(0, 3))
    buffer.add_batch(*rows(3, 9))
    assert len(buffer) == 4 and buffer.total_added == 12
    assert stored_rewards(buffer) == [8, 9, 10, 11]
    buffer.add_batch(*rows(12, 1))  # the ring position stayed consistent
    assert stored_rewards(buffer) == [9, 10, 11, 12]


def test_sample_is_in_bounds_and_reproducible() -> None:
    buffer = ReplayBuffer(100, 3, 2)
    buffer.add_batch(*rows(0, 5))
    batch = buffer.sample(64, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (64, 3) and batch.action.shape == (64, 2) and batch.reward.shape == (64,)
    assert set(batch.reward.tolist()) <= {0, 1, 2, 3, 4}  # never the unused zero-filled rows beyond size
    assert (batch.done == (batch.reward % 2 == 0).float()).all()
    again = buffer.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(batch.obs, again.obs)


@pytest.mark.parametrize(
    ("capacity", "field"), [(0, "capacity"), (-3, "capacity"), (2.5, "capacity"), (True, "capacity")]
)
def test_capacity_is_validated(capacity: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"replay buffer '{field}' must be a positive integer"):
        ReplayBuffer(capacity, 3, 2)  # type: ignore[arg-type]


def test_bad_batches_are_refused_before_any_write() -> None:
    buffer = ReplayBuffer(10, 3, 2)
    obs, action, reward, next_obs, done = rows(0, 4)
    with pytest.raises(ValueError, match=r"replay 'action' has shape \(4, 3\), expected \(4, 2\)"):
        buffer.add_batch(obs, np.zeros((4, 3)), reward, next_obs, done)
    reward = reward.copy()
    reward[2] = np.nan
    with pytest.raises(ValueError, match="replay 'reward' contains NaN or inf"):
        buffer.add_batch(obs, action, reward, next_obs, done)
    assert len(buffer) == 0
    with pytest.raises(ValueError, match="replay buffer is empty"):
        buffer.sample(8, torch.Generator())
    buffer.add_batch(*rows(0, 2))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        buffer.sample(0, torch.Generator())


def test_replay_save_and_load_restore_rows_ring_position_and_sampling(tmp_path) -> None:
    rng = np.random.default_rng(3)
    buffer = ReplayBuffer(100, 3, 2)
    for _ in range(3):  # 150 rows into 100: the ring has wrapped
        buffer.add_batch(rng.normal(size=(50, 3)), rng.normal(size=(50, 2)), rng.normal(size=50),
                         rng.normal(size=(50, 3)), np.zeros(50))
    path = buffer.save(tmp_path / "replay.safetensors")
    same = ReplayBuffer(100, 3, 2)
    same.load(path)
    assert (len(same), same.total_added, same._next) == (100, 150, 50)
    a, b = (x.sample(16, torch.Generator().manual_seed(1)) for x in (buffer, same))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    smaller = ReplayBuffer(40, 3, 2)  # keeps the 40 newest rows, oldest first
    smaller.load(path)
    assert len(smaller) == 40 and torch.equal(smaller._columns["obs"], buffer._columns["obs"][10:50])


def test_replay_load_refuses_another_shape_by_field(tmp_path) -> None:
    buffer = ReplayBuffer(10, 3, 2)
    path = buffer.save(tmp_path / "replay.safetensors")
    with pytest.raises(CheckpointError, match="field 'obs_dim' is 3, expected 4"):
        ReplayBuffer(10, 4, 2).load(path)
