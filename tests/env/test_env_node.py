"""The env node's replay stream: what it tells the learner about the shield's interventions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeConfig
from nodes.env.node import GridLifeNode, pack_replay
from nodes.shield.backup import Gatekeeper
from protocols import MODE_FALLBACK, MODE_FILTERED, MODE_PASS, SafeAction, TransitionBatch
from protocols.base import FieldError

EXECUTED = np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4]], np.float32)
PROPOSED = np.array([[0.1, 0.1], [0.9, 0.9], [-0.5, 0.5], [1.0, -1.0]], np.float32)


def safe_action(proposed: np.ndarray | None) -> SafeAction:
    n = len(EXECUTED)
    return SafeAction(step=0, actions=EXECUTED, mode=np.array([MODE_PASS, MODE_FILTERED, MODE_FALLBACK, MODE_FILTERED],
                                                              np.uint8),
                      constraint=["", "energy", "stale", "hazard_0"], margin_before=np.zeros(n, np.float32),
                      margin_after=np.zeros(n, np.float32), proposed=proposed)


@pytest.fixture
def env() -> Iterator[GridLifeNode]:
    node = GridLifeNode("env", params={"num_envs": 4, "total_steps": 10, "learn_from_proposals": True})
    node.transition("inactive")
    yield node
    node.close()


def test_the_replay_stream_carries_the_proposal_where_the_shield_changed_it(env: GridLifeNode) -> None:
    env_fallback = np.array([False, False, False, True])  # arena 3: the env's own deadline fallback ran
    replay = env.replay_actions(EXECUTED, safe_action(PROPOSED), env_fallback)
    np.testing.assert_array_equal(replay[[0, 3]], EXECUTED[[0, 3]])  # passed unchanged; not the shield's doing
    np.testing.assert_array_equal(replay[[1, 2]], PROPOSED[[1, 2]])  # filtered, shield fallback
    assert replay.dtype == np.float32


def test_without_a_proposal_or_with_the_option_off_the_executed_actions_go_in(env: GridLifeNode) -> None:
    none = np.zeros(4, bool)
    np.testing.assert_array_equal(env.replay_actions(EXECUTED, safe_action(None), none), EXECUTED)
    np.testing.assert_array_equal(env.replay_actions(EXECUTED, None, none), EXECUTED)
    env.learn_from_proposals = False
    np.testing.assert_array_equal(env.replay_actions(EXECUTED, safe_action(PROPOSED), none), EXECUTED)


def test_a_proposal_of_another_shape_is_refused_by_name() -> None:
    with pytest.raises(FieldError, match="proposed"):
        safe_action(PROPOSED[:3])
    with pytest.raises(FieldError, match="proposed"):
        safe_action(PROPOSED.astype(np.float64))


def test_training_episodes_end_at_train_cap_and_evaluation_runs_the_full_cap() -> None:
    node = GridLifeNode("env", params={"num_envs": 2, "total_steps": 1000, "train_cap": 30, "eval_episodes": 2})
    try:
        node.transition("inactive")
        node.reset_sim(0)
        hold = np.zeros((2, 2), np.float32)  # standing still survives 30 steps from any start
        ends = [node.step_sim(hold) for _ in range(30)]
        assert not any(o.done.any() for o in ends[:29])
        assert ends[29].truncated.all() and not ends[29].terminated.any()
        assert node.train_episode_cap == 30 and node.episode_cap == GridLifeConfig().episode_cap
        node.phase = "eval"  # what advance_phase does before it builds the evaluation arenas
        node.build_sim(2)
        assert node.sim.cfg.episode_cap == node.episode_cap
    finally:
        node.close()


def test_the_observation_carries_the_state_the_env_steps_bit_for_bit() -> None:
    """The shield certifies from this state: a float32 copy is not the state the env steps (see
    tests/shield/test_gatekeeper.py), and the arrays must not change under a later step's auto-reset."""
    node = GridLifeNode("env", params={"num_envs": 3, "total_steps": 100, "train_cap": 5})
    try:
        node.transition("inactive")
        node.reset_sim(0)
        rng = np.random.default_rng(0)
        for _ in range(7):  # past one auto-reset
            node.step_sim(rng.uniform(-1, 1, (3, 2)).astype(np.float32))
        msg = node.observation()
        assert msg.positions.dtype == np.float64 and msg.internal is not None and msg.internal.dtype == np.float64
        np.testing.assert_array_equal(msg.positions, node.sim.positions)
        np.testing.assert_array_equal(msg.internal, node.sim.internal)
        before = msg.positions.copy(), msg.internal.copy()
        for _ in range(5):
            node.step_sim(rng.uniform(-1, 1, (3, 2)).astype(np.float32))
        np.testing.assert_array_equal(msg.positions, before[0])
        np.testing.assert_array_equal(msg.internal, before[1])
    finally:
        node.close()


def test_the_replay_stream_packs_replay_steps_steps_per_message() -> None:
    """Steps are held until `replay_steps` of them make one message (rows step-major, every field in step order);
    the steps held when the node closes go out then."""
    node = GridLifeNode("env", params={"num_envs": 2, "total_steps": 1000, "replay_steps": 4})
    try:
        node.transition("inactive")
        node.reset_sim(0)
        node.started = True
        rng = np.random.default_rng(0)
        for step in range(11):
            node.execute(rng.uniform(-0.3, 0.3, (2, 2)).astype(np.float32), source="shield", safe=None)
            assert len(node.replay) == (step + 1) % 4
            if len(node.replay) == 1:
                assert node.replay_step == step
        assert node.transitions_pub.seq == 2  # steps 0-3 and 4-7; 8-10 are held
        held = list(node.replay)
        msg = pack_replay(node.replay_step, held)
        assert (msg.step, msg.steps, msg.arenas, msg.obs.shape) == (8, 3, 2, (6, node.sim.obs_dim))
        for s, fields in enumerate(held):
            for name, value in fields.items():
                np.testing.assert_array_equal(getattr(msg, name)[2 * s:2 * s + 2], value, err_msg=name)
    finally:
        node.close()
    assert node.transitions_pub.seq == 3 and node.replay == []


def test_a_replay_message_whose_rows_do_not_split_into_its_steps_is_refused_by_name() -> None:
    held = [{"obs": np.zeros((3, 2), np.float32), "actions": np.zeros((3, 2), np.float32),
             "reward": np.zeros(3, np.float32), "reward_task": np.zeros(3, np.float32),
             "reward_homeo": np.zeros(3, np.float32), "next_obs": np.zeros((3, 2), np.float32),
             "terminated": np.zeros(3, bool), "truncated": np.zeros(3, bool), "internal": None, "next_internal": None}]
    assert pack_replay(0, held).steps == 1
    with pytest.raises(FieldError, match="steps"):
        TransitionBatch(step=0, steps=2, **held[0])


def test_the_default_fallback_is_the_backup_and_keeps_certified_arenas_certified() -> None:
    """A shield outage: the env's own fallback steps every arena. It is the gatekeeper's backup policy, so an arena
    whose state the backup certifies is still certified after each fallback step (the backup's own rollout)."""
    node = GridLifeNode("env", params={"num_envs": 8, "total_steps": 1000})
    try:
        node.transition("inactive")
        assert node.fallback == "backup"
        node.reset_sim(5)
        gate = Gatekeeper(node.cfg)
        certified = gate.certified(node.sim.positions, node.sim.internal)
        assert certified.any()
        for _ in range(60):
            actions = node.fallback_actions()
            np.testing.assert_array_equal(actions, gate.actions(node.sim.positions, node.sim.internal))
            outcome = node.step_sim(actions)
            still = gate.certified(node.sim.positions, node.sim.internal)
            ongoing = certified & ~outcome.done  # an arena that ended was reset to a new start state
            assert still[ongoing].all() and not outcome.violation[certified].any()
            certified = still
    finally:
        node.close()


def test_the_fallback_can_be_switched_to_the_backup_while_running() -> None:
    node = GridLifeNode("env", params={"num_envs": 2, "total_steps": 100, "fallback": "seek_station"})
    try:
        node.transition("inactive")
        node.reset_sim(1)
        assert node.backup_policy is None
        node.set_param("fallback", "backup")
        expected = Gatekeeper(node.cfg).actions(node.sim.positions, node.sim.internal)
        np.testing.assert_array_equal(node.fallback_actions(), expected)
    finally:
        node.close()


def test_with_homeo_discount_the_homeostatic_reward_is_potential_based_shaping() -> None:
    """r = D(h) - gamma D(h'): its discounted sum telescopes to D(h_0) - gamma^k D(h_k) whatever the actions."""
    gamma = 0.9
    params = {"num_envs": 3, "total_steps": 100, "lambda_task": 0.0, "lambda_homeo": 1.0, "homeo_discount": gamma,
              "fallback": "zero"}
    node = GridLifeNode("env", params=params)
    try:
        node.transition("inactive")
        node.reset_sim(0)
        drive = node.sim.homeostat.drive
        start = drive(node.sim.internal)
        rng = np.random.default_rng(1)
        total = np.zeros(3)
        for k in range(20):
            before = node.sim.internal.copy()
            outcome = node.step_sim(rng.uniform(-1, 1, (3, 2)).astype(np.float32))
            total += gamma**k * outcome.reward
            # the books keep plain drive reduction, so the reported homeostatic return means what it did
            np.testing.assert_allclose(outcome.homeo_reward, drive(before) - drive(outcome.next_internal), atol=1e-5)
        np.testing.assert_allclose(total, start - gamma**20 * drive(node.sim.internal), rtol=1e-4, atol=1e-5)
    finally:
        node.close()


def test_token_shaping_pays_for_the_metres_towards_the_nearest_token() -> None:
    params = {"num_envs": 8, "total_steps": 100, "lambda_task": 0.0, "lambda_homeo": 0.0, "token_shaping": 1.0,
              "fallback": "zero"}
    node = GridLifeNode("env", params=params)
    try:
        node.transition("inactive")
        node.reset_sim(3)
        column = node.sim.obs_names.index("token_dx")
        towards = node.current_obs[:, column : column + 2].astype(np.float64)
        towards /= np.linalg.norm(towards, axis=1, keepdims=True)
        far = node.current_obs[:, column + 2] * node.cfg.arena_size > 1.0
        assert far.sum() >= 4
        outcome = node.step_sim(towards.astype(np.float32))  # full speed, straight at the token: 0.1 m
        np.testing.assert_allclose(outcome.reward[far], node.cfg.dt * node.cfg.vmax, atol=1e-4)
        away = node.step_sim(-towards.astype(np.float32))
        assert (away.reward[far] < 0).all()  # and moving away costs
    finally:
        node.close()
