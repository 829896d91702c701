import dataclasses

import numpy as np
import pytest
import torch

from nodes.sac.replay import ReplayBuffer
from nodes.sac.sac import SAC, SACConfig
from persist_rt.checkpoint import CheckpointError
from tests.sac.conftest import ACT_DIM, OBS_DIM, make_filled_replay

SMALL = SACConfig(hidden=(64, 64), batch_size=128, device="cpu", seed=1)
# the learner's CUDA path (a CUDA generator, CUDA kernels) where the machine has a GPU
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device on this machine"))]


@pytest.mark.parametrize("device", DEVICES)
def test_repeated_updates_on_a_fixed_batch_lower_the_critic_loss(device: str) -> None:
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, device=device))
    batch = make_filled_replay(device).sample(128, torch.Generator().manual_seed(0))
    first = sac.update(batch)["critic_loss"]
    for _ in range(30):
        last = sac.update(batch)["critic_loss"]
    assert last < 0.5 * first, (first, last)


def test_target_networks_move_by_tau(filled_replay: ReplayBuffer) -> None:
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, tau=0.1))
    sac.update(filled_replay.sample(128, sac.generator))  # targets and online nets now differ
    before = [p.detach().clone() for p in sac.critic_target.parameters()]
    sac.update(filled_replay.sample(128, sac.generator))
    for old, online, new in zip(before, sac.critic.parameters(), sac.critic_target.parameters(), strict=True):
        torch.testing.assert_close(new, old + 0.1 * (online.detach() - old), rtol=0, atol=1e-6)
        assert not torch.equal(new, old)


@pytest.mark.parametrize(("target_entropy", "direction"), [(5.0, +1), (-50.0, -1)])
def test_entropy_tuning_moves_alpha_towards_the_target(
    filled_replay: ReplayBuffer, target_entropy: float, direction: int
) -> None:
    """Entropy below target (target 5 nats for 2 tanh-squashed dims) must raise alpha; far above, lower it."""
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, target_entropy=target_entropy, alpha_lr=1e-2))
    alpha0 = sac.alpha
    for _ in range(10):
        sac.update(filled_replay.sample(128, sac.generator))
    assert (sac.alpha - alpha0) * direction > 0.0, (alpha0, sac.alpha)


def test_the_averaged_policy_trails_the_actor_and_survives_a_checkpoint(filled_replay: ReplayBuffer, tmp_path) -> None:
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, policy_average=0.2))
    assert sac.actor_average is not None
    sac.update(filled_replay.sample(128, sac.generator))
    before = [p.detach().clone() for p in sac.actor_average.parameters()]
    sac.update(filled_replay.sample(128, sac.generator))
    for old, actor, new in zip(before, sac.actor.parameters(), sac.actor_average.parameters(), strict=True):
        torch.testing.assert_close(new, old + 0.2 * (actor.detach() - old), rtol=0, atol=1e-6)
    published = sac.policy().tensors
    averaged = {k: v.numpy() for k, v in sac.actor_average.state_dict().items()}
    assert all(np.array_equal(published[k], averaged[k]) for k in averaged)
    assert not all(np.array_equal(published[k], v.numpy()) for k, v in sac.actor.state_dict().items())
    resumed = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, policy_average=0.2, seed=7))
    resumed.resume(sac.checkpoint(tmp_path / "learner.safetensors"))
    for a, b in zip(sac.actor_average.parameters(), resumed.actor_average.parameters(), strict=True):  # type: ignore[union-attr]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fixed_alpha_stays_fixed(filled_replay: ReplayBuffer) -> None:
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, autotune_alpha=False, initial_alpha=0.3))
    stats = sac.update(filled_replay.sample(128, sac.generator))
    assert sac.alpha == pytest.approx(0.3) and stats["alpha_loss"] == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_resume_gives_the_identical_next_update(tmp_path, device: str) -> None:
    config = dataclasses.replace(SMALL, device=device)
    filled_replay = make_filled_replay(device)
    original = SAC(OBS_DIM, ACT_DIM, config)
    for _ in range(5):
        original.update(filled_replay.sample(128, original.generator))
    path = original.checkpoint(tmp_path / "learner.safetensors", extra={"env_steps": 1234})

    resumed = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(config, seed=99))  # different init and noise
    assert resumed.resume(path) == {"env_steps": 1234}
    assert resumed.num_updates == 5

    # Replay sampling and policy noise both come from the restored generator.
    stats_a = original.update(filled_replay.sample(128, original.generator))
    stats_b = resumed.update(filled_replay.sample(128, resumed.generator))
    assert stats_a == stats_b
    state_a, state_b = original.state_dict(), resumed.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


def test_fresh_state_without_optimizer_moments_round_trips() -> None:
    sac = SAC(OBS_DIM, ACT_DIM, SMALL)
    other = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, seed=5))
    other.load_state_dict(sac.state_dict())
    np.testing.assert_array_equal(sac.policy().tensors["mean.weight"], other.policy().tensors["mean.weight"])


def test_resume_refuses_another_architecture(tmp_path) -> None:
    path = SAC(OBS_DIM, ACT_DIM, SMALL).checkpoint(tmp_path / "small.safetensors")
    wider = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, hidden=(32, 32)))
    with pytest.raises(CheckpointError, match=r"wrong architecture: actor_spec field 'hidden' is \[64, 64\]"):
        wider.resume(path)


def test_load_state_dict_names_a_bad_tensor() -> None:
    sac = SAC(OBS_DIM, ACT_DIM, SMALL)
    state = sac.state_dict()
    state["critic.q1.0.weight"] = state["critic.q1.0.weight"][:, :-1]
    with pytest.raises(CheckpointError, match=r"tensor 'critic.q1.0.weight' has shape \(64, 25\), expected \(64, 26\)"):
        sac.load_state_dict(state)
    state = sac.state_dict()
    state["log_alpha"] = np.array([np.nan], np.float32)
    with pytest.raises(CheckpointError, match="tensor 'log_alpha' contains NaN"):
        sac.load_state_dict(state)


def test_policy_is_the_actor_and_publish_cadence() -> None:
    sac = SAC(OBS_DIM, ACT_DIM, dataclasses.replace(SMALL, publish_period=3, learning_starts=10, utd_ratio=0.5))
    assert sac.updates_owed(9) == 0
    assert sac.updates_owed(13) == 2  # (13 - 10 + 1) * 0.5
    sac.num_updates = 3
    assert sac.publish_due() and sac.policy().version == 3
    assert sac.policy().spec == sac.actor_spec


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("gamma", 1.0, "must be in \\[0, 1\\)"),
        ("tau", 0.0, "must be in \\(0, 1\\]"),
        ("critic_lr", -1e-3, "must be a finite number > 0"),
        ("batch_size", 0, "must be an integer >= 1"),
        ("hidden", (64, 0), "must be a non-empty list of positive integers"),
        ("device", "tpu", "must be 'auto'"),
        ("target_entropy", float("nan"), "must be finite"),
    ],
)
def test_config_rejects_bad_values_by_name(field: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=f"SACConfig field '{field}' {reason}"):
        SACConfig(**{field: value})


def test_config_from_dict_names_unknown_keys() -> None:
    assert SACConfig.from_dict({"gamma": 0.95, "hidden": [32, 32]}).hidden == (32, 32)
    with pytest.raises(ValueError, match="SACConfig field 'gama' is not known"):
        SACConfig.from_dict({"gama": 0.95})


def test_auto_device_resolves_to_what_is_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert SACConfig(device="auto").resolve_device().type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SACConfig(device="cuda").resolve_device()
