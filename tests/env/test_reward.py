"""The reward's one home: RewardTerms, used by the env node and GridLifeEnv alike."""

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.gym_env import GridLifeEnv
from nodes.env.node import GridLifeNode, GymNode
from nodes.env.reward import RewardTerms
from nodes.env.step import StepResult
from protocols import MODE_FILTERED, MODE_PASS, SafeAction


def step_result(task: list[float], homeo: list[float], terminated: list[bool]) -> StepResult:
    n = len(task)
    obs = np.zeros((n, 4), np.float32)
    return StepResult(obs=obs, next_obs=obs, reset_obs=obs, task_reward=np.array(task), homeo_reward=np.array(homeo),
                      terminated=np.array(terminated), truncated=np.zeros(n, bool), violation=np.array(terminated),
                      margins={}, episode_steps=np.ones(n, np.int64))


def test_compose_weighs_task_homeostasis_and_death() -> None:
    terms = RewardTerms(lambda_task=2.0, lambda_homeo=10.0, death_penalty=-5.0)
    reward = terms.compose(step_result([1.0, 0.0], [0.5, -0.25], [False, True]))
    assert reward.dtype == np.float32
    np.testing.assert_array_equal(reward, [7.0, -7.5])
    np.testing.assert_array_equal(RewardTerms().compose(step_result([1.0], [0.5], [True]), dtype=np.float64), [1.5])


def test_penalise_charges_only_where_the_shield_changed_the_action() -> None:
    reward = np.array([1.0, 1.0], np.float32)
    RewardTerms(intervention_penalty=0.5).penalise(reward, np.array([True, False]))
    np.testing.assert_array_equal(reward, [0.5, 1.0])


def test_homeo_discount_charges_the_discounted_next_drive() -> None:
    batch = GridLifeBatch(GridLifeConfig(), num_envs=4)
    obs = batch.reset(seed=0)
    before = batch.internal.copy()
    result = batch.step(np.random.default_rng(0).uniform(-1, 1, (4, 2)).astype(np.float32))
    reward = RewardTerms(lambda_task=0.0, homeo_discount=0.9).compose(result, batch.homeostat, dtype=np.float64)
    drive = batch.homeostat.drive
    np.testing.assert_allclose(reward, drive(before) - 0.9 * drive(result.next_internal), atol=1e-12)
    # the step result's obs and h are those before the step
    np.testing.assert_array_equal(result.obs, obs)
    np.testing.assert_array_equal(result.internal, before)


@pytest.mark.parametrize(("field", "value"), [("death_penalty", 1.0), ("homeo_discount", 0.0),
                                              ("lambda_homeo", float("nan")), ("token_shaping", -1.0)])
def test_bad_terms_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RewardTerms(**{field: value})


def test_gym_env_takes_the_env_nodes_terms() -> None:
    """GridLifeEnv composes its reward in the same place: a death penalty reaches it."""
    env = GridLifeEnv(k_basal=20.0, lambda_homeo=2.0, death_penalty=-5.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert terminated
    assert reward == pytest.approx(info["task_reward"] + 2.0 * info["homeo_reward"] - 5.0)
    with pytest.raises(ValueError, match="death_penalty"):
        GridLifeEnv(death_penalty=3.0)


def test_a_live_change_of_a_weight_reaches_the_env_nodes_reward() -> None:
    node = GridLifeNode("env", params={"num_envs": 2, "total_steps": 10, "fallback": "zero", "lambda_homeo": 5.0})
    try:
        node.transition("inactive")
        node.reset_sim(0)
        assert node.step_sim(np.zeros((2, 2), np.float32)).reward.any()  # the drive changes every step
        node.set_param("lambda_homeo", 0.0)
        node.set_param("lambda_task", 0.0)
        assert not node.step_sim(np.zeros((2, 2), np.float32)).reward.any()
    finally:
        node.close()


def test_the_intervention_penalty_leaves_the_task_reward_alone() -> None:
    """Gym kind: the learner's reward pays the penalty where the shield changed the action; the task reward
    (books and replay stream) is the env's own."""
    node = GymNode("env", params={"num_envs": 2, "total_steps": 100, "env_id": "Pendulum-v1",
                                  "intervention_penalty": 1.0})
    try:
        node.transition("inactive")
        node.reset_sim(0)
        node.started = True
        actions = np.zeros((2, 1), np.float32)
        safe = SafeAction(step=0, actions=actions, mode=np.array([MODE_PASS, MODE_FILTERED], np.uint8),
                          constraint=["", "speed"], margin_before=np.zeros(2, np.float32),
                          margin_after=np.zeros(2, np.float32))
        node.execute(actions, source="shield", safe=safe)
        sent = node.replay[-1]
        np.testing.assert_allclose(sent["reward"], sent["reward_task"] - np.array([0.0, 1.0]), rtol=1e-6)
        assert (sent["reward_task"] < 0).all()  # Pendulum's own cost, not the penalty
    finally:
        node.close()
