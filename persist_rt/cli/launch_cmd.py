"""`persist launch FILE`: validate a launch file, then start and supervise the graph."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from persist_rt.cli.common import RUNS_DIR, CliError, console, parse_pairs
from persist_rt.launch import Overrides, load_launch
from persist_rt.launch.supervisor import RunOptions, Supervisor


def new_run_dir(base: Path = RUNS_DIR) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = base / stamp, 1
    while path.exists():
        path, n = base / f"{stamp}-{n}", n + 1
    return path


def launch(
    file: Annotated[Path, typer.Argument(help="launch file (YAML)")],
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", metavar="NAME=VALUE",
                                                  help="launch argument (repeatable)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", metavar="NODE.PARAM=VALUE",
                                                   help="override one node parameter (repeatable)")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="run directory (default runs/<timestamp>)")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="seed for every node that has a `seed` parameter")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="budget: `total_steps` of every node that has one")] = None,
    duration: Annotated[float | None, typer.Option(min=0.1, help="stop the run after this many seconds")] = None,
    check: Annotated[bool, typer.Option("--check", help="validate and print the resolved launch file; start nothing")]
    = False,
) -> None:
    """Start a graph from a launch file and supervise it until the main job ends or Ctrl-C."""
    overrides = Overrides(args=parse_pairs(arg, "--arg"), sets=parse_pairs(set_, "--set"), seed=seed, steps=steps)
    spec = load_launch(file, overrides)
    if check:
        print(yaml.safe_dump(spec.resolved(), sort_keys=False), end="")
        console.print(f"[green]{file}: OK[/green] ({len(spec.nodes)} nodes)")
        return
    directory = run_dir or new_run_dir()
    if (directory / "registry").exists() and (directory / "summary.json").exists():
        raise CliError(f"--run-dir {directory}: already holds a finished run; choose another directory")
    code = Supervisor(spec, RunOptions(run_dir=directory, duration_s=duration)).run()
    raise typer.Exit(code)
