"""`persist protocols schema`: every message schema as one JSON Schema document."""

from __future__ import annotations

import json

import typer

protocols_app = typer.Typer(help="The message schemas (the contract between nodes).", no_args_is_help=True)


@protocols_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of every message, with its wire name and version."""
    import protocols

    print(json.dumps(protocols.json_schema(), indent=2))


@protocols_app.command("list")
def list_schemas() -> None:
    """Wire name and version of every message."""
    from protocols import SCHEMAS

    for name in sorted(SCHEMAS):
        print(f"{name}@{SCHEMAS[name].VERSION}")
