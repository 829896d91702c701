"""`persist attach FILE_OR_MODULE`: run a user's node in the foreground, joined to the live system."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from persist_rt.cli.common import CliError, Graph, RegistryOpt, err_console, parse_pairs, run_dir_of
from persist_rt.kinds import KindError, load_kind
from persist_rt.node import MAX_BUSY_POLL_US
from persist_rt.params import ParamError
from persist_rt.security import KEYS_ENV


def attach(
    target: Annotated[str, typer.Argument(
        metavar="FILE_OR_MODULE", help="path/to/file.py (its one Node class), file.py:Class, or module:Class")],
    name: Annotated[str | None, typer.Option(help="node name (default: the class name, lower case)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="NAME=VALUE",
                                                    help="parameter value (repeatable)")] = None,
    namespace: Annotated[str, typer.Option(help="namespace for the node's relative topics")] = "",
    remap: Annotated[list[str] | None, typer.Option(metavar="FROM=TO", help="topic remap (repeatable)")] = None,
    busy_poll_us: Annotated[float, typer.Option(
        min=0.0, max=MAX_BUSY_POLL_US,
        help="poll without sleeping this long (µs) before sleeping: for a node in a lockstep loop")] = 0.0,
    registry: RegistryOpt = None,
) -> None:
    """Run your node until Ctrl-C; it shows up in `node list`, publishes and subscribes like any other."""
    graph = Graph(registry)
    graph.call("ping")  # fail now, clearly, if nothing is running
    params = parse_pairs(param, "--param")
    remaps = parse_pairs(remap, "--remap")
    try:
        cls = load_kind(target, Path.cwd())
        node_name = name or cls.__name__.lower()  # the Node default
        if graph.keys:  # the node proves the client key (a launch node's own key is its alone)
            os.environ[KEYS_ENV] = graph.keys
        if node_name in {n["name"] for n in graph.nodes()}:
            raise CliError(f"--name: a node named {node_name!r} is already running; choose another with --name")
        node = cls(node_name, registry=graph.address, params=params, namespace=namespace, remaps=remaps,
                   run_dir=run_dir_of(graph.source), busy_poll_us=busy_poll_us)
    except (KindError, ParamError, SyntaxError, OSError) as exc:
        raise CliError(f"attach {target}: {exc}") from None
    err_console.print(f"attached {node.name} ({node.kind}) to {graph.address}; Ctrl-C detaches")
    node.spin()
    err_console.print(f"detached {node.name}")
