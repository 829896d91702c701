"""Checkpoint files carry a digest: a truncated or bit-flipped file is refused by name, the previous one is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as raw_save

from persist_rt import checkpoint
from persist_rt.checkpoint import CheckpointError

TENSORS = {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(8, np.float32)}


def write(path: Path, version: int) -> Path:
    return checkpoint.save(path, {k: v + version for k, v in TENSORS.items()}, {"format": "t", "version": version},
                           keep_previous=True)


def flip(path: Path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


def test_round_trip_and_a_flipped_tensor_bit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.safetensors", 1)
    tensors, meta = checkpoint.load(path)
    assert meta["version"] == 1 and np.array_equal(tensors["w"], TENSORS["w"] + 1)
    flip(path, 5)  # inside the last tensor's bytes
    with pytest.raises(CheckpointError, match=r"persist_sha256.*corrupt"):
        checkpoint.load(path)


def test_a_changed_metadata_value_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "a.safetensors", 1)
    data = path.read_bytes()
    assert data.count(b'\\"version\\": 1') == 1  # the metadata is a JSON string inside the header
    path.write_bytes(data.replace(b'\\"version\\": 1', b'\\"version\\": 7'))
    with pytest.raises(CheckpointError, match="persist_sha256"):
        checkpoint.load(path)


@pytest.mark.parametrize("keep", [0, 7, 100, 400])
def test_a_truncated_file_is_refused(tmp_path: Path, keep: int) -> None:
    path = write(tmp_path / "a.safetensors", 1)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint.load(path)


def test_a_file_without_a_digest_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.safetensors"
    path.write_bytes(raw_save(TENSORS, metadata={"persist": json.dumps({"format": "t"})}))
    tensors, meta = checkpoint.load(path)
    assert meta == {"format": "t"} and np.array_equal(tensors["b"], TENSORS["b"])


def test_load_newest_falls_back_to_the_previous_file_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "learner.safetensors"
    assert checkpoint.load_newest(path, checkpoint.load) is None  # nothing written yet
    write(path, 1)
    write(path, 2)
    prev = checkpoint.previous_path(path)
    assert prev.name == "learner.prev.safetensors" and checkpoint.load(prev)[1]["version"] == 1
    (_, meta), used, refusals = checkpoint.load_newest(path, checkpoint.load)
    assert used == path and meta["version"] == 2 and refusals == []
    flip(path, 3)
    (_, meta), used, refusals = checkpoint.load_newest(path, checkpoint.load)
    assert used == prev and meta["version"] == 1 and len(refusals) == 1 and "corrupt" in refusals[0]
    path.write_bytes(path.read_bytes()[:50])
    flip(prev, 3)
    with pytest.raises(CheckpointError, match=r"learner\.safetensors.*; .*learner\.prev\.safetensors"):
        checkpoint.load_newest(path, checkpoint.load)
