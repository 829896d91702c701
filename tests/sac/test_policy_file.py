import dataclasses

import numpy as np
import pytest

from nodes.sac.networks import Actor
from nodes.sac.policy_file import (
    CheckpointError,
    Policy,
    load_newest_policy,
    load_policy,
    policy_from_wire,
    save_policy,
    state_dict_to_numpy,
)
from nodes.sac.spec import ActorSpec, actor_tensor_shapes
from persist_rt import checkpoint
from protocols.messages import PolicyWeights

SPEC = ActorSpec(obs_dim=24, act_dim=2, hidden=(32, 32))


def make_policy(spec: ActorSpec = SPEC, version: int = 7) -> Policy:
    return Policy(spec, state_dict_to_numpy(Actor(spec).state_dict()), version, "test")


def test_actor_state_dict_matches_the_spec_shapes() -> None:
    spec = dataclasses.replace(SPEC, obs_norm=True)
    state = state_dict_to_numpy(Actor(spec).state_dict())
    assert {k: (v.shape, str(v.dtype)) for k, v in state.items()} == actor_tensor_shapes(spec)


def test_policy_file_round_trip(tmp_path) -> None:
    policy = make_policy(dataclasses.replace(SPEC, activation="tanh", action_low=(-2, -1), action_high=(2, 1)))
    path = save_policy(tmp_path / "policy.safetensors", policy)
    loaded = load_policy(path, expected=policy.spec)
    assert loaded.spec == policy.spec and loaded.version == 7
    assert loaded.tensors.keys() == policy.tensors.keys()
    for name, t in policy.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], t)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp file


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden": (64, 64)}, r"wrong architecture: spec field 'hidden' is \[64, 64\], expected \[32, 32\]"),
        ({"obs_dim": 20}, r"wrong architecture: spec field 'obs_dim' is 20, expected 24"),
        ({"activation": "elu"}, r"wrong architecture: spec field 'activation' is elu, expected relu"),
    ],
)
def test_wrong_architecture_is_refused(tmp_path, change: dict, message: str) -> None:
    path = save_policy(tmp_path / "p.safetensors", make_policy(dataclasses.replace(SPEC, **change)))
    with pytest.raises(CheckpointError, match=message):
        load_policy(path, expected=SPEC)


def _tamper(tmp_path, edit) -> str:
    """A file whose metadata claims SPEC but whose tensors were edited behind its back."""
    policy = make_policy()
    tensors = dict(policy.tensors)
    edit(tensors)
    path = tmp_path / "tampered.safetensors"
    checkpoint.save(
        path, tensors, {"format": "persist.policy", "format_version": 1, "spec": SPEC.to_dict(), "version": 1}
    )
    return str(path)


def test_wrong_shape_is_refused_naming_the_tensor(tmp_path) -> None:
    path = _tamper(tmp_path, lambda t: t.update({"hidden.1.weight": np.zeros((32, 31), np.float32)}))
    with pytest.raises(CheckpointError, match=r"tensor 'hidden.1.weight' has shape \(32, 31\), expected \(32, 32\)"):
        load_policy(path, expected=SPEC)


def test_wrong_dtype_is_refused_naming_the_tensor(tmp_path) -> None:
    path = _tamper(tmp_path, lambda t: t.update({"mean.bias": t["mean.bias"].astype(np.float64)}))
    with pytest.raises(CheckpointError, match=r"tensor 'mean.bias' has dtype float64, expected float32"):
        load_policy(path, expected=SPEC)


def test_missing_extra_and_nonfinite_tensors_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"tensor 'log_std.bias' is missing"):
        load_policy(_tamper(tmp_path, lambda t: t.pop("log_std.bias")))
    with pytest.raises(CheckpointError, match="tensor 'extra' is not part of this architecture"):
        load_policy(_tamper(tmp_path, lambda t: t.update({"extra": np.zeros(3, np.float32)})))
    with pytest.raises(CheckpointError, match=r"tensor 'mean.weight' contains NaN or inf"):
        load_policy(_tamper(tmp_path, lambda t: t["mean.weight"].__setitem__((0, 0), np.inf)))


def test_bad_metadata_is_refused_naming_the_field(tmp_path) -> None:
    path = tmp_path / "bad.safetensors"
    tensors = make_policy().tensors
    checkpoint.save(path, tensors, {"format": "persist.sac", "format_version": 1})
    with pytest.raises(CheckpointError, match=r"field 'format' is 'persist.sac', expected 'persist.policy'"):
        load_policy(path)
    bad_spec = {**SPEC.to_dict(), "activation": "gelu"}
    checkpoint.save(path, tensors, {"format": "persist.policy", "format_version": 1, "spec": bad_spec, "version": 0})
    with pytest.raises(CheckpointError, match="spec is invalid: ActorSpec field 'activation' is 'gelu'"):
        load_policy(path)
    checkpoint.save(
        path, tensors, {"format": "persist.policy", "format_version": 1, "spec": SPEC.to_dict(), "version": -1}
    )
    with pytest.raises(CheckpointError, match="field 'version' must be an integer >= 0, got -1"):
        load_policy(path)
    path.write_bytes(b"not a policy")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_policy(path)


def test_wire_form_round_trips_through_the_message_and_is_validated() -> None:
    policy = make_policy(version=12)
    msg = PolicyWeights(**policy.wire_fields())
    received = policy_from_wire(msg.version, msg.spec, msg.tensors, expected=SPEC)
    assert received.version == 12 and received.spec == SPEC
    np.testing.assert_array_equal(received.tensors["hidden.0.weight"], policy.tensors["hidden.0.weight"])

    wider = make_policy(dataclasses.replace(SPEC, hidden=(64, 32)))
    with pytest.raises(CheckpointError, match=r"policy weights: wrong architecture: spec field 'hidden'"):
        policy_from_wire(wider.version, wider.spec.to_dict(), wider.tensors, expected=SPEC)
    short = {k: v for k, v in policy.tensors.items() if k != "mean.bias"}
    with pytest.raises(CheckpointError, match=r"tensor 'mean.bias' is missing"):
        policy_from_wire(1, SPEC.to_dict(), short, expected=SPEC)
    with pytest.raises(CheckpointError, match=r"tensor 'mean.bias' is a list, expected a numpy array"):
        policy_from_wire(1, SPEC.to_dict(), {**policy.tensors, "mean.bias": [0.0, 0.0]}, expected=SPEC)


def test_obs_std_must_be_positive() -> None:
    spec = dataclasses.replace(SPEC, obs_norm=True)
    tensors = dict(make_policy(spec).tensors)
    tensors["obs_std"] = np.zeros(24, np.float32)
    with pytest.raises(CheckpointError, match="tensor 'obs_std' must be > 0"):
        Policy(spec, tensors, 0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"obs_dim": 0}, "ActorSpec field 'obs_dim' must be a positive integer"),
        ({"hidden": ()}, "ActorSpec field 'hidden' must be a non-empty list"),
        ({"action_low": (-1.0,)}, "ActorSpec field 'action_low' has 1 entries, expected act_dim=2"),
        ({"action_low": (1.0, 1.0)}, "ActorSpec field 'action_low' must be below 'action_high'"),
    ],
)
def test_spec_rejects_bad_fields_by_name(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActorSpec(**{"obs_dim": 24, "act_dim": 2, **fields})


def test_spec_from_dict_names_unknown_and_missing_fields() -> None:
    assert ActorSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="ActorSpec field 'depth' is not known"):
        ActorSpec.from_dict({**SPEC.to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="ActorSpec field 'act_dim' is missing"):
        ActorSpec.from_dict({"obs_dim": 3})


def test_a_corrupt_policy_file_falls_back_to_its_previous_copy(tmp_path) -> None:
    path = tmp_path / "policy.safetensors"
    with pytest.raises(CheckpointError, match="no such file"):
        load_newest_policy(path)
    save_policy(path, make_policy(version=1))
    save_policy(path, make_policy(version=2))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x04  # one flipped bit in the newest file's weights
    path.write_bytes(bytes(data))
    policy, refusals = load_newest_policy(path, expected=SPEC)
    assert policy.version == 1 and policy.source.endswith("policy.prev.safetensors")
    assert len(refusals) == 1 and "persist_sha256" in refusals[0]
