"""Search, ensemble voting and the amortised filter's verification guarantee."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.env.gridlife import GridLifeConfig
from nodes.shield.barriers import GridLifeBarriers
from nodes.shield.filters import (
    AmortisedConfig,
    AmortisedFilter,
    EnsembleConfig,
    EnsembleFilter,
    QPFilter,
    SearchFilter,
    Verifier,
    vote,
)
from nodes.shield.internal_model import KnownInternalModel
from nodes.shield.qp import BarrierQP
from tests.shield.conftest import safe_states
from tests.shield.test_core import constant_net


@pytest.fixture(scope="module")
def verifier(env_cfg: GridLifeConfig, barriers: GridLifeBarriers) -> Verifier:
    return Verifier(barriers, KnownInternalModel(env_cfg, barriers.layout))


def test_vote_rules() -> None:
    margins = np.array([[0.3, 0.3, -0.1], [0.2, -0.5, -0.1], [0.1, 0.4, -0.2]])  # (K=3, 3 states)
    np.testing.assert_array_equal(vote(margins, "veto_if_any_unsafe"), [True, False, False])
    np.testing.assert_array_equal(vote(margins, "majority"), [True, True, False])
    np.testing.assert_array_equal(vote(margins[:2], "majority"), [True, False, False])  # a tie is not a majority
    with pytest.raises(ValueError, match="rule"):
        vote(margins, "any")


@pytest.mark.parametrize(("rule", "accepted"), [("veto_if_any_unsafe", False), ("majority", True)])
def test_ensemble_filter_applies_the_vote(verifier: Verifier, rule: str, accepted: bool) -> None:
    nets = [constant_net(0.1), constant_net(0.1), constant_net(-0.1)]
    filt = EnsembleFilter(verifier, nets, EnsembleConfig(vote=rule, disagreement_std=10.0))
    pos, h = np.array([[5.0, 9.0]]), np.array([[1.0, 0.0, 1.0]])
    res = filt.filter(pos, h, np.array([[0.3, 0.0]]))
    assert bool(res.ok[0]) is accepted
    if accepted:
        np.testing.assert_allclose(res.actions[0], [0.3, 0.0])


def test_search_returns_verified_actions(verifier: Verifier, barriers: GridLifeBarriers) -> None:
    pos, h = safe_states(barriers, 500, seed=11)
    proposals = np.random.default_rng(12).uniform(-1, 1, size=(500, 2))
    res = SearchFilter(verifier).filter(pos, h, proposals)
    ok, _ = verifier.check(pos, h, res.actions[:, None, :])
    assert res.ok.mean() > 0.95 and ok[res.ok, 0].all()


@pytest.fixture(scope="module")
def amortised(verifier: Verifier, barriers: GridLifeBarriers) -> AmortisedFilter:
    filt = AmortisedFilter(barriers, verifier, QPFilter(barriers), AmortisedConfig(min_samples=2000))
    pos, h = safe_states(barriers, 3000, seed=13)
    filt.add_samples(pos, h, np.random.default_rng(14).uniform(-1, 1, size=(3000, 2)))
    assert not filt.enabled
    filt.train(200)
    assert filt.enabled
    return filt


def test_amortised_output_always_passes_the_verifier(amortised: AmortisedFilter, barriers: GridLifeBarriers) -> None:
    pos, h = safe_states(barriers, 2000, seed=15)
    proposals = np.random.default_rng(16).uniform(-1, 1, size=(2000, 2))
    res = amortised.filter(pos, h, proposals)
    ok, _ = amortised.verifier.check(pos, h, res.actions[:, None, :])
    assert ok[res.ok, 0].all()
    assert np.all(res.actions[~res.ok] == 0)
    assert amortised.stats["net_used"] > 0


def test_a_broken_network_cannot_get_past_the_verifier(
    verifier: Verifier, barriers: GridLifeBarriers, amortised: AmortisedFilter
) -> None:
    broken = AmortisedFilter(barriers, verifier, SearchFilter(verifier), AmortisedConfig(min_samples=1))
    broken.add_samples(*safe_states(barriers, 10, seed=17), np.zeros((10, 2)))
    broken.train(1)
    with torch.no_grad():  # the network now always answers "full speed towards +x, +y"
        broken.regressor.net[-1].weight.zero_()
        broken.regressor.net[-1].bias.fill_(5.0)
    pos, h = safe_states(barriers, 1000, seed=18)
    res = broken.filter(pos, h, np.random.default_rng(19).uniform(-1, 1, size=(1000, 2)))
    ok, _ = verifier.check(pos, h, res.actions[:, None, :])
    assert ok[res.ok, 0].all()
    assert broken.stats["backup_used"] > 0 and broken.stats["net_verified"] < broken.stats["net_used"]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_amortised_never_returns_rejected_actions_property(amortised: AmortisedFilter, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 10, size=(8, 2))
    h = rng.uniform(0, 1, size=(8, 3))  # inside or outside the safe set alike
    res = amortised.filter(pos, h, rng.uniform(-1, 1, size=(8, 2)))
    ok, _ = amortised.verifier.check(pos, h, res.actions[:, None, :])
    assert ok[res.ok, 0].all()


def test_polish_makes_a_guess_near_the_qp_solution_exact(amortised: AmortisedFilter, barriers: GridLifeBarriers) -> None:
    """The network only has to point at the active set: from a guess near the QP's answer, polish returns
    that answer (to float32), and where no candidate is feasible it returns the guess unchanged."""
    pos, h = safe_states(barriers, 3000, seed=20)
    proposals = np.random.default_rng(21).uniform(-1, 1, size=(3000, 2))
    rows = barriers.constraints(pos, h)
    exact = BarrierQP(barriers.n_rows).solve(rows.A, rows.b, proposals)
    projected = exact.solved & exact.feasible
    assert projected.sum() > 200
    guess = exact.actions + np.random.default_rng(22).normal(0, 1e-3, size=exact.actions.shape).astype(np.float32)
    out = amortised.polish(rows.A, rows.b, proposals, guess)
    close = np.abs(out - exact.actions).max(axis=1) < 1e-5
    assert close[projected].mean() > 0.99
    far_off = amortised.polish(rows.A[:5], rows.b[:5] + 1e3, proposals[:5], guess[:5])  # no feasible candidate
    np.testing.assert_array_equal(far_off, guess[:5])
