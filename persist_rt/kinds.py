"""Resolve a node kind: a built-in name, ``module:Class`` or ``path/to/file.py:Class``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
    "gym_shield": "nodes.shield.any_env_node:AnyEnvShieldNode",
    "telemetry": "nodes.telemetry.node:TelemetryNode",
    "talker": "nodes.examples:Talker",
    "listener": "nodes.examples:Listener",
}


class KindError(ValueError):
    pass


def split_kind(kind: str) -> tuple[str, str]:
    """(module or file, class name) for a kind string, without importing anything.

    A bare ``path/to/file.py`` gives an empty class name: the file's one Node class, found on load.
    """
    target = BUILTIN.get(kind, kind)
    if target.endswith(".py") and ":" not in target:
        return target, ""
    if ":" not in target:
        raise KindError(f"unknown node kind {kind!r}: not built in ({', '.join(sorted(BUILTIN))}), "
                        "and not of the form module:Class, path/to/file.py or path/to/file.py:Class")
    where, _, cls_name = target.rpartition(":")
    if not where or not cls_name.isidentifier():
        raise KindError(f"node kind {kind!r}: expected module:Class, path/to/file.py or path/to/file.py:Class")
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


def _import(kind: str, where: str, base_dir: Path | None) -> ModuleType:
    if not where.endswith(".py"):
        try:
            return importlib.import_module(where)
        except ImportError as exc:
            raise KindError(f"node kind {kind!r}: cannot import {where} ({exc})") from None
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
    return module


def node_classes(module: ModuleType) -> list[type]:
    """The Node classes a module defines itself (not imported ones), leaves only: a user's
    ``class MyEnv(GridLifeNode)`` counts, and so does a local base that nothing else extends."""
    from persist_rt.node import Node

    own = [c for c in vars(module).values()
           if isinstance(c, type) and issubclass(c, Node) and c.__module__ == module.__name__]
    return [c for c in own if not any(o is not c and issubclass(o, c) for o in own)]


def load_kind(kind: str, base_dir: Path | None = None) -> type:
    where, cls_name = split_kind(kind)
    module = _import(kind, where, base_dir)
    if not cls_name:
        found = node_classes(module)
        if len(found) != 1:
            names = [c.__name__ for c in found] or "none"
            raise KindError(f"node kind {kind!r}: expected exactly one Node class in {where}, found {names}; "
                            "name it as FILE.py:Class")
        return found[0]
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise KindError(f"node kind {kind!r}: {where} has no class {cls_name}")
    from persist_rt.node import Node

    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise KindError(f"node kind {kind!r}: {cls_name} is not a persist_rt.Node subclass")
    return cls
