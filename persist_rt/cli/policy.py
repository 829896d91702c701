"""`persist policy`: which policy acts in a live agent, saving it to a file, swapping it by hand, and going back to a
kept one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from persist_rt.cli.common import CliError, Graph, JsonOpt, RegistryOpt, console, print_json

app = typer.Typer(help="Policies of live agent nodes.", no_args_is_help=True)


@app.command("show")
def show(node: Annotated[str, typer.Argument(help="agent node name")], registry: RegistryOpt = None,
         as_json: JsonOpt = False) -> None:
    """Which policy (version, source, mode) the agent is acting with."""
    info = Graph(registry).node_call(node, "policy.show")
    if as_json:
        print_json(info)
        return
    console.print(f"{node}: version {info.get('version')} from {info.get('source')} (mode {info.get('mode')})")
    if info.get("kept"):
        console.print(f"  kept versions: {', '.join(str(v) for v in info['kept'])}")


@app.command("save")
def save(node: Annotated[str, typer.Argument(help="agent node name")],
         file: Annotated[Path, typer.Argument(help="policy file to write (safetensors + JSON metadata)")],
         registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Write the policy a running agent acts with to FILE, in the format `persist policy swap` loads."""
    target = file.resolve()
    if target.is_dir():
        raise CliError(f"argument FILE: {file} is a directory")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise CliError(f"argument FILE: cannot write into {target.parent} (no such directory, or not writable)")
    result = Graph(registry).node_call(node, "policy.save", {"path": str(target)}, timeout=10.0)
    if as_json:
        print_json(result)
        return
    console.print(f"{node}: policy version {result.get('version')} ({result.get('source')}) written to "
                  f"{result.get('path')}")


@app.command("swap")
def swap(node: Annotated[str, typer.Argument(help="agent node name")],
         file: Annotated[Path, typer.Argument(help="policy file (safetensors + JSON metadata)")],
         follow_learner: Annotated[bool, typer.Option(help="keep taking the learner's weights afterwards")] = False,
         registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Load FILE into a running agent: validated first, switched between two steps, none lost."""
    if not file.is_file():
        raise CliError(f"argument FILE: {file} is not a file")
    result = Graph(registry).node_call(node, "policy.swap",
                                       {"path": str(file.resolve()), "follow_learner": follow_learner},
                                       timeout=10.0)
    if as_json:
        print_json(result)
        return
    console.print(f"{node}: policy version {result.get('old_version')} -> {result.get('new_version')} "
                  f"({result.get('source')})")


@app.command("use")
def use(node: Annotated[str, typer.Argument(help="agent node name")],
        version: Annotated[int, typer.Argument(help="a version `policy show` lists as kept")],
        registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Switch a running agent to a policy it kept (or the learner's newest weights), between two steps."""
    result = Graph(registry).node_call(node, "policy.use", {"version": version})
    if as_json:
        print_json(result)
        return
    console.print(f"{node}: policy version {result.get('old_version')} -> {result.get('new_version')}")
