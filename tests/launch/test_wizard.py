"""`persist new`: driven by flags alone, and interactively through stdin."""

from __future__ import annotations

from pathlib import Path

from persist_rt.cli.wizard import template_choices
from persist_rt.launch import load_launch
from tests.launch.conftest import HERE, TALKER_LISTENER, persist

COUNTING = HERE / "files" / "counting.yaml"


def test_flags_only_custom(tmp_path: Path) -> None:
    out_file = tmp_path / "exp.yaml"
    out = persist("new", "--yes", "--template", "custom", "--features", "example", "-o", str(out_file), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    spec = load_launch(out_file)
    assert [n.name for n in spec.nodes] == ["talker", "listener"]
    assert spec.node("listener").depends_on == ["talker"]


def test_flags_only_from_file_with_knobs(tmp_path: Path) -> None:
    out_file = tmp_path / "exp.yaml"
    out = persist("new", "-y", "-t", "from-file", "--from", str(COUNTING), "--steps", "250", "--seed", "9",
                  "-o", str(out_file), "--no-launch", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    spec = load_launch(out_file)
    assert spec.main == "job" and spec.node("job").params == {"total_steps": 250, "seed": 9}
    assert "actor learning rate: unavailable" in out.stdout


def test_flags_are_checked(tmp_path: Path) -> None:
    out = persist("new", "-y", "-t", "from-file", "--from", str(TALKER_LISTENER), "--actor-lr", "0.1", cwd=tmp_path)
    assert out.returncode == 2 and "--actor-lr" in out.stderr and "no node of this experiment" in out.stderr
    out = persist("new", "-y", "-t", "from-file", "--from", str(COUNTING), "--steps", "0", cwd=tmp_path)
    assert out.returncode == 2 and "--steps" in out.stderr
    out = persist("new", "-y", "-t", "nonsense", cwd=tmp_path)
    assert out.returncode == 2 and "unknown experiment 'nonsense'" in out.stderr
    assert not list(tmp_path.glob("*.yaml"))


def test_unavailable_choice_is_shown_not_faked(tmp_path: Path) -> None:
    unavailable = [c for c in template_choices() if c.problem]
    assert unavailable, "every experiment is available: nothing left to check here"
    key, problem = unavailable[0].template.key, unavailable[0].problem
    out = persist("new", "-y", "-t", key, cwd=tmp_path)
    assert out.returncode == 1 and f"--template {key}: unavailable: {problem}" in out.stderr.replace("\n", "")
    # interactively it is listed, marked unavailable, and refused when picked
    out = persist("new", "-o", str(tmp_path / "e.yaml"), cwd=tmp_path, input=f"{key}\n")
    assert f"{key}: {unavailable[0].template.title}" in out.stdout and "(unavailable:" in out.stdout
    assert f"{key} is unavailable" in out.stdout + out.stderr
    assert out.returncode != 0 and not (tmp_path / "e.yaml").exists()


def test_interactive_through_stdin(tmp_path: Path) -> None:
    out_file = tmp_path / "mine.yaml"
    # experiment, base file, knobs (steps: 500, seed: keep), where to write, confirm, do not launch
    answers = f"from-file\n{COUNTING}\n500\n\n{out_file}\ny\nn\n"
    out = persist("new", cwd=tmp_path, input=answers)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Final configuration" in out.stdout and "total_steps: 500" in out.stdout
    spec = load_launch(out_file)
    assert spec.node("job").params == {"total_steps": 500, "seed": 0}
