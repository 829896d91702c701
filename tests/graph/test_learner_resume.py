"""A learner resumes from its newest good checkpoint and replay file; a corrupt one is refused, the previous used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nodes.learner.node import LearnerNode
from tests.graph.test_learner_staging import transitions

PARAMS = {"sac": {"learning_starts": 20, "batch_size": 8, "utd_ratio": 1.0, "hidden": [16, 16]}, "device": "cpu",
          "stage_rows": 4, "checkpoint_every_s": 0}


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[LearnerNode]]:
    made: list[LearnerNode] = []
    yield made
    for node in made:
        node.close()


def learner(run_dir: Path, made: list[LearnerNode]) -> LearnerNode:
    node = LearnerNode("learner", params=PARAMS, run_dir=run_dir)
    node.transition("inactive")
    made.append(node)
    return node


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one_with_its_replay(
        tmp_path: Path, nodes: list[LearnerNode]) -> None:
    first = learner(tmp_path, nodes)
    for step in range(30):
        first.on_transitions(transitions(step))
    first.save_checkpoint()  # 30 rows, 11 updates: becomes the previous copy
    older = (first.algo.num_updates, len(first.replay))
    for step in range(30, 40):
        first.on_transitions(transitions(step))
    first.save_checkpoint()
    ckpt = tmp_path / "checkpoints" / "learner.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-9] ^= 0x01  # one flipped bit in the newest checkpoint's tensors
    ckpt.write_bytes(bytes(data))
    replay = tmp_path / "checkpoints" / "replay.safetensors"
    replay.write_bytes(replay.read_bytes()[:1000])  # and a torn replay file

    second = learner(tmp_path, nodes)
    second.on_transitions(transitions(40))  # the first batch builds the learner, which resumes
    assert second.counters["checkpoint_fallbacks"] == 1 and second.counters["replay_fallbacks"] == 1
    assert second.counters["resumes"] == 1
    assert second.transitions_seen == 31 and len(second.replay) + second.staged_rows == older[1] + 1
    assert second.algo.num_updates >= older[0]
    events = [line for line in (tmp_path / "logs" / "learner.jsonl").read_text().splitlines()
              if "checkpoint_fallback" in line]
    assert len(events) == 1 and "persist_sha256" in events[0] and "learner.prev.safetensors" in events[0]


def test_every_copy_corrupt_starts_afresh_and_says_so(tmp_path: Path, nodes: list[LearnerNode]) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("learner.safetensors", "learner.prev.safetensors", "replay.safetensors"):
        (folder / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    node = learner(tmp_path, nodes)
    node.on_transitions(transitions(0))
    assert node.counters["checkpoint_unusable"] == 1 and node.counters["replay_unusable"] == 1
    assert "resumes" not in node.counters and node.transitions_seen == 1
