import dataclasses

import numpy as np
import pytest
import torch

from nodes.sac.inference import DEFAULT_BACKEND, NumpyActor, TorchActor, make_inference_actor
from nodes.sac.networks import Actor
from nodes.sac.policy_file import Policy, state_dict_to_numpy
from nodes.sac.spec import ACTIVATIONS, ActorSpec

SPEC = ActorSpec(obs_dim=24, act_dim=2, hidden=(64, 64))


def trained_looking_actor(spec: ActorSpec, seed: int = 0) -> Actor:
    """An actor with weights scaled up so that tanh saturation and both log-std bounds are exercised."""
    torch.manual_seed(seed)
    actor = Actor(spec)
    with torch.no_grad():
        for p in actor.parameters():
            p.mul_(3.0)
        if spec.obs_norm:
            actor.obs_mean.uniform_(-1, 1)
            actor.obs_std.uniform_(0.5, 2)
    return actor


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("obs_norm", [False, True])
def test_numpy_actor_equals_torch_actor(activation: str, obs_norm: bool) -> None:
    spec = dataclasses.replace(SPEC, activation=activation, obs_norm=obs_norm, action_low=(-2, 0), action_high=(2, 1))
    actor = trained_looking_actor(spec)
    policy = Policy(spec, state_dict_to_numpy(actor.state_dict()), 3)
    obs = np.random.default_rng(1).normal(size=(64, 24)).astype(np.float32)
    numpy_actor = NumpyActor(policy)

    with torch.no_grad():
        mean, log_std = actor(torch.from_numpy(obs))
        expected_det = actor.act(torch.from_numpy(obs), deterministic=True).numpy()
    np_mean, np_log_std = numpy_actor.distribution(obs)
    np.testing.assert_allclose(np_mean, mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(np_log_std, log_std.numpy(), atol=1e-5)
    np.testing.assert_allclose(numpy_actor.act(obs, deterministic=True), expected_det, atol=1e-5)

    # Stochastic: same generator seed -> same noise -> same actions on both backends.
    sampled = numpy_actor.act(obs, deterministic=False, rng=np.random.default_rng(7))
    eps = np.random.default_rng(7).standard_normal((64, 2), dtype=np.float32)
    by_hand = np.asarray(spec.action_bias) + np.asarray(spec.action_scale) * np.tanh(
        mean.numpy() + np.exp(log_std.numpy()) * eps
    )
    np.testing.assert_allclose(sampled, by_hand, atol=1e-5)
    torch_sampled = TorchActor(policy).act(obs, deterministic=False, rng=np.random.default_rng(7))
    np.testing.assert_allclose(sampled, torch_sampled, atol=1e-5)
    assert sampled.dtype == np.float32 and (sampled >= [-2, 0]).all() and (sampled <= [2, 1]).all()
    assert not np.allclose(sampled, expected_det)


def test_batch_of_one_and_bad_input() -> None:
    policy = Policy(SPEC, state_dict_to_numpy(trained_looking_actor(SPEC).state_dict()), 0)
    actor = make_inference_actor(policy)
    assert DEFAULT_BACKEND in ("numpy", "torch")
    assert actor.act(np.zeros((1, 24), np.float32), deterministic=True).shape == (1, 2)
    with pytest.raises(ValueError, match=r"obs has shape \(24,\), expected \(batch, 24\)"):
        actor.act(np.zeros(24, np.float32), deterministic=True)
    with pytest.raises(ValueError, match="rng is required for stochastic actions"):
        actor.act(np.zeros((1, 24), np.float32), deterministic=False)
    with pytest.raises(ValueError, match="backend is 'jax'"):
        make_inference_actor(policy, backend="jax")  # type: ignore[arg-type]


def test_log_prob_matches_the_squashed_gaussian_density() -> None:
    """Actor.sample's log-prob equals the change-of-variables density of a = scale * tanh(x) + bias."""
    spec = dataclasses.replace(SPEC, action_low=(-2, 0), action_high=(2, 1))
    actor = trained_looking_actor(spec)
    obs = torch.randn(256, 24)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        action, log_prob, _ = actor.sample(obs, gen)
        mean, log_std = actor(obs)
        scale = torch.tensor(spec.action_scale)
        u = torch.atanh(((action - torch.tensor(spec.action_bias)) / scale).clamp(-1 + 1e-6, 1 - 1e-6))
        base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
        expected = base - torch.log(scale * (1 - torch.tanh(u) ** 2)).sum(-1)
    ok = (action.abs() < 0.999 * scale).all(-1)  # away from saturation atanh is well conditioned
    torch.testing.assert_close(log_prob[ok], expected[ok], rtol=1e-3, atol=1e-3)
