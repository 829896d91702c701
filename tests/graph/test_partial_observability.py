"""Partial observability through the graph: the interval belief answers every step and holds the truth, the agent
and the learner get the belief appended; the learned belief checkpoints and resumes after a kill."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from nodes.telemetry.history import load_history
from persist_rt import checkpoint
from tests.graph.conftest import LiveRun, launch_single_agent
from tests.launch.conftest import wait_for

# `--set env.config` replaces the mapping the argument fills in, so the test repeats the flag there. Training
# sequences are cut at 40 steps, so the estimator trains within the short run whether or not an episode ends.
PO = ("--arg", "partial_observability=true", "--set", 'env.config={"episode_cap": 150, "partial_observability": true}',
      "--set", "estimator.train_every=5", "--set", "estimator.max_episode_len=40",
      "--set", "env.select_policy=false")
# (no policy selection: its 64 unshielded episodes per kept policy were most of each run, and nothing here reads them)
ESTIMATOR_CHECKPOINT = Path("checkpoints") / "estimator.safetensors"


def check_books(summary: dict[str, Any], steps: int | None) -> None:
    """Books of a run that ended at ``steps``, or (None) of one stopped with Ctrl-C before its budget."""
    train = summary["train"]
    assert summary["launch"]["exit_code"] == 0
    if steps is None:
        assert summary["complete"] is False and summary["env_steps"] > 0
    else:
        assert summary["complete"] is True and summary["env_steps"] == steps
    assert train["executed_steps"] + train["fallback_steps"] == summary["env_steps"]


def test_the_interval_belief_holds_the_truth_and_the_run_keeps_its_books(tmp_path: Path,
                                                                        launched: list[LiveRun]) -> None:
    steps = 800
    run = launch_single_agent(tmp_path, "--arg", f"steps={steps}", *PO)
    launched.append(run)
    assert run.wait_exit() == 0
    summary = run.summary()
    check_books(summary, steps)
    assert summary["launch"]["nodes"]["estimator"]["kind"] == "estimator"
    cal = summary["estimator"]  # the calibration of the belief the shield certified against
    assert cal["scored"] >= 400 and cal["calibrated"] == (cal["coverage"] >= cal["target"])
    assert cal["coverage"] == cal["coverage_total"] == 1.0 and cal["k"] == 1.0  # exact: every true state inside
    # exact by construction: trusted from its first step (no warm-up of uncertified backup steps on 4 arenas)
    assert cal["calibrated"] and cal["calibrated_after_scored"] == 0
    # the certified box holds the truth, so what the shield passed (or its backup) kept every arena viable
    assert summary["train"]["violations_executed"] == 0

    history = load_history(run.run_dir / "metrics.jsonl")
    obs_seen = history[("estimator", "edge.env/obs.received")].v[-1]
    assert history[("estimator", "estimates")].v[-1] == obs_seen > 0  # one estimate for every observation
    assert history[("shield", "edge.estimator/state.received")].v[-1] > 0
    # the learner trains on the estimator's replay stream, observations with the belief appended (22 + 6)
    assert history[("learner", "edge.estimator/transitions.received")].v[-1] > 0
    assert not (run.run_dir / ESTIMATOR_CHECKPOINT).exists()  # nothing learned, nothing to checkpoint


def test_estimator_killed_respawns_and_resumes(tmp_path: Path, launched: list[LiveRun]) -> None:
    # A budget the test never reaches: the run goes on while the estimator is dead (the shield keeps the last
    # estimates), so a fast machine could otherwise end it before the new estimator is back. Ctrl-C ends it.
    run = launch_single_agent(tmp_path, "--arg", "steps=1000000", *PO, "--set", "estimator.belief=learned",
                              "--set", "estimator.checkpoint_every_s=0.2")
    launched.append(run)
    path = run.run_dir / ESTIMATOR_CHECKPOINT
    wait_for("an estimator checkpoint", lambda: run.metric_above("estimator", "checkpoints", 0), deadline_s=90)
    old = run.nodes()["estimator"]
    os.kill(old["pid"], signal.SIGKILL)
    _, meta = checkpoint.load(path)  # the newest checkpoint, whole: written atomically
    saved_updates = meta["num_updates"]
    assert saved_updates > 0

    def respawned() -> dict | None:
        node = run.nodes().get("estimator")
        return node if node and node["pid"] != old["pid"] and node["state"] == "active" else None

    assert wait_for("the estimator to respawn", respawned, deadline_s=60)["restarts"] == old["restarts"] + 1
    wait_for("the estimator to resume", lambda: run.metric_above("estimator", "resumes", 0), deadline_s=60)
    assert (run.metric("estimator", "updates") or 0) >= saved_updates  # warm, not from scratch
    steps_now = run.metric("env", "progress.steps") or 0
    wait_for("the run to go on with the new estimator", lambda: run.metric_above("env", "progress.steps", steps_now),
             deadline_s=60)
    assert run.stop() == 0
    summary = run.summary()
    check_books(summary, None)
    assert summary["launch"]["nodes"]["estimator"]["restarts"] == 1
    assert not any(e["event"] == "checkpoint_refused" for e in run.log_events("estimator"))
