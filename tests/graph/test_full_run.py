"""A short full run of the single-agent graph: train, evaluate, write the books, exit 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nodes.sac.inference import make_inference_actor
from nodes.sac.policy_file import load_policy
from nodes.telemetry.history import load_history
from persist_rt import checkpoint
from tests.graph.conftest import LiveRun, launch_single_agent, read_reports

SUMMARY_KEYS = {"run_id", "seed", "wall_s", "env_steps", "episodes", "episode_cap", "env_steps_per_s",
                "train", "eval", "eval_shielded", "baseline_random", "baseline_scripted"}
# what was learned: the task apart from staying alive, for the policy and both baselines on the same arenas
TASK_KEYS = {"tokens", "tokens_per_1000_steps", "mean_task_return", "mean_homeo_return", "seed", "start_digest"}
SECTION_KEYS = {
    "train": {"violations_executed", "shield_interventions", "fallback_steps", "executed_steps",
              "mean_survival_steps", "intervention_rate_first_10pct", "intervention_rate_last_10pct"},
    "eval": {"episodes", "mean_survival_steps", "survival_rate", "mean_return", "mean_drive", "violations",
             "deaths"},
    "eval_shielded": {"episodes", "mean_survival_steps", "mean_return", "interventions_per_step", "violations"},
    "baseline_random": {"mean_survival_steps", "survival_rate", "mean_return", "deaths"},
    "baseline_scripted": {"mean_survival_steps", "survival_rate", "mean_return", "deaths"},
}
UNSHIELDED = ("eval", "baseline_random", "baseline_scripted")
PANELS = {"intervention_rate", "task_return", "homeo_return", "train_survival", "eval_mean_survival_steps",
          "eval_tokens_per_1000_steps"}
REPORT_KEYS = {"step", "arena", "mode", "cause", "constraint", "margin_before", "margin_after", "proposed", "safe"}
STEPS = 2000


def test_short_run_trains_evaluates_and_keeps_consistent_books(tmp_path: Path, launched: list[LiveRun]) -> None:
    # 16 selection episodes per kept policy (the launch file's 64 take most of this test's time)
    run = launch_single_agent(tmp_path, "--arg", f"steps={STEPS}", "--set", "env.select_episodes=16")
    launched.append(run)
    assert run.wait_exit() == 0
    summary = run.summary()

    assert SUMMARY_KEYS <= set(summary), SUMMARY_KEYS - set(summary)
    for section, keys in SECTION_KEYS.items():
        assert keys <= set(summary[section]), (section, keys - set(summary[section]))
    assert summary["complete"] is True and summary["launch"]["exit_code"] == 0
    assert summary["env_steps"] == STEPS and summary["run_id"] == run.run_dir.name
    train = summary["train"]
    assert train["executed_steps"] + train["fallback_steps"] == summary["env_steps"]
    assert summary["eval"]["episodes"] == summary["eval_shielded"]["episodes"] == 2
    for section in UNSHIELDED:
        books = summary[section]
        assert TASK_KEYS <= set(books), (section, TASK_KEYS - set(books))
        # the tokens counted are the task reward summed (token_reward 1), per 1000 of the steps lived
        assert abs(books["tokens"] - books["mean_task_return"] * books["episodes"]) <= 1e-3 * books["episodes"]
        steps = books["mean_survival_steps"] * books["episodes"]
        assert abs(books["tokens_per_1000_steps"] - 1000 * books["tokens"] / steps) <= 1e-3
    # the scripted keeper and the random policy ran on the policy's arenas: same seed, same first observation
    assert len({(summary[s]["seed"], summary[s]["start_digest"], summary[s]["episodes"]) for s in UNSHIELDED}) == 1
    assert abs(train["tokens"] - train["mean_task_return"] * summary["episodes"]) <= 1e-3 * summary["episodes"]
    # the report shows the three side by side, one row each with the same columns
    env_lines = [line.partition("|")[2].split() for line in run.output().splitlines() if line.split()[:2] == ["env", "|"]]
    rows = [words for words in env_lines if words[:1] in (["eval"], ["baseline_random"], ["baseline_scripted"])]
    assert [r[0] for r in rows] == list(UNSHIELDED) and len({len(r) for r in rows}) == 1
    assert rows[2][3] == str(summary["baseline_scripted"]["tokens_per_1000_steps"])
    for section in (*UNSHIELDED, "eval_shielded"):  # every death named by what it broke
        books = summary[section]
        assert sum(books["deaths"].values()) == round(books["episodes"] * (1 - books.get("survival_rate", 1)))

    # transitions reached the learner, and its weights came back to the agent
    history = load_history(run.run_dir / "metrics.jsonl")
    assert history[("learner", "transitions_seen")].v[-1] > 0
    assert history[("learner", "updates")].v[-1] > 0
    assert history[("agent", "policy_version")].v[-1] > 0
    # the policies the agent kept ran on the selection's seeds, and the evaluations used the longest-lived one
    select = summary["select"]
    survival = {c["version"]: c["mean_survival_steps"] for c in select["candidates"]}
    assert survival and survival[select["chosen_version"]] == max(survival.values())
    longest = [c for c in select["candidates"] if c["mean_survival_steps"] == max(survival.values())]
    chosen = next(c for c in longest if c["version"] == select["chosen_version"])
    assert chosen["violations"] == min(c["violations"] for c in longest)  # a tie goes to the safer policy
    agent_log = [json.loads(line) for line in (run.run_dir / "logs" / "agent.jsonl").read_text().splitlines()]
    installed = [e["new_version"] for e in agent_log if e.get("event") == "policy_installed"]
    assert installed[-1] == select["chosen_version"]  # the last switch, before the evaluations
    # the selected policy is a file to take away, in the format the agent loads and `persist policy swap` takes
    policy = load_policy(run.run_dir / "policy.safetensors")
    assert policy.version == select["chosen_version"]
    obs = np.zeros((3, policy.spec.obs_dim), np.float32)
    assert np.abs(make_inference_actor(policy).act(obs, deterministic=True)).max() <= 1.0
    # the gatekeeper's counts are in the metric history; with every first state certified, none went uncertified
    assert ("shield", "gatekeeper.backup") in history
    assert history[("shield", "gatekeeper.uncertified")].v[-1] == 0
    # written at shutdown; the stream's tail still in flight when the env finished may be missing
    _, meta = checkpoint.load(run.run_dir / "checkpoints" / "learner.safetensors")
    assert meta["format"] == "persist.sac" and 0 < meta["extra"]["transitions_seen"] <= STEPS

    # a violation in an unshielded evaluation is what it measures: the env's log file keeps each one (and the
    # summary counts them), the console shows only those of shielded phases, where one is a safety failure
    unshielded = [e for e in run.log_events("env") if e.get("event") == "violation_executed"
                  and e["phase"] in ("select", *UNSHIELDED)]
    counted = sum(c["violations"] for c in select["candidates"]) + sum(summary[s]["violations"] for s in UNSHIELDED)
    assert sum(e["arenas"] for e in unshielded) == counted
    assert {e["level"] for e in unshielded} <= {"debug"}
    assert "phase phase=baseline_random" in run.output()  # the env's console lines are in this output...
    assert not any(f"violation_executed step={e['step']} " in run.output() for e in unshielded)  # ...but not these

    assert (run.run_dir / "learning_curve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # the plot's panels, as handed to it: every one has data, and the evaluations stand against both baselines
    panels = json.loads((run.run_dir / "learning_curve.json").read_text())
    assert set(panels) == PANELS
    for name, panel in panels.items():
        assert panel["series"] and all(s["y"] for s in panel["series"]), name
    assert sum(len(s["y"]) for s in panels["task_return"]["series"]) == summary["episodes"]
    rate = panels["intervention_rate"]["series"][0]
    assert rate["x"][-1] == STEPS and max(rate["y"]) > 0
    for key in ("mean_survival_steps", "tokens_per_1000_steps"):
        series = {s["label"]: s for s in panels[f"eval_{key}"]["series"]}
        assert series["random"]["y"] == [summary["baseline_random"][key]]
        assert series["scripted"]["y"] == [summary["baseline_scripted"][key]]
        assert series["evaluated policy (eval seeds)"]["y"] == [summary["eval"][key]]
        assert len(series["kept policies (selection seeds)"]["x"]) == len(select["candidates"])
    reports = read_reports(run)
    assert reports, "a shield that filters GridLife proposals for 2000 steps intervenes at least once"
    for report in reports:
        assert REPORT_KEYS <= set(report), REPORT_KEYS - set(report)
