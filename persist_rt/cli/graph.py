"""Introspection: `persist node list`, `persist topic list|echo|hz|bw`, `persist graph`."""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from persist_rt.cli.common import Graph, JsonOpt, RegistryOpt, console, print_json
from persist_rt.cli.tap import TopicTap

node_app = typer.Typer(help="Nodes of the live system.", no_args_is_help=True)
topic_app = typer.Typer(help="Topics of the live system.", no_args_is_help=True)

NODE_FIELDS = ("name", "kind", "pid", "host", "state", "restarts", "endpoints", "namespace", "publications",
               "subscriptions", "lease_left_s", "status")


@node_app.command("list")
def node_list(registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Every registered node: kind, pid, host, lifecycle state, restarts, endpoints."""
    nodes = [{k: n.get(k) for k in NODE_FIELDS} for n in Graph(registry).nodes()]
    if as_json:
        print_json(nodes)
        return
    table = Table("name", "kind", "pid", "host", "state", "restarts", "service endpoint", "status", box=None)
    for n in nodes:
        state = n["state"] or "?"
        colour = "green" if state == "active" else "yellow"
        table.add_row(n["name"], n["kind"], str(n["pid"]), n["host"], f"[{colour}]{state}[/{colour}]",
                      str(n["restarts"]), (n["endpoints"] or {}).get("service", ""),
                      " ".join(f"{k}={v}" for k, v in (n["status"] or {}).items()))
    console.print(table)


@topic_app.command("list")
def topic_list(registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Every topic: schema, publishers (node and endpoint) and subscribers (node and QoS)."""
    topics = Graph(registry).topics()
    if as_json:
        print_json(topics)
        return
    table = Table("topic", "schema", "publishers", "subscribers", box=None)
    for t in topics:
        subs = ", ".join(f"{s['node']} ({s['qos']})" for s in t["subscribers"])
        problem = " [red](incompatible)[/red]" if t.get("incompatible") else ""
        table.add_row(t["name"] + problem, t["schema"], ", ".join(p["node"] for p in t["publishers"]), subs)
    console.print(table)


@topic_app.command("echo")
def topic_echo(
    topic: Annotated[str, typer.Argument(help="topic name, e.g. chatter or /metrics")],
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="stop after N messages")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.1, help="give up after this many seconds")] = None,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print messages as they arrive, decoded with the schema the registry reports."""
    tap = TopicTap(Graph(registry), topic)
    seen = 0
    try:
        for rec in tap.messages(timeout):
            data = tap.decode(rec)
            h = rec.header
            if as_json:
                print(json.dumps({"topic": topic, "schema": f"{h.schema}@{h.version}", "seq": h.seq,
                                  "sender": h.sender, "step": h.step, "wall_time": h.wall_time, "data": data},
                                 default=str), flush=True)
            else:
                console.print(f"[dim]--- {topic} seq={h.seq} from {h.sender} step={h.step} "
                              f"({h.schema}@{h.version})[/dim]")
                console.print(json.dumps(data, indent=2, default=str), markup=False)
            seen += 1
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        tap.close()
    if count is not None and seen < count:
        raise typer.Exit(1)


def _rate_report(tap: TopicTap, graph: Graph, window: float, duration: float | None, count: int | None,
                 as_json: bool, kind: str) -> None:
    """Shared loop of `hz` and `bw`: print one line per window from the tap's own reception."""
    times: list[float] = []
    sizes: list[int] = []
    last_seq: dict[str, int] = {}
    gaps = 0
    started = time.monotonic()
    next_report = started + window
    reports = 0
    try:
        for rec in tap.messages(None if duration is None else duration):
            now = time.monotonic()
            times.append(now)
            sizes.append(rec.size)
            prev = last_seq.get(rec.header.sender)
            if prev is not None and rec.header.seq > prev + 1:
                gaps += rec.header.seq - prev - 1
            last_seq[rec.header.sender] = rec.header.seq
            if now >= next_report:
                _report(kind, tap.topic, times, sizes, gaps, _subscriber_drops(graph, tap.info), as_json)
                reports += 1
                times, sizes, next_report = times[-1:], sizes[-1:], now + window
                if count is not None and reports >= count:
                    return
    except KeyboardInterrupt:
        pass
    if len(times) > 1 or not reports:
        _report(kind, tap.topic, times, sizes, gaps, _subscriber_drops(graph, tap.info), as_json)


def _subscriber_drops(graph: Graph, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each subscriber's own counts for this topic (from its `stats` service)."""
    out: dict[str, dict[str, Any]] = {}
    for sub in info.get("subscribers", []):
        try:
            stats = graph.node_call(sub["node"], "stats", timeout=1.0)
        except Exception:  # a node that does not answer is reported as such
            out[sub["node"]] = {"error": "no answer"}
            continue
        s = stats.get("subscriptions", {}).get(info["name"], {})
        out[sub["node"]] = {k: s.get(k) for k in ("rate_hz", "received", "dropped", "lost", "rejected", "qos")}
    return out


def _report(kind: str, topic: str, times: list[float], sizes: list[int], gaps: int,
            subscribers: dict[str, dict[str, Any]], as_json: bool) -> None:
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    n = len(times) - 1
    rate = n / span if span > 0 else 0.0
    periods = [b - a for a, b in itertools.pairwise(times)]
    row: dict[str, Any] = {"topic": topic, "messages": len(times), "rate_hz": round(rate, 3)}
    if kind == "hz":
        row.update(min_period_s=round(min(periods), 6) if periods else None,
                   max_period_s=round(max(periods), 6) if periods else None,
                   std_period_s=round(statistics.pstdev(periods), 6) if len(periods) > 1 else None,
                   lost_here=gaps, subscribers=subscribers)
    else:
        total = sum(sizes[1:]) if n > 0 else 0
        row.update(bytes_per_s=round(total / span, 1) if span > 0 else 0.0,
                   mean_bytes=round(sum(sizes) / len(sizes), 1) if sizes else 0.0,
                   max_bytes=max(sizes) if sizes else 0)
    if as_json:
        print(json.dumps(row), flush=True)
        return
    if kind == "hz":
        drops = "; ".join(f"{name}: dropped={s.get('dropped')} lost={s.get('lost')}" for name, s in subscribers.items())
        jitter = row["std_period_s"]
        console.print(f"{topic}: {rate:.2f} Hz over {len(times)} msgs"
                      f"{f', std {jitter * 1000:.2f} ms' if jitter is not None else ''}; lost here {gaps}"
                      f"{'; subscribers ' + drops if drops else ''}", markup=False)
    else:
        console.print(f"{topic}: {_human(row['bytes_per_s'])}/s, mean {_human(row['mean_bytes'])}, "
                      f"max {_human(row['max_bytes'])} over {len(times)} msgs", markup=False)


def _human(n: float) -> str:
    if n <= 0:
        return "0 B"
    unit = min(int(math.log(n, 1024)), 3)
    return f"{n / 1024 ** unit:.1f} {('B', 'KiB', 'MiB', 'GiB')[unit]}"


def _rate_command(kind: str, doc: str) -> Callable[..., None]:
    """`topic hz` and `topic bw`: the same tap and report loop, measuring rate or bandwidth."""

    def command(
        topic: Annotated[str, typer.Argument(help="topic name")],
        window: Annotated[float, typer.Option(min=0.1, help="seconds per report")] = 1.0,
        duration: Annotated[float | None, typer.Option(min=0.1, help="stop after this many seconds")] = None,
        count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="stop after N reports")] = None,
        registry: RegistryOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        graph = Graph(registry)
        tap = TopicTap(graph, topic)
        try:
            _rate_report(tap, graph, window, duration, count, as_json, kind)
        finally:
            tap.close()

    command.__doc__ = doc
    return command


topic_app.command("hz")(_rate_command("hz", "Message rate and jitter, and each subscriber's dropped/lost counts."))
topic_app.command("bw")(_rate_command(
    "bw", "Bandwidth: bytes per second and message sizes (all frames, arrays included)."))


def graph_cmd(
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot instead of text")] = False,
    include_system: Annotated[bool, typer.Option("--all", help="include /metrics and /parameter_events")] = False,
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The node graph: who publishes what to whom, with schemas and QoS."""
    g = Graph(registry)
    topics = [t for t in g.topics() if include_system or not t["name"].startswith("/")]
    nodes = [n["name"] for n in g.nodes()]
    if as_json:
        print_json({"nodes": nodes, "topics": topics})
        return
    if dot:
        lines = ["digraph persist {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        lines += [f'  "{n}";' for n in nodes]
        for t in topics:
            tid = f"topic:{t['name']}"
            lines.append(f'  "{tid}" [label="{t["name"]}\\n{t["schema"]}", shape=ellipse];')
            lines += [f'  "{p["node"]}" -> "{tid}";' for p in t["publishers"]]
            for s in t["subscribers"]:
                style = ', color=red' if any(i["subscriber"] == s["node"] for i in t.get("incompatible", [])) else ""
                lines.append(f'  "{tid}" -> "{s["node"]}" [label="{s["qos"]}"{style}];')
        lines.append("}")
        print("\n".join(lines))
        return
    for t in topics:
        pubs = ", ".join(p["node"] for p in t["publishers"]) or "(no publisher)"
        subs = ", ".join(f"{s['node']} [{s['qos']}]" for s in t["subscribers"]) or "(no subscriber)"
        console.print(f"{pubs} --{t['name']} ({t['schema']})--> {subs}", markup=False)
        for i in t.get("incompatible", []):
            console.print(f"  [red]incompatible[/red] {i['publisher']} -> {i['subscriber']}: {i['reason']}")
    linked = {p["node"] for t in topics for p in t["publishers"]}
    linked |= {s["node"] for t in topics for s in t["subscribers"]}
    for n in nodes:
        if n not in linked:
            console.print(f"{n} (no topics)", markup=False)
