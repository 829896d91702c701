"""The `persist` command: launch a graph, inspect and steer it live, attach nodes, scaffold experiments.

One module per command group. Groups owned elsewhere are mounted when their module imports:
``reachability.cli`` (`persist reach`), ``persist_rt.cli.policy`` (`persist policy`) and
``persist_rt.cli.telemetry`` (`persist telemetry`), each exposing a typer ``app``, and single commands:
``nodes.experiment.eval_cli`` (`persist eval`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from rich.markup import escape

from persist_rt.cli.attach import attach
from persist_rt.cli.common import CliError, err_console
from persist_rt.cli.control import lifecycle_app, param_app
from persist_rt.cli.graph import graph_cmd, node_app, topic_app
from persist_rt.cli.keys_cmd import keys_app
from persist_rt.cli.launch_cmd import launch
from persist_rt.cli.protocols_cmd import protocols_app
from persist_rt.cli.wizard import new
from persist_rt.kinds import KindError
from persist_rt.launch import LaunchError

app = typer.Typer(name="persist", help="PERSIST: a runtime for persistent agents.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.command("launch")(launch)
app.command("attach")(attach)
app.command("graph")(graph_cmd)
app.command("new")(new)
app.add_typer(node_app, name="node")
app.add_typer(topic_app, name="topic")
app.add_typer(param_app, name="param")
app.add_typer(lifecycle_app, name="lifecycle")
app.add_typer(protocols_app, name="protocols")
app.add_typer(keys_app, name="keys")

# (module, command name): sub-apps that live with the code they drive; absent until written.
OPTIONAL_APPS = (("reachability.cli", "reach"), ("persist_rt.cli.policy", "policy"),
                 ("persist_rt.cli.telemetry", "telemetry"))
# (module, command name, function): single commands that live with the code they drive (above persist_rt)
OPTIONAL_COMMANDS = (("nodes.experiment.eval_cli", "eval", "evaluate"),)


def _optional(module: str) -> Any:
    """The module, or None when it is not written yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise


def _mount_optional() -> None:
    for module, name in OPTIONAL_APPS:
        if (found := _optional(module)) is not None:
            app.add_typer(found.app, name=name)
    for module, name, function in OPTIONAL_COMMANDS:
        if (found := _optional(module)) is not None:
            app.command(name)(getattr(found, function))


def _error(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")


def main() -> None:
    """Console entry point: expected failures print one line to stderr and exit non-zero, no traceback."""
    try:
        _mount_optional()
        app(prog_name="persist")
    except LaunchError as exc:
        _error(exc)
        sys.exit(2)
    except (CliError, KindError) as exc:
        _error(exc)
        sys.exit(getattr(exc, "code", 1))
    except KeyboardInterrupt:
        sys.exit(130)
