"""What a launch file resolves to: typed specs of the nodes to start and how to supervise them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RespawnPolicy:
    enabled: bool = False
    backoff_s: float = 1.0  # wait before the first restart; doubles per restart inside the window
    backoff_max_s: float = 30.0
    max_restarts: int = 5  # at most this many restarts ...
    window_s: float = 60.0  # ... within this many seconds, else the node is given up as failed

    def delay(self, recent_restarts: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * (2.0 ** max(0, recent_restarts)))


@dataclass
class NodeSpec:
    name: str  # full name: namespace/name when declared in a group
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    namespace: str = ""
    remaps: dict[str, str] = field(default_factory=dict)
    qos: dict[str, str] = field(default_factory=dict)  # per-edge QoS overrides: topic -> qos
    env: dict[str, str] = field(default_factory=dict)
    respawn: RespawnPolicy = field(default_factory=RespawnPolicy)
    depends_on: list[str] = field(default_factory=list)
    required: bool = False  # if it fails for good, the whole launch stops
    start_timeout_s: float = 60.0
    busy_poll_us: float = 0.0  # the executor's idle strategy: poll without sleeping this long first (lockstep loops)
    base_dir: str = "."  # folder of the file that declared it: relative file kinds resolve here
    source: str = ""  # file:line of the declaration
    origin: Any = field(default=None, repr=False, compare=False)  # where in the YAML: for error messages

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "origin"}
        d["respawn"] = asdict(self.respawn)
        return d


@dataclass
class LaunchSpec:
    file: str
    args: dict[str, Any]
    nodes: list[NodeSpec]  # in start order
    main: str | None = None
    progress_fields: list[str] = field(default_factory=list)
    shutdown_timeout_s: float = 10.0
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    authority: dict[str, list[str]] = field(default_factory=dict)  # topic -> the nodes that may publish it
    keys: str = ""  # the graph's key directory (absolute); "" runs without CurveZMQ
    introspection: str = "closed"  # "open": with keys, read-only services answer clients without a graph key

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def resolved(self) -> dict[str, Any]:
        """A launch file with arguments, includes, groups and overrides applied: what actually runs.

        It loads again as it is (``persist launch runs/<id>/launch.yaml`` repeats a run).
        """
        doc: dict[str, Any] = {"description": self.description or f"resolved from {self.file}"}
        if self.main is not None:
            doc["main"] = {"node": self.main, "show": self.progress_fields} if self.progress_fields else self.main
        doc["shutdown_timeout"] = self.shutdown_timeout_s
        if self.keys:
            doc["keys"] = self.keys
        if self.introspection != "closed":
            doc["introspection"] = self.introspection
        if self.authority:
            doc["authority"] = {t: list(n) for t, n in self.authority.items()}
        doc["nodes"] = [_node_entry(n) for n in self.nodes]
        return doc


def _node_entry(n: NodeSpec) -> dict[str, Any]:
    group, _, short = n.name.rpartition("/")
    own_ns = n.namespace[len(group):].strip("/") if n.namespace.startswith(group) else n.namespace
    kind = n.kind
    where, _, cls = kind.rpartition(":")
    if where.endswith(".py") and not Path(where).is_absolute():
        kind = f"{(Path(n.base_dir) / where).resolve()}:{cls}"
    entry: dict[str, Any] = {"name": short, "kind": kind}
    if n.params:
        entry["params"] = dict(n.params)
    if own_ns:
        entry["namespace"] = own_ns
    for key, value in (("remaps", n.remaps), ("qos", n.qos), ("env", n.env)):
        if value:
            entry[key] = dict(value)
    r = n.respawn
    entry["respawn"] = {"enabled": r.enabled, "backoff": r.backoff_s, "backoff_max": r.backoff_max_s,
                        "max_restarts": r.max_restarts, "window": r.window_s} if r.enabled else False
    if n.depends_on:
        entry["depends_on"] = [f"/{d}" for d in n.depends_on]
    if n.required:
        entry["required"] = True
    entry["start_timeout"] = n.start_timeout_s
    if n.busy_poll_us:
        entry["busy_poll_us"] = n.busy_poll_us
    return {"group": {"namespace": group, "nodes": [entry]}} if group else entry
