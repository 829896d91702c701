"""Description functions that misbehave, for tests/shield/test_any_env.py (2-D PointMass)."""

import numpy as np


def rows_wrong_shape(obs):
    return np.zeros((2, 3)), np.zeros(2)


def rows_nan(obs):
    return np.eye(2), np.array([np.nan, 1.0])


def rows_raises(obs):
    raise RuntimeError("no rows today")


def rows_not_a_pair(obs):
    return np.eye(2)


def model_nan(state, action):
    return state, np.array([np.nan])


def model_raises(state, action):
    raise KeyError("velocity")


CALLS = {"n": 0}


def model_changes_width(state, action):
    CALLS["n"] += 1
    return state, np.ones(1 + CALLS["n"] % 2)


def backup_outside(obs):
    return np.array([5.0, 0.0])


def backup_left(obs):
    return np.array([-1.0, 0.0])
