"""The GRU state estimator: a stated held-out error bound, the streaming path, the online trainer.

Stated bound (synthetic process of tests/estimator/synthetic.py, sensor noise 0.10): after 10 epochs
on 256 trajectories of 100 steps, the held-out RMSE over 64 fresh trajectories is at most 0.05, half
the raw sensor's error, and the predicted 2-sigma band covers 85-99.5 % of the held-out truth.
"""

import numpy as np
import pytest

from nodes.estimator.model import EstimatorConfig, OnlineTrainer, StateEstimator, TrajectoryDataset
from persist_rt.checkpoint import CheckpointError
from tests.estimator.synthetic import OBS_DIM, SENSOR_STD, synthetic_dataset

RMSE_BOUND = 0.05


@pytest.fixture(scope="module")
def trained() -> tuple[StateEstimator, TrajectoryDataset]:
    estimator = StateEstimator(EstimatorConfig(obs_dim=OBS_DIM, seed=0))
    history = estimator.fit(synthetic_dataset(256, 100, seed=0), epochs=10)
    assert history[-1] < history[0]
    return estimator, synthetic_dataset(64, 100, seed=1)


def test_held_out_error_is_below_the_stated_bound(trained) -> None:
    estimator, held_out = trained
    sensor_rmse = float(np.sqrt(np.mean((held_out.obs[..., 6:9] - held_out.target) ** 2)))
    assert sensor_rmse == pytest.approx(SENSOR_STD, rel=0.05)
    report = estimator.evaluate(held_out)
    assert report["rmse"] <= RMSE_BOUND, report
    assert report["rmse"] <= 0.5 * sensor_rmse, report
    assert 0.85 <= report["coverage_2std"] <= 0.995, report  # the uncertainty means what it says


def test_an_untrained_estimator_misses_the_bound() -> None:
    """The bound is not trivially met: the same model before training is far off."""
    report = StateEstimator(EstimatorConfig(obs_dim=OBS_DIM)).evaluate(synthetic_dataset(16, 100, seed=1))
    assert report["rmse"] > 4 * RMSE_BOUND


def test_streaming_steps_match_the_sequence_forward_pass(trained) -> None:
    estimator, held_out = trained
    data = held_out.subset(np.arange(8))
    mean_seq, std_seq = estimator.predict(data)
    hidden = None
    for t in range(data.obs.shape[1]):
        mean, std, hidden = estimator.step(data.obs[:, t], hidden)
        np.testing.assert_allclose(mean, mean_seq[:, t], atol=1e-5)
        np.testing.assert_allclose(std, std_seq[:, t], atol=1e-5)
    # after a reset, arena 0 behaves like a fresh episode while arena 1 keeps its memory
    hidden = StateEstimator.reset_hidden(hidden, np.array([True] + [False] * 7))
    mean, _, _ = estimator.step(data.obs[:, 0], hidden)
    np.testing.assert_allclose(mean[0], mean_seq[0, 0], atol=1e-5)
    assert not np.allclose(mean[1], mean_seq[1, 0], atol=1e-3)


def test_save_and_load_round_trip_and_refusal(trained, tmp_path) -> None:
    estimator, held_out = trained
    path = estimator.save(tmp_path / "estimator.safetensors")
    copy = StateEstimator(EstimatorConfig(obs_dim=OBS_DIM, seed=3))
    copy.load(path)
    np.testing.assert_array_equal(copy.predict(held_out)[0], estimator.predict(held_out)[0])
    with pytest.raises(CheckpointError, match=r"field 'config.hidden' is 64, expected 32"):
        StateEstimator(EstimatorConfig(obs_dim=OBS_DIM, hidden=32)).load(path)


def test_online_trainer_builds_episodes_per_arena() -> None:
    estimator = StateEstimator(EstimatorConfig(obs_dim=OBS_DIM, batch_size=4, chunk_len=5))
    trainer = OnlineTrainer(estimator, max_len=6, capacity_steps=20)
    assert trainer.train() is None  # nothing finished yet
    data = synthetic_dataset(2, 12, seed=4)
    ends = {(0, 2), (1, 9)}  # arena 0 ends after step 2; arena 1 after step 9
    for t in range(12):
        ended = np.array([(0, t) in ends, (1, t) in ends])
        trainer.add(data.obs[:, t], data.target[:, t], ended)
    # arena 0: [0..2], then [3..8] cut at max_len; arena 1: [0..5] cut, [6..9] ended
    lengths = sorted(len(o) for o, _ in trainer.episodes)
    assert lengths == [3, 4, 6, 6] and trainer.stored_steps == 19
    first = next(e for e in trainer.episodes if len(e[0]) == 3)
    np.testing.assert_array_equal(first[0], data.obs[0, :3])
    np.testing.assert_array_equal(first[1], data.target[0, :3])
    loss = trainer.train()
    assert loss is not None and np.isfinite(loss)
    for t in range(12):  # capacity 20 steps: the oldest episodes go
        trainer.add(data.obs[:, t], data.target[:, t], np.array([True, True]))
    assert trainer.stored_steps <= 20


def test_online_trainer_and_dataset_refuse_bad_input() -> None:
    trainer = OnlineTrainer(StateEstimator(EstimatorConfig(obs_dim=OBS_DIM)))
    obs, truth = np.zeros((2, OBS_DIM), np.float32), np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"truth has shape \(2, 2\), expected \(2, 3\)"):
        trainer.add(obs, truth[:, :2], np.zeros(2, bool))
    bad = obs.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="obs or truth contains NaN or inf"):
        trainer.add(bad, truth, np.zeros(2, bool))
    trainer.add(obs, truth, np.zeros(2, bool))
    with pytest.raises(ValueError, match="obs has 3 arenas, expected 2 as before"):
        trainer.add(np.zeros((3, OBS_DIM), np.float32), np.zeros((3, 3), np.float32), np.zeros(3, bool))
    with pytest.raises(ValueError, match=r"dataset 'mask' must be \(1, 4\)"):
        TrajectoryDataset(np.zeros((1, 4, OBS_DIM)), np.zeros((1, 4, 3)), np.ones((1, 5), bool))
    with pytest.raises(ValueError, match="EstimatorConfig field 'hidden' must be a positive integer"):
        EstimatorConfig(obs_dim=OBS_DIM, hidden=0)
    with pytest.raises(ValueError, match=r"hidden has shape \(1, 1, 64\), expected \(1, 2, 64\)"):
        StateEstimator(EstimatorConfig(obs_dim=OBS_DIM)).step(obs, np.zeros((1, 1, 64), np.float32))
