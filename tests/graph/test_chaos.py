"""Chaos: kill -9 of the env, agent, learner, shield, estimator, telemetry and the registry, in turn at seeded random
times, during one partially observed training run of the single-agent graph (so that the estimator runs). The run completes, executes no violation, its books stay
consistent, every restart is counted, the env resumes its books and the learner its replay buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.graph.chaos import VICTIMS, chaos, check
from tests.graph.conftest import LiveRun


@pytest.mark.timeout(400)  # seven kills and respawns, each a Python process start (the learner's imports torch)
def test_every_process_killed_in_turn(tmp_path: Path, launched: list[LiveRun],
                                      record_property: pytest.RecordProperty) -> None:
    result = chaos(tmp_path, seed=25)
    launched.append(result.run)
    result.run.wait_exit()
    figures = check(result)
    assert figures["summary"]["launch"]["main_exit_code"] == 0  # the env ended its run (evaluations included)
    for key in ("kills", "restarts", "violations_executed", "books_consistent"):
        record_property(key, figures[key])
    assert figures["complete"], figures["summary"]["launch"]["reason"]
    assert figures["violations_executed"] == 0
    assert figures["books_consistent"]
    assert figures["kills"] == len(VICTIMS)
    assert {v: figures["restarts_by_node"][v] for v in VICTIMS} == dict.fromkeys(VICTIMS, 1)
    assert figures["restarts"] == len(VICTIMS)
    assert figures["env_books_resumed"] == 1  # the respawned env carried on with the run's books...
    env_kill = next(k for k in result.kills if k.victim == "env")
    assert figures["summary"]["env_steps"] > env_kill.at_steps  # ...and went on from them
    assert figures["learner_replay_resumed"] == 1  # the respawned learner loaded its replay buffer
