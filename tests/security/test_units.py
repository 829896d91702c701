"""Key sets, authority maps and their launch-file fields: bad input is refused with the field and the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq

from persist_rt.launch import LaunchError, load_launch
from persist_rt.security import CLIENT, REGISTRY, KeysError, KeySet, parse_authority


def test_key_set_is_private_and_binds_each_key_to_its_name(tmp_path: Path) -> None:
    where = tmp_path / "keys"
    KeySet.create(where, ["env", "robot1/shield"])
    assert all(p.stat().st_mode & 0o077 == 0 for p in [where, *where.rglob("*")])
    keys = KeySet(where)
    assert keys.has_node("robot1/shield") and not keys.has_node("attached")
    assert keys.public("attached") == keys.public(CLIENT)  # a name without a key of its own is the client's
    assert len({keys.public(n) for n in ("env", "robot1/shield", CLIENT, REGISTRY)}) == 4
    assert keys.name_of(keys.public("env")) == "env"
    assert keys.name_of(zmq.curve_keypair()[0]) is None
    again = KeySet.create(where, ["env", "agent"])  # kept, not replaced: only the new node's key is written
    assert [p.name for p in again] == ["agent.key"] and KeySet(where).public("env") == keys.public("env")


def test_key_set_open_to_others_is_refused(tmp_path: Path) -> None:
    where = tmp_path / "keys"
    KeySet.create(where, ["env"])
    os.chmod(where / "nodes" / "env.key_secret", 0o644)
    with pytest.raises(KeysError, match=r"env\.key_secret is readable by other users"):
        KeySet(where).secret("env")
    os.chmod(where, 0o755)
    with pytest.raises(KeysError, match="open to other users"):
        KeySet(where)


@pytest.mark.parametrize(("value", "reason"), [
    ([1], "must be a map"), ({"": ["a"]}, "non-empty strings"), ({"t": []}, "authority.t: must be a non-empty list"),
    ({"t": [3]}, "authority.t: must be a non-empty list")])
def test_bad_authority_is_refused_by_field(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_authority(value)


def test_launch_file_fields(tmp_path: Path) -> None:
    base = "nodes:\n  - name: talker\n    kind: talker\n"
    path = tmp_path / "l.yaml"
    path.write_text(base + "authority:\n  chatter: [nobody]\n")
    with pytest.raises(LaunchError, match=r"authority\.chatter: no node named 'nobody'"):
        load_launch(path)
    path.write_text(base + "authority:\n  chatter: [talker]\nkeys: k\n")
    with pytest.raises(LaunchError, match=r"keys: .* is not a directory"):
        load_launch(path)
    KeySet.create(tmp_path / "k", [])
    with pytest.raises(LaunchError, match="holds no key for talker"):
        load_launch(path)
    KeySet.create(tmp_path / "k", ["talker"])
    spec = load_launch(path)
    assert spec.authority == {"chatter": ["talker"]} and spec.keys == str((tmp_path / "k").resolve())
    assert load_launch(path).resolved()["authority"] == {"chatter": ["talker"]}


def test_introspection_switch_is_closed_unless_opened(tmp_path: Path) -> None:
    path = tmp_path / "l.yaml"
    base = "nodes:\n  - name: talker\n    kind: talker\n"
    path.write_text(base)
    assert load_launch(path).introspection == "closed" and "introspection" not in load_launch(path).resolved()
    path.write_text(base + "introspection: open\n")
    assert load_launch(path).introspection == "open" and load_launch(path).resolved()["introspection"] == "open"
    path.write_text(base + "introspection: yes please\n")
    with pytest.raises(LaunchError, match=r"introspection: must be `open` or `closed`, got 'yes please'"):
        load_launch(path)
    path.write_text(base + "introspection: true\n")
    with pytest.raises(LaunchError, match="introspection: must be `open` or `closed`, got True"):
        load_launch(path)
