"""The learner adds an intrinsic reward by name: fitted and recomputed on each sampled batch, reported in
telemetry, checkpointed with SAC and resumed; bad input is refused by field and the node keeps working."""

from __future__ import annotations

import numpy as np
import pytest

from nodes.intrinsic import METHODS
from nodes.learner.node import INTRINSIC, LearnerNode
from persist_rt.checkpoint import load
from persist_rt.launch.paramtable import param_table
from persist_rt.params import ParamError
from tests.graph.test_learner_staging import ACT_DIM, OBS_DIM, transitions

PARAMS = {"sac": {"learning_starts": 8, "batch_size": 8, "utd_ratio": 1.0, "hidden": [16, 16]}, "device": "cpu",
          "stage_rows": 4}


def trained(tmp_path, intrinsic: str, steps: int = 12, **params) -> LearnerNode:  # type: ignore[no-untyped-def]
    node = LearnerNode("learner", params={**PARAMS, "intrinsic": intrinsic, "lambda_intr": 0.5, **params},
                       run_dir=tmp_path)
    node.transition("inactive")
    for step in range(steps):
        node.on_transitions(transitions(step))
    return node


@pytest.mark.parametrize("intrinsic", ["surprise_minimise", "surprise_seek", "rnd", "empowerment"])
def test_each_method_trains_reports_and_resumes(tmp_path, intrinsic: str) -> None:  # type: ignore[no-untyped-def]
    node = trained(tmp_path, intrinsic)
    try:
        assert node.algo.num_updates > 0 and node.intr.name == intrinsic
        gauges = node.stats()["gauges"]
        for name in ("intrinsic.mean", "intrinsic.p95", "intrinsic.share", "intrinsic.model_loss"):
            assert np.isfinite(gauges[name]), name
        assert 0 < gauges["intrinsic.share"] < 1
        node.refresh()
        assert node.stats()["gauges"]["intrinsic.train_mean"] == pytest.approx(float(node.intr_sum) / node.intr_count)
        node.save_checkpoint()
        saved = {k: v.copy() for k, v in node.intr.state_arrays().items()}
    finally:
        node.close()
    tensors, meta = load(tmp_path / "checkpoints" / "learner.safetensors")
    assert meta["extra"]["intrinsic"] == intrinsic and any(k.startswith("attached.intrinsic.") for k in tensors)
    again = trained(tmp_path, intrinsic, steps=0)
    try:
        again.build(OBS_DIM, ACT_DIM)  # what the first batch does: the learner resumes
        assert again.stats()["counters"].get("resumes") == 1
        for name, value in again.intr.state_arrays().items():
            np.testing.assert_array_equal(value, saved[name], err_msg=name)
    finally:
        again.close()


def test_the_reward_comes_from_the_model_as_it_is_now(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same batch twice: the model learnt in between, so the recomputed reward differs (nothing is stored)."""
    node = trained(tmp_path, "rnd")
    try:
        batch = node.replay.sample(8, node.algo.generator)
        first = node.with_intrinsic(batch).reward - batch.reward
        second = node.with_intrinsic(batch).reward - batch.reward
        assert not np.allclose(first.numpy(), second.numpy())
        assert len(node.replay) > 0 and not hasattr(node.replay, "intrinsic")
    finally:
        node.close()


def test_a_checkpoint_of_another_method_is_refused_by_field_and_the_learner_starts_afresh(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trained(tmp_path, "rnd").close()  # close writes the checkpoint
    other = trained(tmp_path, "surprise_seek", steps=1)
    try:
        assert other.stats()["counters"].get("checkpoint_unusable") == 1
        assert other.algo.num_updates == 0 and other.intr.name == "surprise_seek"
        for step in range(1, 12):  # and it keeps learning
            other.on_transitions(transitions(step))
        assert other.algo.num_updates > 0
    finally:
        other.close()


def test_bad_parameters_are_refused_by_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert INTRINSIC == METHODS  # the launch checker's literal copy of the names
    assert param_table("learner").params["intrinsic"].choices == METHODS
    with pytest.raises(ParamError, match="intrinsic"):
        LearnerNode("learner", params={**PARAMS, "intrinsic": "curiosity"})
    with pytest.raises(ParamError, match="lambda_intr"):
        LearnerNode("learner", params={**PARAMS, "lambda_intr": -0.1})
    node = trained(tmp_path, "rnd")
    try:  # at run time: refused, the old value kept, and the learner still learns
        with pytest.raises(ParamError, match="lambda_intr"):
            node.set_param("lambda_intr", -1.0)
        assert node.lambda_intr == 0.5
        updates = node.algo.num_updates
        node.on_transitions(transitions(99))
        assert node.algo.num_updates > updates
    finally:
        node.close()


def test_with_a_planning_agent_the_learner_acknowledges_transitions_and_learns_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = trained(tmp_path, "none", algorithm="mpc")
    try:
        assert node.algo is None and node.transitions_seen == 12
        assert node.summary() == {"config": {"agent": "mpc", "intrinsic": "none", "lambda_intr": 0.5},
                                  "train": {"intrinsic_mean": 0.0}}
    finally:
        node.close()
    assert not (tmp_path / "checkpoints" / "learner.safetensors").exists()
