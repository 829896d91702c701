"""`persist eval POLICY_FILE`: a policy file through the evaluation phases alone, as a real graph."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from nodes.env.gridlife import GridLifeConfig
from nodes.sac.policy_file import save_policy
from tests.sac.test_policy_file import SPEC, make_policy

PHASES = ("eval", "baseline_random", "baseline_scripted", "eval_shielded")


def persist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "persist_rt.cli", *args], capture_output=True, text=True,
                          timeout=240)


def test_eval_runs_the_policy_and_both_baselines_on_the_same_arenas(tmp_path: Path) -> None:
    policy = save_policy(tmp_path / "policy.safetensors",
                         make_policy(dataclasses.replace(SPEC, obs_dim=GridLifeConfig().obs_dim)))
    done = persist("eval", str(policy), "--episodes", "4", "--seed", "77", "--run-dir", str(tmp_path / "run"),
                   "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)  # stdout is the JSON alone: the node lines went to stderr
    assert set(PHASES) <= set(figures)
    assert {figures[p]["seed"] for p in PHASES} == {77}
    assert len({figures[p]["start_digest"] for p in PHASES}) == 1  # every phase on the same arenas
    assert all(figures[p]["episodes"] == 4 for p in PHASES)
    assert figures["eval_shielded"]["violations"] == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["complete"] is True and summary["env_steps"] == 0  # nothing was trained
    assert not (tmp_path / "run" / "checkpoints" / "learner.safetensors").exists()


def test_eval_refuses_a_policy_of_another_observation_naming_the_argument(tmp_path: Path) -> None:
    other = save_policy(tmp_path / "other.safetensors", make_policy())  # 24 observations, GridLife gives 25
    done = persist("eval", str(other), "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 1
    assert "argument POLICY_FILE: the policy maps 24 observations" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything started
    missing = persist("eval", str(tmp_path / "absent.safetensors"))
    assert missing.returncode == 1 and "is not a file" in missing.stderr
