"""Resolve a node kind: a built-in name, ``module:Class`` or ``path/to/file.py:Class``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

# Built-in kinds. Modules are imported only when a node of that kind starts (torch stays out of
# processes that do not need it).
BUILTIN: dict[str, str] = {
    "gridlife": "nodes.env.node:GridLifeNode",
    "agent": "nodes.agent.node:AgentNode",
    "shield": "nodes.shield.node:ShieldNode",
    "learner": "nodes.learner.node:LearnerNode",
    "gym": "nodes.env.node:GymNode",
    "estimator": "nodes.estimator.node:EstimatorNode",
    "coupler": "nodes.cbf_coupler.node:CouplerNode",
    "multi_gridlife": "nodes.env.multi_node:MultiGridLifeNode",
    "multi_scripted": "nodes.env.multi_scripted:MultiScriptedNode",
    "allocator": "nodes.allocator.node:AllocatorNode",
    "passthrough": "nodes.passthrough:PassThroughNode",
    "telemetry": "nodes.telemetry.node:TelemetryNode",
    "talker": "nodes.examples:Talker",
    "listener": "nodes.examples:Listener",
}


class KindError(ValueError):
    pass


def split_kind(kind: str) -> tuple[str, str]:
    """(module or file, class name) for a kind string, without importing anything."""
    target = BUILTIN.get(kind, kind)
    if ":" not in target:
        raise KindError(f"unknown node kind {kind!r}: not built in ({', '.join(sorted(BUILTIN))}), "
                        "and not of the form module:Class or path/to/file.py:Class")
    where, _, cls_name = target.rpartition(":")
    if not where or not cls_name.isidentifier():
        raise KindError(f"node kind {kind!r}: expected module:Class or path/to/file.py:Class")
    return where, cls_name


def check_kind(kind: str, base_dir: Path | None = None) -> None:
    """Validate that a kind can be found, without importing it (launch-file validation)."""
    where, _ = split_kind(kind)
    if where.endswith(".py"):
        path = Path(where) if base_dir is None or Path(where).is_absolute() else base_dir / where
        if not path.exists() and not Path(where).exists():
            raise KindError(f"node kind {kind!r}: file {where} does not exist")
        return
    if importlib.util.find_spec(where.split(".")[0]) is None:
        raise KindError(f"node kind {kind!r}: module {where} cannot be found")


def load_kind(kind: str, base_dir: Path | None = None) -> type:
    where, cls_name = split_kind(kind)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        if not path.exists():
            raise KindError(f"node kind {kind!r}: file {where} does not exist")
        spec = importlib.util.spec_from_file_location(f"persist_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise KindError(f"node kind {kind!r}: cannot import {where} ({exc})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise KindError(f"node kind {kind!r}: {where} has no class {cls_name}")
    from persist_rt.node import Node

    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise KindError(f"node kind {kind!r}: {cls_name} is not a persist_rt.Node subclass")
    return cls


def find_node_class(path: str) -> str:
    """For `persist attach FILE`: the kind string of the single Node subclass defined in FILE."""
    if ":" in path and not Path(path).exists():
        return path
    import ast

    tree = ast.parse(Path(path).read_text(), filename=path)
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
               and any(getattr(b, "id", getattr(b, "attr", "")) == "Node" for b in n.bases)]
    if len(classes) != 1:
        raise KindError(f"{path}: expected exactly one Node subclass, found {classes or 'none'}; "
                        "name it as FILE.py:Class")
    return f"{path}:{classes[0]}"
