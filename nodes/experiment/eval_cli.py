"""`persist eval POLICY_FILE`: a policy file through the evaluation phases of the experiment protocol.

It runs ``launch/eval.yaml`` (env, agent holding the policy, shield; no learner): the policy unshielded, a uniform-
random and the scripted baseline on the same seeds, then the policy behind the shield, each one episode per arena.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from persist_rt.checkpoint import CheckpointError
from persist_rt.cli.common import CliError, JsonOpt, print_json
from persist_rt.cli.launch_cmd import new_run_dir
from persist_rt.launch import Overrides, load_launch
from persist_rt.launch.console import LaunchConsole
from persist_rt.launch.supervisor import RunOptions, Supervisor

EVAL_LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "eval.yaml"  # nodes/experiment/ -> the root
PHASES = ("eval", "baseline_random", "baseline_scripted", "eval_shielded")


def check_policy_file(path: Path) -> None:
    """Refuse, naming the argument, a file that is not a policy for GridLife's (fully observed) observation."""
    from nodes.env.gridlife import GridLifeConfig  # numba and friends: only when the command runs
    from nodes.sac.policy_file import load_policy

    if not path.is_file():
        raise CliError(f"argument POLICY_FILE: {path} is not a file")
    try:
        policy = load_policy(path)
    except (CheckpointError, ValueError) as exc:
        raise CliError(f"argument POLICY_FILE: {exc}") from exc
    expected = GridLifeConfig().obs_dim
    if policy.spec.obs_dim != expected or policy.spec.act_dim != 2:
        raise CliError(f"argument POLICY_FILE: the policy maps {policy.spec.obs_dim} observations to "
                       f"{policy.spec.act_dim} actions; GridLife gives {expected} and takes 2 (a policy of another "
                       "env, or of a partially observed one)")


def evaluate(
    policy: Annotated[Path, typer.Argument(help="policy file (safetensors + JSON metadata)")],
    episodes: Annotated[int, typer.Option(min=1, help="episodes per evaluation, one per arena")] = 64,
    seed: Annotated[int, typer.Option(min=0, help="seed of the evaluation arenas")] = 10_000,
    filter_: Annotated[str, typer.Option("--filter", help="shield filter: qp, search, amortised or ensemble")]
    = "qp",
    run_dir: Annotated[Path | None, typer.Option(help="run directory (default runs/<timestamp>)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a policy file on GridLife: unshielded against random and scripted baselines, then shielded."""
    check_policy_file(policy)
    args = {"policy": str(policy.resolve()), "episodes": str(episodes), "seed": str(seed), "filter": filter_}
    spec = load_launch(EVAL_LAUNCH, Overrides(args=args))
    directory = run_dir or new_run_dir()
    if (directory / "summary.json").exists():
        raise CliError(f"--run-dir {directory}: already holds a finished run; choose another directory")
    # with --json the node lines go to stderr, so that stdout is the JSON alone
    console = LaunchConsole(spec.main, Console(highlight=False, soft_wrap=True, stderr=True)) if as_json else None
    code = Supervisor(spec, RunOptions(run_dir=directory), console).run()
    summary = read_summary(directory / "summary.json")
    if code != 0 or not summary.get("complete"):
        raise CliError(f"the evaluation did not complete (exit code {code}); the logs are in {directory}")
    figures = {"run_dir": str(directory), "policy": str(policy), "seed": seed,
               **{phase: summary[phase] for phase in PHASES if phase in summary}}
    if as_json:
        print_json(figures)


def read_summary(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
