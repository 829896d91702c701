"""Read a launch file: arguments, substitution, includes, groups, validation. Nothing starts here.

    args:                     # launch arguments: `name: default` or `name: {default, doc, choices}`
      rate: 20.0              # a mapping without `default` is a required argument
    main: listener            # the main job: its exit ends the launch; its progress is shown
    nodes:
      - name: talker
        kind: talker          # built-in, module:Class or path/to/file.py:Class
        enabled: true         # false (e.g. `$(arg x)`) leaves the node out of the launch
        params: {rate_hz: $(arg rate)}
        respawn: {backoff: 0.5, max_restarts: 3, window: 30}
      - include: other.yaml   # with its own arguments
        args: {rate: 5}
      - group: {namespace: robot1, nodes: [...]}
    authority:                # who may publish a topic: its subscribers take it from these nodes only
      chatter: [talker]
    keys: keys/               # CurveZMQ keys of every node (`persist keys init keys/ FILE`); "" or absent: none
    introspection: closed     # open: with keys, read-only services answer clients without a graph key

Every error is a LaunchError naming the file, the line, the field and the reason.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persist_rt.kinds import KindError
from persist_rt.launch.errors import LaunchError
from persist_rt.launch.paramtable import ParamTable, param_table
from persist_rt.launch.spec import LaunchSpec, NodeSpec, RespawnPolicy
from persist_rt.launch.yaml_lines import line_of, load_yaml, parse_scalar
from persist_rt.node import MAX_BUSY_POLL_US
from persist_rt.params import ParamError
from persist_rt.qos import QoS
from persist_rt.security import KeysError, KeySet, parse_authority, parse_introspection

TOP_KEYS = {"description", "args", "env", "main", "shutdown_timeout", "nodes", "authority", "keys", "introspection"}
NODE_KEYS = {"name", "kind", "enabled", "params", "namespace", "remaps", "qos", "env", "respawn", "depends_on",
             "required", "start_timeout", "fallback", "busy_poll_us"}
INCLUDE_KEYS = {"include", "args", "namespace"}
GROUP_KEYS = {"namespace", "env", "nodes"}
ARG_KEYS = {"default", "doc", "choices"}
RESPAWN_KEYS = {"enabled", "backoff", "backoff_max", "max_restarts", "window"}
MAIN_KEYS = {"node", "show"}
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_\-/]*")
SUBST_RE = re.compile(r"\$\((\w+)(?:\s+([^)]*))?\)")
SEED_PARAM, STEPS_PARAM = "seed", "total_steps"


@dataclass
class Overrides:
    """What the command line changes: `--arg`, `--set`, `--seed`, `--steps`."""

    args: dict[str, str] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)  # "node.param" -> value
    seed: int | None = None
    steps: int | None = None
    check_keys: bool = True  # False: the launch file's key directory need not exist yet (`persist keys init`)


@dataclass
class Origin:
    """Where a node was declared, so later checks can point at the right line."""

    file: Path
    where: str  # e.g. "nodes[1] (listener)"
    entry: dict[str, Any]  # the node's YAML mapping (with lines)
    from_cli: set[str] = field(default_factory=set)  # parameters given by --set

    def line(self, key: str) -> int | None:
        return line_of(self.entry, key)

    def param_line(self, key: str) -> int | None:
        params = self.entry.get("params")
        if isinstance(params, dict) and key in params:
            return line_of(params, key)
        return self.line("fallback" if key == "fallback" else "params")


@dataclass
class _Scope:
    file: Path
    args: dict[str, Any]
    namespace: str
    env: dict[str, str]
    stack: tuple[Path, ...]


def load_launch(path: str | Path, overrides: Overrides | None = None) -> LaunchSpec:
    """Resolve and validate a launch file; raise LaunchError on the first problem."""
    overrides = overrides or Overrides()
    path = Path(path)
    if not path.is_file():
        raise LaunchError(path, None, "", "no such launch file")
    path = path.resolve()
    doc = _document(path)
    given = {k: parse_scalar(v) for k, v in overrides.args.items()}
    args = _resolve_args(path, doc, given, None)
    top_env = _str_map(path, doc, "env", _subst_tree(path, doc.get("env") or {}, args, "env", doc))
    scope = _Scope(path, args, "", top_env, (path,))
    nodes: list[NodeSpec] = []
    mains: list[tuple[str, list[str], Path, int | None]] = []
    _expand(doc, "nodes", "nodes", scope, nodes, mains)
    if not nodes:
        raise LaunchError(path, line_of(doc, "nodes"), "nodes", "the launch file declares no nodes")
    _check_unique(nodes)
    main, show = _main(path, doc, args, nodes)
    if main is None:
        for name, fields, file, line in mains[:1]:  # an included file's main job, if the top file has none
            if name not in {n.name for n in nodes}:
                raise LaunchError(file, line, "main", f"no node named {name!r}")
            main, show = name, fields
    _resolve_dependencies(nodes)
    tables = _tables(nodes)
    _apply_overrides(path, nodes, tables, overrides)
    for node in nodes:
        _check_params(node, tables[node.name])
    timeout = _number(path, doc, "shutdown_timeout", doc.get("shutdown_timeout", 10.0), minimum=0.1)
    return LaunchSpec(file=str(path), args=args, nodes=_start_order(nodes), main=main, progress_fields=show,
                      shutdown_timeout_s=timeout, env=top_env, description=str(doc.get("description") or ""),
                      authority=_authority(path, doc, args, nodes),
                      keys=_keys(path, doc, args, nodes, overrides.check_keys),
                      introspection=_introspection(path, doc, args))


# --- documents and arguments ----------------------------------------------------------------


def _document(path: Path) -> dict[str, Any]:
    doc = load_yaml(path)
    if doc is None:
        raise LaunchError(path, None, "", "the launch file is empty")
    if not isinstance(doc, dict):
        raise LaunchError(path, line_of(doc, 0) or 1, "", "a launch file must be a mapping at the top level")
    _no_unknown(path, doc, TOP_KEYS, "")
    return doc


def _no_unknown(path: Path, mapping: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise LaunchError(path, line_of(mapping, key), where,
                              f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _resolve_args(path: Path, doc: dict[str, Any], given: dict[str, Any], given_line: int | None) -> dict[str, Any]:
    declared = doc.get("args") or {}
    if not isinstance(declared, dict):
        raise LaunchError(path, line_of(doc, "args"), "args", "must be a mapping of name: default")
    for name in given:
        if name not in declared:
            raise LaunchError(path, given_line or line_of(doc, "args"), f"args.{name}",
                              f"unknown launch argument (declared: {', '.join(sorted(declared)) or 'none'})")
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        line = line_of(declared, name)
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise LaunchError(path, line, f"args.{name}", "argument names are letters, digits, _ and -")
        if isinstance(decl, dict):
            _no_unknown(path, decl, ARG_KEYS, f"args.{name}")
            choices = decl.get("choices")
            if name in given:
                value = given[name]
            elif "default" in decl:
                value = decl["default"]
            else:
                raise LaunchError(path, line, f"args.{name}",
                                  "required argument not given (pass it with --arg "
                                  f"{name}=VALUE{' or in the include' if given_line else ''})")
            if choices is not None and value not in choices:
                raise LaunchError(path, line, f"args.{name}", f"{value!r} is not one of {list(choices)}")
        else:
            value = given.get(name, decl)
        values[name] = value
    return values


# --- substitution ---------------------------------------------------------------------------


def _subst(path: Path, value: Any, args: dict[str, Any], where: str, line: int | None) -> Any:
    if not isinstance(value, str) or "$(" not in value:
        return value

    def one(m: re.Match[str]) -> Any:
        what, rest = m.group(1), (m.group(2) or "").strip()
        if what == "arg":
            if rest not in args:
                raise LaunchError(path, line, where, f"$(arg {rest}): unknown launch argument "
                                  f"(declared: {', '.join(sorted(args)) or 'none'})")
            return args[rest]
        if what == "env":
            var, _, default = rest.partition(" ")
            if var not in os.environ and not default:
                raise LaunchError(path, line, where, f"$(env {var}): environment variable not set and no default")
            return os.environ.get(var, default)
        raise LaunchError(path, line, where, f"unknown substitution $({what} ...) (use $(arg NAME) or $(env NAME))")

    whole = SUBST_RE.fullmatch(value)
    if whole:
        return one(whole)  # keeps the argument's type: `$(arg steps)` stays an int
    return SUBST_RE.sub(lambda m: str(one(m)), value)


def _subst_tree(path: Path, value: Any, args: dict[str, Any], where: str, parent: Any, key: Any = None) -> Any:
    line = line_of(parent, key) if key is not None else line_of(value, 0) if isinstance(value, list) else \
        getattr(value, "line", None)
    if isinstance(value, dict):
        out = type(value)()
        if hasattr(value, "key_lines"):
            out.line, out.key_lines = value.line, value.key_lines  # type: ignore[attr-defined]
        for k, v in value.items():
            out[k] = _subst_tree(path, v, args, f"{where}.{k}", value, k)
        return out
    if isinstance(value, list):
        out_list = type(value)(_subst_tree(path, v, args, f"{where}[{i}]", value, i) for i, v in enumerate(value))
        if hasattr(value, "item_lines"):
            out_list.line, out_list.item_lines = value.line, value.item_lines  # type: ignore[attr-defined]
        return out_list
    return _subst(path, value, args, where, line)


# --- expansion: nodes, includes, groups -----------------------------------------------------


def _expand(container: dict[str, Any], key: str, where: str, scope: _Scope, out: list[NodeSpec],
            mains: list[tuple[str, list[str], Path, int | None]]) -> None:
    path = scope.file
    entries = container.get(key)
    if entries is None:
        return
    if not isinstance(entries, list):
        raise LaunchError(path, line_of(container, key), where, "must be a list of nodes, includes and groups")
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise LaunchError(path, line_of(entries, i), at, "each entry is a node (name, kind), an include or a group")
        if "include" in entry:
            _include(entry, at, scope, out, mains)
        elif "group" in entry:
            _group(entry, at, scope, out, mains)
        else:
            node = _node(entry, at, scope)
            if node is not None:
                out.append(node)


def _include(entry: dict[str, Any], where: str, scope: _Scope, out: list[NodeSpec],
             mains: list[tuple[str, list[str], Path, int | None]]) -> None:
    path = scope.file
    _no_unknown(path, entry, INCLUDE_KEYS, where)
    line = line_of(entry, "include")
    target = _subst(path, entry["include"], scope.args, f"{where}.include", line)
    if not isinstance(target, str) or not target:
        raise LaunchError(path, line, f"{where}.include", "must be a path to a launch file")
    inc = (path.parent / target).resolve()
    if inc in scope.stack:
        chain = " -> ".join(p.name for p in (*scope.stack, inc))
        raise LaunchError(path, line, f"{where}.include", f"include cycle: {chain}")
    if not inc.is_file():
        raise LaunchError(path, line, f"{where}.include", f"no such launch file {inc}")
    given = _subst_tree(path, entry.get("args") or {}, scope.args, f"{where}.args", entry, "args")
    if not isinstance(given, dict):
        raise LaunchError(path, line_of(entry, "args"), f"{where}.args", "must be a mapping of name: value")
    doc = _document(inc)
    args = _resolve_args(inc, doc, dict(given), line_of(entry, "args") or line)
    namespace = _join(scope.namespace, _namespace(path, entry, f"{where}.namespace", scope.args))
    env = {**scope.env, **_str_map(inc, doc, "env", _subst_tree(inc, doc.get("env") or {}, args, "env", doc))}
    sub = _Scope(inc, args, namespace, env, (*scope.stack, inc))
    start = len(out)
    _expand(doc, "nodes", "nodes", sub, out, mains)
    if "main" in doc:
        name, show = _main_value(inc, doc, args)
        if name is not None:
            mains.append((_join(namespace, name), show, inc, line_of(doc, "main")))
    if len(out) == start:
        raise LaunchError(inc, line_of(doc, "nodes"), "nodes", "the included launch file declares no nodes")


def _group(entry: dict[str, Any], where: str, scope: _Scope, out: list[NodeSpec],
           mains: list[tuple[str, list[str], Path, int | None]]) -> None:
    path = scope.file
    if set(entry) != {"group"}:
        extra = sorted(set(entry) - {"group"})[0]
        raise LaunchError(path, line_of(entry, extra), f"{where}.{extra}",
                          "unknown key next to `group` (put namespace, env and nodes inside it)")
    group = entry["group"]
    if not isinstance(group, dict):
        raise LaunchError(path, line_of(entry, "group"), f"{where}.group", "must be a mapping: namespace, env, nodes")
    _no_unknown(path, group, GROUP_KEYS, f"{where}.group")
    namespace = _join(scope.namespace, _namespace(path, group, f"{where}.group.namespace", scope.args))
    env = {**scope.env, **_str_map(path, group, f"{where}.group.env",
                                   _subst_tree(path, group.get("env") or {}, scope.args, f"{where}.env", group))}
    sub = _Scope(path, scope.args, namespace, env, scope.stack)
    if not group.get("nodes"):
        raise LaunchError(path, line_of(entry, "group"), f"{where}.group.nodes", "a group needs at least one node")
    _expand(group, "nodes", f"{where}.group.nodes", sub, out, mains)


def _node(entry: dict[str, Any], where: str, scope: _Scope) -> NodeSpec | None:
    """The node's spec; None when it is declared with ``enabled: false``."""
    path = scope.file
    _no_unknown(path, entry, NODE_KEYS, where)
    entry = _subst_tree(path, entry, scope.args, where, None)
    for required in ("name", "kind"):
        if required not in entry:
            raise LaunchError(path, entry.line if hasattr(entry, "line") else None, f"{where}.{required}",
                              "missing (every node needs a name and a kind)")
    name = entry["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise LaunchError(path, line_of(entry, "name"), f"{where}.name",
                          f"{name!r} is not a valid node name (letters, digits, _ and -, not starting with a digit)")
    kind = entry["kind"]
    if not isinstance(kind, str) or not kind:
        raise LaunchError(path, line_of(entry, "kind"), f"{where}.kind", "must be a string")
    at = f"{where} ({name})"
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise LaunchError(path, line_of(entry, "enabled"), f"{at}.enabled", f"expected true/false, got {enabled!r}")
    if not enabled:
        return None
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise LaunchError(path, line_of(entry, "params"), f"{at}.params", "must be a mapping of parameter: value")
    params = _plain(params)  # plain dicts and lists all the way down: the resolved file is dumped as YAML
    if "fallback" in entry:
        if "fallback" in params:
            raise LaunchError(path, line_of(entry, "fallback"), f"{at}.fallback", "given both here and in params")
        params["fallback"] = entry["fallback"]
    qos = _str_map(path, entry, f"{at}.qos", entry.get("qos") or {})
    for topic, text in qos.items():
        try:
            QoS.parse(text)
        except ValueError as exc:
            raise LaunchError(path, line_of(entry.get("qos"), topic), f"{at}.qos.{topic}", str(exc)) from None
    depends = entry.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise LaunchError(path, line_of(entry, "depends_on"), f"{at}.depends_on", "must be a list of node names")
    required = entry.get("required", False)
    if not isinstance(required, bool):
        raise LaunchError(path, line_of(entry, "required"), f"{at}.required", f"expected true/false, got {required!r}")
    spec = NodeSpec(
        name=_join(scope.namespace, name),
        kind=kind,
        params=params,
        namespace=_join(scope.namespace, _namespace(path, entry, f"{at}.namespace", scope.args)),
        remaps=_str_map(path, entry, f"{at}.remaps", entry.get("remaps") or {}),
        qos=qos,
        env={**scope.env, **_str_map(path, entry, f"{at}.env", entry.get("env") or {})},
        respawn=_respawn(path, entry, at),
        depends_on=[_join(scope.namespace, d) if not d.startswith("/") else d.lstrip("/") for d in depends],
        required=required,
        start_timeout_s=_number(path, entry, f"{at}.start_timeout", entry.get("start_timeout", 60.0), minimum=0.1),
        busy_poll_us=_number(path, entry, f"{at}.busy_poll_us", entry.get("busy_poll_us", 0.0), minimum=0.0,
                             maximum=MAX_BUSY_POLL_US),
        base_dir=str(path.parent),
        source=f"{path}:{line_of(entry, 'name') or ''}",
        origin=Origin(path, at, entry),
    )
    return spec


def _respawn(path: Path, entry: dict[str, Any], at: str) -> RespawnPolicy:
    value = entry.get("respawn", False)
    line = line_of(entry, "respawn")
    if isinstance(value, bool):
        return RespawnPolicy(enabled=value)
    if not isinstance(value, dict):
        raise LaunchError(path, line, f"{at}.respawn", f"expected true/false or a mapping, got {value!r}")
    _no_unknown(path, value, RESPAWN_KEYS, f"{at}.respawn")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise LaunchError(path, line_of(value, "enabled"), f"{at}.respawn.enabled",
                          f"expected true/false, got {enabled!r}")
    max_restarts = value.get("max_restarts", 5)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise LaunchError(path, line_of(value, "max_restarts"), f"{at}.respawn.max_restarts",
                          f"expected an integer >= 0, got {max_restarts!r}")
    return RespawnPolicy(
        enabled=enabled,
        backoff_s=_number(path, value, f"{at}.respawn.backoff", value.get("backoff", 1.0), minimum=0.0),
        backoff_max_s=_number(path, value, f"{at}.respawn.backoff_max", value.get("backoff_max", 30.0), minimum=0.0),
        max_restarts=max_restarts,
        window_s=_number(path, value, f"{at}.respawn.window", value.get("window", 60.0), minimum=0.1),
    )


def _main(path: Path, doc: dict[str, Any], args: dict[str, Any], nodes: list[NodeSpec]) -> tuple[str | None, list[str]]:
    if "main" not in doc:
        return None, []
    name, show = _main_value(path, doc, args)
    if name is not None and name not in {n.name for n in nodes}:
        raise LaunchError(path, line_of(doc, "main"), "main",
                          f"no node named {name!r} (nodes: {', '.join(n.name for n in nodes)})")
    return name, show


def _main_value(path: Path, doc: dict[str, Any], args: dict[str, Any]) -> tuple[str | None, list[str]]:
    value = _subst_tree(path, doc["main"], args, "main", doc, "main")
    if value is None:
        return None, []
    if isinstance(value, str):
        return value, []
    if isinstance(value, dict):
        _no_unknown(path, value, MAIN_KEYS, "main")
        node, show = value.get("node"), value.get("show") or []
        if isinstance(node, str) and isinstance(show, list) and all(isinstance(s, str) for s in show):
            return node, list(show)
    raise LaunchError(path, line_of(doc, "main"), "main",
                      "expected a node name or {node: NAME, show: [gauge, ...]}")


# --- checks ---------------------------------------------------------------------------------


def _authority(path: Path, doc: dict[str, Any], args: dict[str, Any], nodes: list[NodeSpec]) -> dict[str, list[str]]:
    """``authority: {topic: [node, ...]}``, every node one this launch starts."""
    if "authority" not in doc:
        return {}
    value = _subst_tree(path, doc["authority"], args, "authority", doc, "authority")
    try:
        authority = parse_authority(value)
    except ValueError as exc:
        raise LaunchError(path, line_of(doc, "authority"), "authority", str(exc).partition(": ")[2]) from None
    known = {n.name for n in nodes}
    for topic, names in authority.items():
        for name in sorted(names - known):
            raise LaunchError(path, line_of(value, topic), f"authority.{topic}",
                              f"no node named {name!r} in this launch (nodes: {', '.join(sorted(known))})")
    return {t: sorted(n) for t, n in authority.items()}


def _keys(path: Path, doc: dict[str, Any], args: dict[str, Any], nodes: list[NodeSpec], check: bool) -> str:
    """``keys: DIR`` (relative to the launch file): a key set holding a key for every node this launch starts."""
    value = _subst_tree(path, doc.get("keys") or "", args, "keys", doc, "keys")
    if not value:
        return ""
    if not isinstance(value, str):
        raise LaunchError(path, line_of(doc, "keys"), "keys", f"expected a directory, got {value!r}")
    where = (path.parent / value).resolve()
    if not check:
        return str(where)
    try:
        missing = KeySet(where).missing([n.name for n in nodes])
    except KeysError as exc:
        raise LaunchError(path, line_of(doc, "keys"), "keys", str(exc).partition(": ")[2]) from None
    if missing:
        raise LaunchError(path, line_of(doc, "keys"), "keys",
                          f"{where} holds no key for {', '.join(missing)}: add them with "
                          f"`persist keys init {where} {path}` (the same --arg as the launch)")
    return str(where)


def _introspection(path: Path, doc: dict[str, Any], args: dict[str, Any]) -> str:
    """``introspection: open | closed`` (absent: closed): whether, with keys, read-only services answer clients
    without a graph key (docs/security.md)."""
    if "introspection" not in doc:
        return "closed"
    value = _subst_tree(path, doc["introspection"], args, "introspection", doc, "introspection")
    try:
        return parse_introspection(value)
    except ValueError as exc:
        raise LaunchError(path, line_of(doc, "introspection"), "introspection",
                          str(exc).partition(": ")[2]) from None


def _check_unique(nodes: list[NodeSpec]) -> None:
    seen: dict[str, NodeSpec] = {}
    for node in nodes:
        if node.name in seen:
            first = seen[node.name]
            raise LaunchError(node.origin.file, node.origin.line("name"), f"{node.origin.where}.name",
                              f"duplicate node name {node.name!r} (first declared at {first.source})")
        seen[node.name] = node


def _resolve_dependencies(nodes: list[NodeSpec]) -> None:
    names = {n.name for n in nodes}
    for node in nodes:
        resolved = []
        for dep in node.depends_on:
            if dep not in names and dep.rpartition("/")[2] in names:
                dep = dep.rpartition("/")[2]
            if dep not in names:
                raise LaunchError(node.origin.file, node.origin.line("depends_on"), f"{node.origin.where}.depends_on",
                                  f"no node named {dep!r}")
            if dep == node.name:
                raise LaunchError(node.origin.file, node.origin.line("depends_on"), f"{node.origin.where}.depends_on",
                                  "a node cannot depend on itself")
            resolved.append(dep)
        node.depends_on = resolved


def _start_order(nodes: list[NodeSpec]) -> list[NodeSpec]:
    """Declared order, except that a node starts after everything it depends on."""
    done: set[str] = set()
    order: list[NodeSpec] = []
    pending = list(nodes)
    while pending:
        for node in pending:
            if all(d in done for d in node.depends_on):
                order.append(node)
                done.add(node.name)
                pending.remove(node)
                break
        else:
            node = pending[0]
            cycle = ", ".join(n.name for n in pending)
            raise LaunchError(node.origin.file, node.origin.line("depends_on"), f"{node.origin.where}.depends_on",
                              f"dependency cycle among: {cycle}")
    return order


def _tables(nodes: list[NodeSpec]) -> dict[str, ParamTable]:
    cache: dict[tuple[str, str], ParamTable] = {}
    out: dict[str, ParamTable] = {}
    for node in nodes:
        key = (node.kind, node.base_dir)
        if key not in cache:
            try:
                cache[key] = param_table(node.kind, Path(node.base_dir))
            except KindError as exc:
                raise LaunchError(node.origin.file, node.origin.line("kind"), f"{node.origin.where}.kind",
                                  str(exc)) from None
            except Exception as exc:  # importing a user's node module failed
                raise LaunchError(node.origin.file, node.origin.line("kind"), f"{node.origin.where}.kind",
                                  f"cannot load {node.kind}: {type(exc).__name__}: {exc}") from None
        out[node.name] = cache[key]
    return out


def _apply_overrides(path: Path, nodes: list[NodeSpec], tables: dict[str, ParamTable], ov: Overrides) -> None:
    by_name = {n.name: n for n in nodes}
    for target, value in ov.sets.items():
        name, dot, param = target.partition(".")  # node names hold no dot; NODE.CONFIG.FIELD sets one field
        if not dot or not name or not param:
            raise LaunchError(path, None, f"--set {target}", "expected NODE.PARAM=VALUE")
        if name not in by_name:
            raise LaunchError(path, None, f"--set {target}",
                              f"no node named {name!r} (nodes: {', '.join(by_name)})")
        param, dot, field = param.partition(".")
        params = by_name[name].params
        if dot:
            current = params.get(param, {})
            if not isinstance(current, dict):
                raise LaunchError(path, None, f"--set {target}", f"parameter {param!r} is not a mapping")
            value = {**current, field: value}
        params[param] = value
        by_name[name].origin.from_cli.add(param)
    for param, value in ((SEED_PARAM, ov.seed), (STEPS_PARAM, ov.steps)):
        if value is None:
            continue
        for node in nodes:
            if tables[node.name].declares(param):
                node.params[param] = value


def _check_params(node: NodeSpec, table: ParamTable) -> None:
    origin: Origin = node.origin
    for key, value in list(node.params.items()):
        cli = key in origin.from_cli
        where = f"--set {node.name}.{key}" if cli else f"{origin.where}.params.{key}"
        file = origin.file
        line = None if cli else origin.param_line(key)
        if not isinstance(key, str):
            raise LaunchError(file, line, where, "parameter names are strings")
        decl = table.params.get(key)
        if decl is not None:
            try:
                node.params[key] = decl.coerce(value)
            except ParamError as exc:
                raise LaunchError(file, line, where, f"{exc.reason} (node kind {node.kind})") from None
        elif key not in table.unchecked and table.complete:
            raise LaunchError(file, line, where, f"node kind {node.kind} has no such parameter "
                              f"(known: {', '.join(table.known()) or 'none'})")


# --- small helpers --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Line-tracking mappings and lists from the YAML reader as plain ``dict`` and ``list``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _join(namespace: str, name: str) -> str:
    parts = [p for p in (namespace.strip("/"), name.strip("/")) if p]
    return "/".join(parts)


def _namespace(path: Path, entry: dict[str, Any], where: str, args: dict[str, Any]) -> str:
    value = _subst(path, entry.get("namespace", ""), args, where, line_of(entry, "namespace"))
    if value is None:
        return ""
    if not isinstance(value, str) or not NAMESPACE_RE.fullmatch(value):
        raise LaunchError(path, line_of(entry, "namespace"), where,
                          f"{value!r} is not a namespace (letters, digits, _, - and /)")
    return value.strip("/")


def _str_map(path: Path, parent: Any, where: str, value: Any) -> dict[str, str]:
    key = where.rpartition(".")[2]
    if not isinstance(value, dict):
        raise LaunchError(path, line_of(parent, key), where, "must be a mapping of name: value")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict | list) or v is None:
            raise LaunchError(path, line_of(value, k), f"{where}.{k}", f"expected a single value, got {v!r}")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _number(path: Path, parent: Any, where: str, value: Any, minimum: float, maximum: float = math.inf) -> float:
    # written so that NaN fails the comparison too; an integer too large for a float fails the conversion
    if not isinstance(value, bool) and isinstance(value, int | float) and minimum <= value <= maximum:
        try:
            return float(value)
        except OverflowError:
            pass
    bounds = f">= {minimum:g}" if maximum == math.inf else f"within [{minimum:g}, {maximum:g}]"
    raise LaunchError(path, line_of(parent, where.rpartition(".")[2]), where,
                      f"expected a number {bounds}, got {repr(value)[:40]}")
