"""Node kinds: a user's file names its node class, or holds exactly one (a subclass of a built-in counts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.examples import Listener
from persist_rt.kinds import KindError, load_kind
from persist_rt.launch import LaunchError, load_launch

HERE = Path(__file__).parent


def test_subclass_of_a_builtin_kind_is_found_without_its_name(tmp_path: Path) -> None:
    f = tmp_path / "mine.py"
    f.write_text("from nodes.examples import Listener\n\nclass Quiet(Listener):\n    pass\n")
    cls = load_kind(str(f))
    assert cls.__name__ == "Quiet" and issubclass(cls, Listener)


def test_a_local_base_is_not_a_second_candidate(tmp_path: Path) -> None:
    f = tmp_path / "layered.py"
    f.write_text("from persist_rt import Node\n\nclass Base(Node):\n    pass\n\nclass Leaf(Base):\n    pass\n")
    assert load_kind(str(f)).__name__ == "Leaf"


def test_two_node_classes_must_be_named(tmp_path: Path) -> None:
    f = tmp_path / "two.py"
    f.write_text("from persist_rt import Node\n\nclass A(Node):\n    pass\n\nclass B(Node):\n    pass\n")
    with pytest.raises(KindError, match=r"expected exactly one Node class .* found \['A', 'B'\]"):
        load_kind(str(f))
    assert load_kind(f"{f}:B").__name__ == "B"


def test_imported_node_classes_do_not_count(tmp_path: Path) -> None:
    f = tmp_path / "none.py"
    f.write_text("from nodes.examples import Listener, Talker  # noqa: F401\n")
    with pytest.raises(KindError, match="found none"):
        load_kind(str(f))


def test_launch_file_takes_a_bare_file_kind(tmp_path: Path) -> None:
    launch = tmp_path / "user.yaml"
    launch.write_text(f"nodes:\n  - {{name: probe, kind: {HERE / 'probe_subclass.py'}}}\n")
    assert load_launch(launch).nodes[0].kind.endswith("probe_subclass.py")
    missing = tmp_path / "missing.yaml"
    missing.write_text("nodes:\n  - {name: x, kind: nowhere.py}\n")
    with pytest.raises(LaunchError, match="does not exist"):
        load_launch(missing)
