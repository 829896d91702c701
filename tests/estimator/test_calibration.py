"""The estimator's calibration: an overconfident belief is caught by its measured coverage, and k widens."""

import numpy as np

from nodes.estimator.calibration import Calibration, CalibrationConfig


def test_an_overconfident_belief_is_detected_and_k_widens() -> None:
    cal = Calibration(CalibrationConfig(window=2000, min_samples=200))
    rng = np.random.default_rng(0)
    std = np.full((16, 3), 0.01)
    for _ in range(50):  # errors ten times the claimed std: the truth lies outside the k = 3 box
        truth = rng.uniform(0.0, 1.0, size=(16, 3))
        cal.score(truth + rng.normal(0.0, 0.1, size=(16, 3)), std, cal.k, truth)
    assert cal.coverage < cal.cfg.target and not cal.calibrated
    assert cal.k > 10.0  # widened past the errors' scale
    widened = cal.k
    for _ in range(400):  # with the widened k the box holds the truth again, until coverage reaches the target
        truth = rng.uniform(0.0, 1.0, size=(16, 3))
        cal.score(truth + rng.normal(0.0, 0.1, size=(16, 3)), std, cal.k, truth)
    assert cal.calibrated and cal.coverage >= cal.cfg.target and cal.k >= 0.5 * widened
    figures = cal.figures()
    assert figures["calibrated"] is True and figures["scored"] == 450 * 16


def test_a_fresh_calibration_is_not_calibrated() -> None:
    cal = Calibration()
    assert not cal.calibrated and cal.coverage == 0.0 and cal.figures()["scored"] == 0
