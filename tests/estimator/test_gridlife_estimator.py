"""The estimator on GridLife with partial observability (internal variables hidden from the obs).

Data: arenas driven by the scripted station-seeking controller plus exploration noise, so energy and
temperature swing through refuels and cool-downs. The estimator sees velocity (hence effort) and the
distances to stations, hot zones and hazards, and must integrate the internal dynamics from a start
near the setpoints. Stated bound: after 12 epochs on 256 trajectories of 200 steps, held-out RMSE is
at most 0.75x that of the best history-blind guess (the training mean at each time step), and each
of energy and temperature beats that guess too.
"""

import numpy as np
import pytest

from nodes.env.gridlife import GridLifeBatch, GridLifeConfig
from nodes.env.scripted import seek_station_policy
from nodes.estimator.model import EstimatorConfig, StateEstimator, TrajectoryDataset


def gridlife_dataset(num_arenas: int, length: int, seed: int) -> TrajectoryDataset:
    cfg = GridLifeConfig(partial_observability=True)
    env = GridLifeBatch(cfg, num_envs=num_arenas)
    obs = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    all_obs = np.zeros((num_arenas, length, cfg.obs_dim), np.float32)
    truth = np.zeros((num_arenas, length, 3), np.float32)
    mask = np.zeros((num_arenas, length), bool)
    alive = np.ones(num_arenas, bool)  # keep each arena's first episode only
    for t in range(length):
        all_obs[:, t], truth[:, t], mask[:, t] = obs, env.internal, alive
        action = seek_station_policy(env.positions, env.internal, env.tokens, cfg, env.layout)
        action = np.clip(action + 0.5 * rng.standard_normal(action.shape), -1.0, 1.0).astype(np.float32)
        out = env.step(action)
        alive &= ~out.done
        obs = out.reset_obs
    return TrajectoryDataset(all_obs, truth, mask)


def test_estimator_tracks_hidden_internal_variables_on_gridlife() -> None:
    train, held_out = gridlife_dataset(256, 200, seed=0), gridlife_dataset(64, 200, seed=1)
    assert train.obs.shape[2] == GridLifeConfig(partial_observability=True).obs_dim  # nothing internal leaks in

    m = train.mask[..., None]
    time_mean = (train.target * m).sum(axis=0) / np.maximum(m.sum(axis=0), 1)
    blind_err = (time_mean[None] - held_out.target)[held_out.mask]
    blind_rmse = float(np.sqrt(np.mean(blind_err**2)))
    blind_per_var = np.sqrt(np.mean(blind_err**2, axis=0))

    estimator = StateEstimator(EstimatorConfig(obs_dim=train.obs.shape[2], seed=0))
    estimator.fit(train, epochs=12)
    report = estimator.evaluate(held_out)
    assert report["rmse"] <= 0.75 * blind_rmse, (report, blind_rmse)
    assert report["rmse_per_var"][0] < blind_per_var[0] and report["rmse_per_var"][1] < blind_per_var[1]
    assert report["coverage_2std"] == pytest.approx(0.95, abs=0.1), report
