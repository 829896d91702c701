"""`persist new`: driven by flags alone, and interactively through stdin."""

from __future__ import annotations

from pathlib import Path

from persist_rt.cli.wizard import template_choices
from persist_rt.launch import Overrides, load_launch
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


MAIN_JOB = HERE.parents[1] / "launch" / "single_agent.yaml"


def test_custom_with_every_default_is_the_main_job(tmp_path: Path) -> None:
    out_file = tmp_path / "exp.yaml"
    out = persist("new", "--yes", "--template", "custom", "-o", str(out_file), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    custom, main = load_launch(out_file), load_launch(MAIN_JOB)
    assert (custom.main, custom.progress_fields) == (main.main, main.progress_fields)
    assert sorted(n.name for n in custom.nodes) == sorted(n.name for n in main.nodes)
    for node in main.nodes:
        mine = custom.node(node.name)
        assert (mine.kind, mine.params, mine.respawn, mine.depends_on, mine.busy_poll_us) == \
            (node.kind, node.params, node.respawn, node.depends_on, node.busy_poll_us), node.name
    env = custom.node("env").params
    assert env["total_steps"] == 300_000 and env["fallback"] == "backup" and env["lambda_homeo"] > 0


def test_custom_changes_only_what_is_picked(tmp_path: Path) -> None:
    out_file = tmp_path / "exp.yaml"
    out = persist("new", "-y", "-t", "custom", "--features", "env,agent,learner,estimator", "--steps", "5000",
                  "-o", str(out_file), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    custom, main = load_launch(out_file), load_launch(MAIN_JOB, Overrides(args={"partial_observability": "true"}))
    assert sorted(n.name for n in custom.nodes) == ["agent", "env", "estimator", "learner"]
    env, main_env = custom.node("env").params, main.node("env").params
    assert env["wait_for"] == ["agent"] and env["total_steps"] == 5000  # no shield to wait for; the budget picked
    assert {k: v for k, v in env.items() if k not in ("wait_for", "total_steps")} == \
        {k: v for k, v in main_env.items() if k != "total_steps"}
    assert env["config"]["partial_observability"] and custom.node("agent").params["use_estimate"]
    assert custom.node("env").depends_on == ["agent", "learner"]  # the shield it depended on is left out
    assert custom.node("learner").respawn == main.node("learner").respawn
