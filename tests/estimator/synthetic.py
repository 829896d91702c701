"""A small synthetic partially observed process for estimator tests (independent of GridLife).

Three hidden variables h in [0, 1] drift down with a basal rate and with effort |a|^2/2, and are
pushed up while a per-variable "station" signal is on (a two-state Markov chain). The observation
carries the action, the effort, the station signals and a noisy sensor of h (sigma = SENSOR_STD);
a good estimator integrates the known drift and averages the sensor, beating the raw sensor.
"""

from __future__ import annotations

import numpy as np

from nodes.estimator.model import TrajectoryDataset

SENSOR_STD = 0.1
OBS_DIM = 2 + 1 + 3 + 3  # action, effort, station signals, sensors
BASAL = np.array([0.002, 0.003, 0.001])
EFFORT = np.array([0.01, 0.006, 0.008])
RECOVERY = np.array([0.03, 0.04, 0.05])


def synthetic_dataset(num_trajectories: int, length: int, seed: int) -> TrajectoryDataset:
    rng = np.random.default_rng(seed)
    n = num_trajectories
    h = rng.uniform(0.3, 0.9, size=(n, 3))
    a = np.zeros((n, 2))
    station = np.zeros((n, 3), dtype=bool)
    obs = np.zeros((n, length, OBS_DIM), np.float32)
    target = np.zeros((n, length, 3), np.float32)
    for t in range(length):
        a = np.clip(0.9 * a + 0.3 * rng.standard_normal((n, 2)), -1.0, 1.0)
        effort = 0.5 * (a**2).sum(axis=1, keepdims=True)
        flip = rng.random((n, 3)) < np.where(station, 0.1, 0.02)
        station = station ^ flip
        sensor = h + SENSOR_STD * rng.standard_normal((n, 3))
        obs[:, t] = np.concatenate([a, effort, station, sensor], axis=1)
        target[:, t] = h
        h = np.clip(h - BASAL - EFFORT * effort + RECOVERY * station, 0.0, 1.0)
    return TrajectoryDataset(obs, target, np.ones((n, length), bool))
