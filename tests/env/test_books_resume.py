"""The env's training books on disk (nodes/env/resume.py): a round trip, and a corrupt newest copy refused by the
checksum with the previous copy used instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.env import resume
from nodes.experiment import Books
from persist_rt.checkpoint import CheckpointError


def _books(steps: int) -> Books:
    return Books(env_steps=steps, executed_steps=steps - 3, fallback_steps=3, shield_interventions=5, episodes=2,
                 lengths=[10, 20], returns=[1.5, -2.0], task_returns=[0.0, 1.0], died=[True, False],
                 homeo_returns=[0.5, 0.25], tokens=[3, 0], deaths={"energy": 1}, drives=[0.25],
                 interventions_per_step=[0, 1, 2])


def test_books_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "env_books.safetensors"
    assert resume.load(path, Books) is None
    resume.save(path, Books(), 0, [])  # empty lists and curve are a valid state
    curve = [(20, 10, 1.5, 0.0, 1.5), (40, 20, -2.0, 1.0, -3.0)]  # (env steps, length, returns...)
    resume.save(path, _books(40), 17, curve)
    books, step, loaded, used, refused = resume.load(path, Books)
    assert books == _books(40) and step == 17 and loaded == curve
    assert used == path and refused == []


def test_a_corrupt_newest_copy_falls_back_to_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "env_books.safetensors"
    resume.save(path, _books(40), 17, [])
    resume.save(path, _books(80), 33, [])
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor
    path.write_bytes(bytes(data))
    books, step, _, used, refused = resume.load(path, Books)
    assert books.env_steps == 40 and step == 17 and used.name == "env_books.prev.safetensors"
    assert len(refused) == 1 and "persist_sha256" in refused[0]
    path.with_name("env_books.prev.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        resume.load(path, Books)
