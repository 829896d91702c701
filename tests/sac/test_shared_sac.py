"""SharedSAC: one parameter set per agent type, role embeddings, per-type replay, updates and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nodes.sac.inference import NumpyActor
from nodes.sac.sac import SACConfig
from nodes.sac.shared_sac import SharedSAC, role_embedding

CFG = SACConfig(hidden=(16, 16), batch_size=16, learning_starts=16, device="cpu", seed=3)
TYPES = np.array([0, 0, 1])  # two agents of type 0, one of type 1


def test_one_parameter_set_per_type_and_a_role_code_per_agent() -> None:
    roles, counts = role_embedding(TYPES)
    assert roles.tolist() == [0, 1, 0] and counts.tolist() == [2, 2, 1]
    shared = SharedSAC(5, 2, TYPES, CFG, names=["base", "fast"])
    assert len(shared.learners) == 2 and [s.actor_spec.obs_dim for s in shared.learners] == [7, 6]
    obs = np.random.default_rng(0).random((4, 3, 5), dtype=np.float32)
    obs[:, 1] = obs[:, 0]  # the two base agents see the same thing: only their roles differ
    actions = shared.act(obs, deterministic=True)
    by_hand = NumpyActor(shared.learners[0].policy()).act(
        np.concatenate([obs[:, 0], np.tile([1.0, 0.0], (4, 1))], axis=1).astype(np.float32), True)
    np.testing.assert_allclose(actions[:, 0], by_hand, rtol=1e-6)
    assert not np.allclose(actions[:, 0], actions[:, 1])  # the same weights, told apart by the role


def test_each_type_learns_from_its_own_rows_and_checkpoints_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    shared = SharedSAC(5, 2, TYPES, CFG)
    obs = rng.random((8, 3, 5), dtype=np.float32)
    shared.add(obs, rng.uniform(-1, 1, (8, 3, 2)), rng.random((8, 3)), obs, np.zeros((8, 3)))
    assert [r.size for r in shared.replays] == [16, 8]
    before = [s.state_dict()["actor.mean.weight"].copy() for s in shared.learners]
    stats = shared.update()
    assert list(stats) == ["type_0"]  # type 1 has 8 rows, fewer than a batch
    after = [s.state_dict()["actor.mean.weight"] for s in shared.learners]
    assert not np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    shared.checkpoint(tmp_path)
    restored = SharedSAC(5, 2, TYPES, CFG)
    restored.resume(tmp_path)
    np.testing.assert_array_equal(restored.act(obs, True), shared.act(obs, True))


def test_bad_shapes_and_types_are_refused_by_field() -> None:
    shared = SharedSAC(5, 2, TYPES, CFG)
    with pytest.raises(ValueError, match=r"obs: expected shape \(N, 3, 5\)"):
        shared.act(np.zeros((2, 4, 5)), True)
    with pytest.raises(ValueError, match=r"reward: expected shape \(2, 3\)"):
        shared.add(np.zeros((2, 3, 5)), np.zeros((2, 3, 2)), np.zeros((2, 2)), np.zeros((2, 3, 5)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="type_index: every type from 0 to 2 needs an agent"):
        SharedSAC(5, 2, [0, 2], CFG)
