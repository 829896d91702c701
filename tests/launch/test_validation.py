"""Every launch-file error names the file, the line, the field and the reason; nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from persist_rt.launch import LaunchError, Overrides, load_launch
from tests.launch.conftest import HERE, TALKER_LISTENER, persist

PROBE = HERE / "probe_node.py"


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text.lstrip("\n"))
    return path


def error_of(path: Path, overrides: Overrides | None = None) -> LaunchError:
    with pytest.raises(LaunchError) as info:
        load_launch(path, overrides)
    return info.value


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - name: talker
    kind: [talker
""")
    err = error_of(f)
    assert err.file == str(f.resolve()) and err.line == 4
    assert "YAML syntax error" in str(err)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - {name: talker, kind: talker}
nodez: []
""")
    err = error_of(f)
    assert (err.line, err.field) == (3, "nodez")
    assert "unknown key" in err.reason and "nodes" in err.reason


def test_unknown_node_key(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - name: talker
    kind: talker
    respwan: true
""")
    err = error_of(f)
    assert err.line == 4 and err.field == "nodes[0].respwan" and "unknown key" in err.reason


def test_unknown_node_kind(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - name: x
    kind: no_such_kind
""")
    err = error_of(f)
    assert err.line == 3 and err.field == "nodes[0] (x).kind"
    assert "unknown node kind 'no_such_kind'" in err.reason


def test_missing_node_file(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - {name: x, kind: "mine.py:Mine"}
""")
    err = error_of(f)
    assert err.field == "nodes[0] (x).kind" and "does not exist" in err.reason


def test_wrong_parameter_type(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - name: talker
    kind: talker
    params:
      topic: chatter
      rate_hz: fast
""")
    err = error_of(f)
    assert (err.line, err.field) == (6, "nodes[0] (talker).params.rate_hz")
    assert "expected a number, got 'fast'" in err.reason


def test_parameter_out_of_bounds_and_unknown_name(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", "nodes:\n  - {name: talker, kind: talker, params: {rate_hz: -1}}\n")
    assert "must be greater than 0" in error_of(f).reason
    f = write(tmp_path, "bad2.yaml", "nodes:\n  - {name: talker, kind: talker, params: {rate: 3}}\n")
    err = error_of(f)
    assert err.field == "nodes[0] (talker).params.rate"
    assert "has no such parameter (known: rate_hz, topic)" in err.reason


def test_parameter_of_a_user_node_file(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", f"""
nodes:
  - name: job
    kind: {PROBE}:CountingJob
    fallback: explode
""")
    err = error_of(f)
    assert err.line == 4 and err.field == "nodes[0] (job).params.fallback"
    assert "'explode' is not one of ['hold', 'zero']" in err.reason


def test_missing_required_argument(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
args:
  rate: {doc: "no default: required"}
nodes:
  - {name: talker, kind: talker, params: {rate_hz: $(arg rate)}}
""")
    err = error_of(f)
    assert (err.line, err.field) == (2, "args.rate")
    assert "required argument not given" in err.reason
    assert load_launch(f, Overrides(args={"rate": "4"})).node("talker").params["rate_hz"] == 4.0


def test_unknown_argument_given_and_used(tmp_path: Path) -> None:
    err = error_of(TALKER_LISTENER, Overrides(args={"speed": "3"}))
    assert err.field == "args.speed" and "unknown launch argument" in err.reason
    f = write(tmp_path, "bad.yaml", "nodes:\n  - {name: talker, kind: talker, params: {rate_hz: $(arg rate)}}\n")
    err = error_of(f)
    assert err.line == 2 and "$(arg rate): unknown launch argument" in err.reason


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "nodes:\n  - {name: talker, kind: talker}\n  - include: b.yaml\n")
    write(tmp_path, "b.yaml", "nodes:\n  - {name: listener, kind: listener}\n  - include: a.yaml\n")
    err = error_of(tmp_path / "a.yaml")
    assert err.file == str((tmp_path / "b.yaml").resolve()) and err.line == 3
    assert err.field == "nodes[1].include" and "include cycle: a.yaml -> b.yaml -> a.yaml" in err.reason


def test_duplicate_node_name(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", """
nodes:
  - {name: talker, kind: talker}
  - {name: listener, kind: listener}
  - name: talker
    kind: listener
""")
    err = error_of(f)
    assert (err.line, err.field) == (4, "nodes[2] (talker).name")
    assert "duplicate node name 'talker' (first declared at" in err.reason


def test_other_field_errors(tmp_path: Path) -> None:
    cases = {
        "nodes:\n  - {kind: talker}\n": ("nodes[0].name", "missing"),
        "nodes:\n  - {name: t, kind: talker, qos: {chatter: fast}}\n": ("nodes[0] (t).qos.chatter", "cannot parse"),
        "nodes:\n  - {name: t, kind: talker, depends_on: [nobody]}\n": ("nodes[0] (t).depends_on", "no node named"),
        "nodes:\n  - {name: t, kind: talker, respawn: {max_restarts: -1}}\n": ("nodes[0] (t).respawn.max_restarts",
                                                                               "integer >= 0"),
        "nodes:\n  - {name: 9t, kind: talker}\n": ("nodes[0].name", "not a valid node name"),
        "nodes: []\n": ("nodes", "declares no nodes"),
        "main: nobody\nnodes:\n  - {name: t, kind: talker}\n": ("main", "no node named 'nobody'"),
        "nodes:\n  - {name: t, kind: talker, busy_poll_us: -1}\n": ("nodes[0] (t).busy_poll_us", "within [0, 10000]"),
        "nodes:\n  - {name: t, kind: talker, busy_poll_us: .nan}\n": ("nodes[0] (t).busy_poll_us", "got nan"),
        "nodes:\n  - {name: t, kind: talker, busy_poll_us: 20000}\n": ("nodes[0] (t).busy_poll_us", "within"),
        "nodes:\n  - {name: t, kind: talker, busy_poll_us: fast}\n": ("nodes[0] (t).busy_poll_us", "a number"),
        "nodes:\n  - {name: t, kind: talker, start_timeout: .nan}\n": ("nodes[0] (t).start_timeout", ">= 0.1"),
        f"nodes:\n  - {{name: t, kind: talker, start_timeout: {'9' * 400}}}\n": ("nodes[0] (t).start_timeout",
                                                                                 "expected a number >= 0.1"),
    }
    for i, (text, (field, reason)) in enumerate(cases.items()):
        err = error_of(write(tmp_path, f"case{i}.yaml", text))
        assert err.field == field and reason in err.reason, (text, str(err))


def test_set_override_is_checked(tmp_path: Path) -> None:
    err = error_of(TALKER_LISTENER, Overrides(sets={"talker.rate_hz": "x"}))
    assert err.field == "--set talker.rate_hz" and "expected a number" in err.reason
    err = error_of(TALKER_LISTENER, Overrides(sets={"nobody.rate_hz": "3"}))
    assert "no node named 'nobody'" in err.reason


def test_everything_resolves(tmp_path: Path) -> None:
    write(tmp_path, "pair.yaml", """
args:
  rate: 1.0
  topic: chatter
nodes:
  - {name: talker, kind: talker, params: {rate_hz: $(arg rate), topic: $(arg topic)}}
  - name: listener
    kind: listener
    depends_on: [talker]
    params: {topic: $(arg topic)}
    qos: {chatter: latest}
""")
    f = write(tmp_path, "top.yaml", f"""
args:
  robots: 2
env: {{SHARED: "1"}}
main: job
nodes:
  - name: job
    kind: {PROBE}:CountingJob
    fallback: zero
    busy_poll_us: 300
    respawn: {{backoff: 0.2, max_restarts: 3, window: 10}}
    env: {{ONLY_JOB: "yes"}}
  - group:
      namespace: robot1
      nodes:
        - include: pair.yaml
          args: {{rate: 7, topic: "talk_$(arg robots)"}}
  - name: probe
    kind: {PROBE}:Probe
    remaps: {{chatter: robot1/talk_2}}
    depends_on: [/robot1/talker]
""")
    spec = load_launch(f, Overrides(seed=5, steps=40))
    assert [n.name for n in spec.nodes] == ["job", "robot1/talker", "robot1/listener", "probe"]
    job = spec.node("job")
    assert job.params == {"fallback": "zero", "seed": 5, "total_steps": 40}
    assert job.respawn.enabled and job.respawn.backoff_s == 0.2 and job.respawn.max_restarts == 3
    assert job.env == {"SHARED": "1", "ONLY_JOB": "yes"}
    assert job.busy_poll_us == 300.0 and spec.node("probe").busy_poll_us == 0.0
    talker = spec.node("robot1/talker")
    assert talker.namespace == "robot1" and talker.params == {"rate_hz": 7.0, "topic": "talk_2"}
    assert spec.node("robot1/listener").qos == {"chatter": "latest"}
    assert spec.node("robot1/listener").depends_on == ["robot1/talker"]
    assert spec.node("probe").remaps == {"chatter": "robot1/talk_2"}
    assert spec.main == "job"
    # the resolved form loads again and means the same
    again = tmp_path / "again.yaml"
    import yaml

    again.write_text(yaml.safe_dump(spec.resolved(), sort_keys=False))
    spec2 = load_launch(again)
    assert [n.to_dict() | {"source": ""} for n in spec2.nodes] == [n.to_dict() | {"source": ""} for n in spec.nodes]


def test_cli_reports_a_bad_file_without_traceback(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", "nodes:\n  - name: talker\n    kind: talker\n    params: {rate_hz: fast}\n")
    out = persist("launch", str(f), "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{f.resolve()}:4: nodes[0] (talker).params.rate_hz: expected a number" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "run").exists()  # nothing started


def test_cli_rejects_bad_arguments_by_name(tmp_path: Path) -> None:
    out = persist("launch", str(TALKER_LISTENER), "--arg", "novalue", cwd=tmp_path)
    assert out.returncode == 2 and "--arg" in out.stderr and "expected NAME=VALUE" in out.stderr
    out = persist("launch", str(TALKER_LISTENER), "--seed", "minus", cwd=tmp_path)
    assert out.returncode == 2 and "--seed" in out.stderr
    out = persist("attach", "probe.py", "--busy-poll-us", "-1", cwd=tmp_path)
    assert out.returncode == 2 and "--busy-poll-us" in out.stderr
    out = persist("node", "list", cwd=tmp_path, env={"PERSIST_REGISTRY": ""})
    assert out.returncode == 1 and "no live system found" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_learners_sac_config_is_checked_field_by_field(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", "nodes:\n  - {name: learner, kind: learner, params: {sac: {tau: 2}}}\n")
    err = error_of(f)
    assert err.field == "nodes[0] (learner).params.sac" and "sac.tau: must be in (0, 1]" in err.reason
    f = write(tmp_path, "bad2.yaml", "nodes:\n  - {name: learner, kind: learner, params: {sac: {tua: 0.1}}}\n")
    assert "sac.tua: is not known" in error_of(f).reason
    f = write(tmp_path, "bad3.yaml", "nodes:\n  - {name: learner, kind: learner, params: {cvar_sac: {cvar_alpha: 0}}}\n")
    assert "cvar_sac.cvar_alpha: must be in (0, 1]" in error_of(f).reason
    f = write(tmp_path, "bad4.yaml", "nodes:\n  - {name: learner, kind: learner, params: {sac: {seed: 3}}}\n")
    assert "sac.seed: is the learner's own parameter `seed`" in error_of(f).reason
    single = HERE.parent.parent / "launch" / "single_agent.yaml"
    err = error_of(single, Overrides(sets={"learner.sac.tau": "0"}))
    assert err.field == "--set learner.sac" and "sac.tau: must be in (0, 1]" in err.reason


def test_set_changes_one_field_of_the_sac_config(tmp_path: Path) -> None:
    single = HERE.parent.parent / "launch" / "single_agent.yaml"
    spec = load_launch(single, Overrides(sets={"learner.sac.batch_size": "64", "learner.sac.hidden": "[32, 32]"}))
    assert spec.node("learner").params["sac"] == {"utd_ratio": 0.25, "gamma": 0.98, "batch_size": 64,
                                                  "hidden": [32, 32]}
