"""Homeostat drive forms and the drive-reduction reward."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nodes.env.homeostat import Homeostat

SETPOINTS = (0.8, 0.4, 1.0)
unit = st.floats(0.0, 1.0, allow_nan=False)
states = hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=unit)
forms = st.sampled_from(["keramati_gutkin", "quadratic"])
exponents = st.floats(0.5, 4.0)
weights = st.tuples(*[st.floats(0.0, 3.0)] * 3)


@settings(max_examples=60, deadline=None)
@given(h=states, form=forms, n=exponents, m=exponents, w=weights)
def test_drive_is_non_negative_and_zero_at_the_setpoint(h, form, n, m, w) -> None:
    homeostat = Homeostat(SETPOINTS, w, form=form, n=n, m=m)
    assert np.all(homeostat.drive(h) >= 0)
    assert homeostat.drive(np.array(SETPOINTS)) == 0.0


@settings(max_examples=60, deadline=None)
@given(trajectory=states, form=forms, n=exponents, m=exponents, w=weights)
def test_undiscounted_homeostatic_rewards_telescope(trajectory, form, n, m, w) -> None:
    homeostat = Homeostat(SETPOINTS, w, form=form, n=n, m=m)
    rewards = homeostat.reward(trajectory[:-1], trajectory[1:])
    drive = homeostat.drive(trajectory)
    assert rewards.sum() == pytest.approx(drive[0] - drive[-1], abs=1e-9)


def test_drive_forms_match_their_formulas() -> None:
    h = np.array([0.5, 0.6, 0.7])
    w = np.array([1.0, 2.0, 0.5])
    deviation = np.abs(np.array(SETPOINTS) - h)
    kg = Homeostat(SETPOINTS, w, form="keramati_gutkin", n=3.0, m=2.0)
    assert kg.drive(h) == pytest.approx(np.sum(w * deviation**3) ** 0.5)
    quadratic = Homeostat(SETPOINTS, w, form="quadratic")
    assert quadratic.drive(h) == pytest.approx(np.sum(w * deviation**2))


def test_moving_towards_the_setpoint_is_rewarded() -> None:
    homeostat = Homeostat(SETPOINTS)
    assert homeostat.reward(np.array([0.2, 0.9, 0.5]), np.array([0.3, 0.8, 0.6])) > 0
    assert homeostat.reward(np.array([0.3, 0.8, 0.6]), np.array([0.2, 0.9, 0.5])) < 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"setpoints": ()}, "setpoints"),
        ({"setpoints": (0.5, float("nan"))}, "setpoints.*finite"),
        ({"weights": (1.0, 1.0)}, "weights.*one per setpoint"),
        ({"weights": (1.0, -1.0, 1.0)}, "weights.*>= 0"),
        ({"form": "cubic"}, "form"),
        ({"n": 0.0}, "n: .*> 0"),
        ({"m": float("inf")}, "m: .*finite"),
    ],
)
def test_bad_homeostat_parameters_are_refused(kwargs, message) -> None:
    params = {"setpoints": SETPOINTS} | kwargs
    with pytest.raises(ValueError, match=message):
        Homeostat(**params)


def test_wrong_internal_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="internal"):
        Homeostat(SETPOINTS).drive(np.zeros((4, 2)))


@settings(max_examples=40, deadline=None)
@given(h=states, h_next=states, form=forms, w=weights)
def test_compiled_drive_matches_the_formula_to_the_bit_at_the_default_exponents(h, h_next, form, w) -> None:
    homeostat = Homeostat(SETPOINTS, w, form=form)  # n = m = 2, the env's defaults
    h_next = np.resize(h_next, h.shape)

    def formula(x: np.ndarray) -> np.ndarray:
        deviation = np.abs(np.array(SETPOINTS) - x)
        if form == "quadratic":
            return np.sum(np.array(w) * deviation**2, axis=-1)
        return np.sum(np.array(w) * deviation**2.0, axis=-1) ** 0.5

    assert np.array_equal(homeostat.drive(h), formula(h))
    assert np.array_equal(homeostat.reward(h, h_next), formula(h) - formula(h_next))
    assert homeostat.drive(h.reshape(-1, 1, 3)).shape == (h.shape[0], 1)


def test_reward_refuses_states_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="internal_next: expected shape"):
        Homeostat(SETPOINTS).reward(np.zeros((4, 3)), np.zeros((3, 3)))
