"""What every command shares: finding the live system, calling services, printing listings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
import zmq
from rich.console import Console

from persist_rt import security, services

RUNS_DIR = Path("runs")
CALL_TIMEOUT_S = 2.0

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", "-r", metavar="ADDRESS",
    help="registry address (default: $PERSIST_REGISTRY, else the newest runs/*/registry)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class CliError(RuntimeError):
    """A problem to report in one line, without a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def find_registry(explicit: str | None) -> tuple[str, str]:
    """(address, where it came from): --registry, else PERSIST_REGISTRY, else the newest run directory."""
    if explicit:
        return explicit, "--registry"
    env = os.environ.get("PERSIST_REGISTRY")
    if env:
        return env, "PERSIST_REGISTRY"
    files = sorted(RUNS_DIR.glob("*/registry"), key=lambda p: p.stat().st_mtime)
    for path in reversed(files):
        address = path.read_text().strip()
        if address:
            return address, str(path)
    raise CliError("no live system found: pass --registry ADDRESS, set PERSIST_REGISTRY, or start one with "
                   f"`persist launch FILE` (no {RUNS_DIR}/*/registry under {Path.cwd()})")


def run_dir_of(source: str) -> Path | None:
    """The run directory when the registry was found through one."""
    path = Path(source)
    return path.parent if path.name == "registry" and path.exists() else None


def find_keys(source: str) -> str | None:
    """The graph's key directory: $PERSIST_KEYS, else the one its run directory names; None: it runs without keys."""
    env = os.environ.get(security.KEYS_ENV)
    if env:
        return env
    run_dir = run_dir_of(source)
    if run_dir is not None and (run_dir / "keys").exists():
        return (run_dir / "keys").read_text().strip() or None
    return None


class Graph:
    """The live system as the registry describes it. With the graph's keys, every call proves the client key."""

    def __init__(self, registry: str | None) -> None:
        self.address, self.source = find_registry(registry)
        self.keys = find_keys(self.source)
        if self.keys:
            try:
                keyset = security.KeySet(self.keys)
                security.use_curve(security.Curve(keyset, security.CLIENT, zmq.Context.instance()))
            except security.KeysError as exc:
                raise CliError(str(exc)) from None
            security.expect_server(self.address, security.REGISTRY)

    def call(self, service: str, args: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return services.call(self.address, service, args, timeout=timeout)
        except services.ServiceTimeout:
            raise CliError(f"the registry at {self.address} (from {self.source}) did not answer within "
                           f"{timeout:g} s: is the launch still running?") from None
        except services.ServiceError as exc:
            raise CliError(str(exc)) from None

    def nodes(self) -> list[dict[str, Any]]:
        return self.call("nodes")

    def topics(self) -> list[dict[str, Any]]:
        return self.call("topics")

    def node(self, name: str) -> dict[str, Any]:
        return self.call("node", {"name": name})

    def node_call(self, name: str, service: str, args: dict[str, Any] | None = None,
                  timeout: float = CALL_TIMEOUT_S) -> Any:
        """Call a service of node ``name`` (found through the registry)."""
        endpoint = self.node(name).get("endpoints", {}).get("service")
        if not endpoint:
            raise CliError(f"node {name!r} has no service endpoint in the registry")
        security.expect_server(endpoint, name)
        try:
            return services.call(endpoint, service, args, timeout=timeout)
        except services.ServiceTimeout:
            raise CliError(f"node {name!r} ({endpoint}) did not answer `{service}` within {timeout:g} s") from None
        except services.ServiceError as exc:
            raise CliError(f"node {name!r}: {exc}") from None

    def topic(self, name: str) -> dict[str, Any]:
        for t in self.topics():
            if t["name"] == name:
                return t
        known = ", ".join(t["name"] for t in self.topics()) or "none"
        raise CliError(f"no topic named {name!r} (topics: {known})")


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str), flush=True)


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; a malformed pair is an error naming the option."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint=f"'{option}'")
        out[key.strip()] = value
    return out
