"""`persist keys init DIR [LAUNCH...]`: a graph's CurveZMQ key set (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from persist_rt.cli.common import console, parse_pairs
from persist_rt.launch import Overrides, load_launch
from persist_rt.security import KeySet

keys_app = typer.Typer(help="The graph's CurveZMQ keys.", no_args_is_help=True)


@keys_app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(help="key directory (made 0700; its files 0600)")],
    launch_files: Annotated[list[Path] | None, typer.Argument(
        metavar="[LAUNCH]...", help="a key pair for every node these launch files start")] = None,
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", metavar="NAME=VALUE",
                                                  help="launch argument, as for `persist launch` (repeatable)")] = None,
    node: Annotated[list[str] | None, typer.Option("--node", "-n", help="one more node name (repeatable)")] = None,
) -> None:
    """One key pair per node, one for the registry and one for the CLI (`persist attach` too). Pairs already there
    are kept, so running it again for a launch file that gained a node adds that node's key only."""
    names = set(node or [])
    for file in launch_files or []:
        spec = load_launch(file, Overrides(args=parse_pairs(arg, "--arg"), check_keys=False))
        names |= {n.name for n in spec.nodes}
    written = KeySet.create(directory, sorted(names))
    keys = KeySet(directory)
    console.print(f"{keys.dir}: keys for {len(names)} nodes, the registry and the client "
                  f"({len(written)} new); name it in the launch file as `keys: {directory}`")
