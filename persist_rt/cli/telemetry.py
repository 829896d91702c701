"""`persist telemetry`: stream the live metrics of a running graph.

    persist telemetry                       # a refreshing table
    persist telemetry --filter 'shield*'    # glob over `node.metric` (plain text: substring)
    persist telemetry --json --count 5      # one JSON object per metrics message

It taps ``/metrics`` from outside the graph (``TopicTap``: a SUB socket connected straight to every
publisher, looked up again every second so nodes that start later show up), so it never appears in
the node list and never slows a node down. The registry is ``--registry``, else ``$PERSIST_REGISTRY``,
else the newest ``runs/*/registry``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from persist_rt.cli.common import Graph, RegistryOpt
from persist_rt.cli.tap import TopicTap
from persist_rt.codec import DecodeError
from persist_rt.node import METRICS_TOPIC
from protocols import Metrics

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Stream live metrics from a running system.", add_completion=False)


def matches(pattern: str | None, node: str, name: str) -> bool:
    """Glob over ``node.metric``; a pattern without wildcards matches as a substring."""
    if not pattern:
        return True
    key = f"{node}.{name}"
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(key, pattern)
    return pattern in key


@dataclass
class Row:
    kind: str
    value: float
    rate: float | None = None  # per second, counters only
    at: float = 0.0


@dataclass
class LiveView:
    """The latest value of every (node, metric) the filter lets through, with counter rates."""

    pattern: str | None
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)

    def update(self, msg: Metrics, now: float) -> dict[str, dict[str, float]]:
        kept: dict[str, dict[str, float]] = {"counters": {}, "gauges": {}}
        for kind, values in (("counter", msg.counters), ("gauge", msg.gauges)):
            for name, value in values.items():
                if not matches(self.pattern, msg.node, name):
                    continue
                kept[f"{kind}s"][name] = value
                old = self.rows.get((msg.node, name))
                rate = None
                if kind == "counter" and old is not None and now > old.at:
                    rate = (value - old.value) / (now - old.at)
                self.rows[(msg.node, name)] = Row(kind, value, rate, now)
        return kept

    def table(self, registry: str) -> Table:
        from rich.table import Table

        table = Table(title=f"persist telemetry  {registry}  ({len(self.rows)} series)", expand=False)
        for col, justify in (("node", "left"), ("metric", "left"), ("type", "left"), ("value", "right"),
                             ("rate/s", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for (node, name), row in sorted(self.rows.items()):
            rate = "" if row.rate is None else f"{row.rate:,.2f}"
            table.add_row(node, name, row.kind, f"{row.value:,.6g}", rate)
        return table


@app.callback(invoke_without_command=True)
def telemetry(
    pattern: Annotated[str | None, typer.Option("--filter", "-f", metavar="PATTERN",
                                                help="glob over node.metric; plain text matches a substring")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="one JSON object per metrics message")] = False,
    registry: RegistryOpt = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="stop after N messages")] = None,
    duration: Annotated[float | None, typer.Option("--duration", "-d", min=0.0, help="stop after S seconds")] = None,
) -> None:
    """Stream live metrics: a refreshing table, or JSON lines with --json."""
    graph = Graph(registry)
    tap = TopicTap(graph, METRICS_TOPIC)
    view = LiveView(pattern)

    def metrics() -> Iterator[Metrics]:
        """Filtered Metrics messages until --count or --duration is reached (or forever)."""
        shown = 0
        for rec in tap.messages(timeout_s=duration):
            try:
                msg = tap.codec.decode(rec.frames, Metrics, rec.header)
            except DecodeError:
                continue  # not a Metrics message of this version: nothing to show
            kept = view.update(msg, time.time())
            if not kept["counters"] and not kept["gauges"]:
                continue
            yield Metrics(node=msg.node, counters=kept["counters"], gauges=kept["gauges"])
            shown += 1
            if count is not None and shown >= count:
                return

    try:
        if json_lines:
            for msg in metrics():
                print(json.dumps({"ts": round(time.time(), 3), "node": msg.node, "counters": msg.counters,
                                  "gauges": msg.gauges}), flush=True)
        else:
            from rich.live import Live

            with Live(view.table(graph.address), refresh_per_second=2) as live:
                for _ in metrics():
                    live.update(view.table(graph.address))
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, and silence the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass
    finally:
        tap.close()
