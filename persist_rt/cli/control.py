"""Live control: `persist param list|get|set` and `persist lifecycle get|set`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from persist_rt.cli.common import Graph, JsonOpt, RegistryOpt, console, print_json

param_app = typer.Typer(help="Parameters of a live node.", no_args_is_help=True)
lifecycle_app = typer.Typer(help="Lifecycle state of a live node.", no_args_is_help=True)

NodeArg = Annotated[str, typer.Argument(help="node name (see `persist node list`)")]


@param_app.command("list")
def param_list(node: NodeArg, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Every declared parameter with its type, current value and default."""
    params = Graph(registry).node_call(node, "param.list")
    if as_json:
        print_json(params)
        return
    table = Table("name", "type", "value", "default", "doc", box=None)
    for p in params:
        ro = " (read-only)" if p.get("read_only") else ""
        table.add_row(p["name"], p["type"], json.dumps(p["value"]), json.dumps(p["default"]), p["doc"] + ro)
    console.print(table)


@param_app.command("get")
def param_get(node: NodeArg, name: Annotated[str, typer.Argument(help="parameter name")],
              registry: RegistryOpt = None) -> None:
    """Print one parameter's current value (JSON)."""
    print(json.dumps(Graph(registry).node_call(node, "param.get", {"name": name})), flush=True)


@param_app.command("set")
def param_set(node: NodeArg, name: Annotated[str, typer.Argument(help="parameter name")],
              value: Annotated[str, typer.Argument(help="new value; converted by the parameter's declared type")],
              registry: RegistryOpt = None) -> None:
    """Change a parameter live; the node checks the value and may refuse it."""
    new = Graph(registry).node_call(node, "param.set", {"name": name, "value": value})
    console.print(f"{node}.{name} = {json.dumps(new)}", markup=False)


@lifecycle_app.command("get")
def lifecycle_get(node: NodeArg, registry: RegistryOpt = None) -> None:
    """Print the node's lifecycle state."""
    print(Graph(registry).node_call(node, "lifecycle.get")["state"], flush=True)


@lifecycle_app.command("set")
def lifecycle_set(node: NodeArg,
                  state: Annotated[str, typer.Argument(help="unconfigured, inactive, active, finalized, or a "
                                                       "transition: configure, activate, deactivate, cleanup, "
                                                       "shutdown")],
                  registry: RegistryOpt = None) -> None:
    """Move the node to a state (running the transitions on the way)."""
    print(Graph(registry).node_call(node, "lifecycle.set", {"state": state}, timeout=10.0)["state"], flush=True)
