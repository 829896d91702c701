"""Internal models (known and learned) and the OOD detector."""

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig, internal_step, next_position
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.internal_model import KnownInternalModel, LearnedInternalModel, LearnedModelConfig
from nodes.shield.ood import EnergyOOD, OODConfig
from persist_rt.checkpoint import CheckpointError


def _transitions(env_cfg: GridLifeConfig, steps: int, seed: int) -> tuple[np.ndarray, ...]:
    env = GridLifeBatch(env_cfg, 32)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        pos, h = env.positions.copy(), env.internal.copy()
        a = rng.uniform(-1, 1, size=(32, 2)).astype(np.float32)
        res = env.step(a)
        out.append((pos, h, a, res.next_internal))
    return tuple(np.concatenate(x) for x in zip(*out, strict=True))


def test_known_model_is_the_env(env_cfg: GridLifeConfig) -> None:
    pos, h, a, h_next = _transitions(env_cfg, 20, seed=0)
    p2, h2, err = KnownInternalModel(env_cfg).predict(pos, h, a)
    np.testing.assert_array_equal(p2, next_position(pos, a, env_cfg))  # compiled, yet bit for bit
    np.testing.assert_array_equal(h2, h_next)
    assert np.all(err == 0)


def test_known_model_broadcasts_and_its_fused_slack_is_the_composition(env_cfg: GridLifeConfig) -> None:
    """(B, 1, .) states with (B, C, 2) candidates, as the verifier calls it; cbf_slack = h(x') - (1-g) h(x)."""
    model = KnownInternalModel(env_cfg)
    barriers = GridLifeBarriers(env_cfg, layout=model.layout)
    rng = np.random.default_rng(3)
    pos, h = rng.uniform(0, 10, size=(50, 2)), rng.uniform(0, 1, size=(50, 3))
    a = rng.uniform(-1, 1, size=(50, 7, 2)).astype(np.float32).astype(np.float64)
    p2, h2, _ = model.predict(pos[:, None, :], h[:, None, :], a)
    assert p2.shape == (50, 7, 2) and h2.shape == (50, 7, 3)
    np.testing.assert_array_equal(p2, next_position(pos[:, None, :], a, env_cfg))
    np.testing.assert_array_equal(h2, internal_step(h[:, None, :], p2, a, env_cfg, model.layout))
    expected = barriers.values(p2, h2) - (1.0 - barriers.gamma) * barriers.values(pos, h)[:, None, :]
    np.testing.assert_array_equal(model.cbf_slack(barriers, pos, h, a), expected)


def test_learned_model_learns_and_bounds_its_error(env_cfg: GridLifeConfig, tmp_path) -> None:
    model = LearnedInternalModel(env_cfg, LearnedModelConfig(min_samples=20_000, lr=3e-3))
    pos, h, a, h_next = _transitions(env_cfg, 150, seed=1)
    model.add(pos, h, a, h_next)
    assert not model.ready and np.all(np.isinf(model.predict(pos[:2], h[:2], a[:2])[2]))
    model.train(400)
    assert model.ready
    tp, th, ta, th_next = _transitions(env_cfg, 30, seed=2)
    _, pred, err = model.predict(tp, th, ta)
    assert np.all(err < 0.05)  # below one step of a station (dt * rho = 0.05)
    assert np.mean(np.all(np.abs(pred - th_next) <= err, axis=1)) > 0.97
    model.save(str(tmp_path / "m.safetensors"))
    other = LearnedInternalModel(env_cfg, LearnedModelConfig(min_samples=20_000, seed=5))
    other.load(str(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(other.predict(tp, th, ta)[1], pred, atol=1e-6)
    with pytest.raises(CheckpointError, match="hidden"):
        LearnedInternalModel(env_cfg, LearnedModelConfig(hidden=8)).load(str(tmp_path / "m.safetensors"))


def test_ood_threshold_is_calibrated_and_persists(tmp_path) -> None:
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.uniform(0, 5, size=(4000, 2)), rng.normal(0.5, 0.05, size=(4000, 3))])
    ood = EnergyOOD(OODConfig(components=6)).fit(train)
    held_out = np.column_stack([rng.uniform(0, 5, size=(2000, 2)), rng.normal(0.5, 0.05, size=(2000, 3))])
    assert ood.is_ood(held_out).mean() < 0.01
    far = np.column_stack([rng.uniform(7, 10, size=(200, 2)), rng.normal(0.5, 0.05, size=(200, 3))])
    assert ood.is_ood(far).all()
    assert ood.is_ood(np.array([[1.0, 1.0, np.nan, 0.5, 0.5]]))[0]
    path = ood.save(tmp_path / "ood.safetensors")
    loaded = EnergyOOD.load(path)
    np.testing.assert_allclose(loaded.energy(held_out), ood.energy(held_out))
    assert loaded.threshold == ood.threshold
    with pytest.raises(ValueError, match="states"):
        EnergyOOD().fit(np.zeros((3, 5)))
