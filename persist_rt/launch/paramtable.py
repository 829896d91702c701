"""A node kind's declared parameters, read from its source without importing it.

Launch files are validated before anything starts, and importing a node's module may pull in
torch (seconds of start-up) or fail for reasons that belong to the node. So the class body is
parsed with ``ast``: every ``name = Param(default, doc, type=..., choices=..., ge=..., ...)`` whose
arguments are literals (or module-level literal constants) becomes a real ``Param`` whose
``coerce`` checks the launch value. Bases are followed through ``from x import Y`` to
``persist_rt.Node``; when the chain is complete, unknown parameter names are rejected too.
Declarations the parser cannot read (computed defaults, ``validate=`` callables) are left to the
node itself, which checks them again when it starts.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persist_rt.kinds import BUILTIN, KindError, check_kind, load_kind, split_kind
from persist_rt.params import Param, collect

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict,
                           "tuple": list}
_NODE_MODULES = {"persist_rt", "persist_rt.node"}


@dataclass
class ParamTable:
    kind: str
    params: dict[str, Param] = field(default_factory=dict)
    unchecked: set[str] = field(default_factory=set)  # declared, but only the node can check the value
    complete: bool = False  # every base resolved down to Node: unknown names are errors

    def known(self) -> list[str]:
        return sorted({*self.params, *self.unchecked})

    def declares(self, name: str) -> bool:
        return name in self.params or name in self.unchecked


def module_file(module: str) -> Path | None:
    """The source file of ``module``, found without importing it or its packages.

    Only the top-level package is located (``find_spec`` of a top-level name executes nothing, and
    it sees editable installs); the rest of the dotted path is walked on disk.
    """
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for root in spec.submodule_search_locations or []:
        base = Path(root).joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def kind_source(kind: str, base_dir: Path | None = None) -> tuple[Path, str]:
    """(source file, class name) of a kind; KindError when it cannot be found."""
    check_kind(kind, base_dir)
    where, cls_name = split_kind(kind)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        return path, cls_name
    path = module_file(where)
    if path is None:
        label = f"built-in kind {kind!r}" if kind in BUILTIN else f"node kind {kind!r}"
        raise KindError(f"{label}: module {where} does not exist (yet)")
    return path, cls_name


def param_table(kind: str, base_dir: Path | None = None) -> ParamTable:
    """Declared parameters of ``kind``. Raises KindError if the kind or its class cannot be found.

    Built-in kinds are only ever parsed. A user kind (``module:Class``, ``file.py:Class``, ``file.py``) whose
    parameters cannot be read statically is imported, which is what starting it would do anyway.
    """
    path, cls_name = kind_source(kind, base_dir)
    table = ParamTable(kind)
    if cls_name:  # a bare file.py names no class: importing it is the only way to find it
        _read_class(path, cls_name, table, seen=set())
    if not table.complete and kind not in BUILTIN:
        cls = load_kind(kind, base_dir)
        table = ParamTable(kind, params=collect(cls), complete=True)
    return table


def _read_class(path: Path, cls_name: str, table: ParamTable, seen: set[tuple[Path, str]]) -> None:
    if (path, cls_name) in seen:
        return
    seen.add((path, cls_name))
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError) as exc:
        raise KindError(f"cannot read {path}: {exc}") from None
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    cls = classes.get(cls_name)
    if cls is None:
        raise KindError(f"{path} has no class {cls_name}")
    constants = _module_constants(tree)
    imports = _imported_names(tree, path)
    complete = True
    # Bases first, so the subclass's declarations win.
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else None
        if name is None:
            complete = False
        elif name == "Node" and imports.get("Node", ("", ""))[0] in _NODE_MODULES:
            continue
        elif name in classes:
            sub = ParamTable(table.kind)
            _read_class(path, name, sub, seen)
            _merge(table, sub)
            complete = complete and sub.complete
        elif name in imports:
            module, original = imports[name]
            src = module_file(module)
            if src is None:
                complete = False
                continue
            sub = ParamTable(table.kind)
            try:
                _read_class(src, original, sub, seen)
            except KindError:
                complete = False
                continue
            _merge(table, sub)
            complete = complete and sub.complete
        else:
            complete = False
    for stmt in cls.body:
        target, value = _assignment(stmt)
        if target is None or not _is_param_call(value):
            continue
        param = _param_from_call(value, constants)  # type: ignore[arg-type]
        table.params.pop(target, None)
        table.unchecked.discard(target)
        if param is None:
            table.unchecked.add(target)
        else:
            param.name = target
            table.params[target] = param
    table.complete = complete


def _merge(into: ParamTable, other: ParamTable) -> None:
    into.params.update(other.params)
    into.unchecked |= other.unchecked
    for name in other.params:
        into.unchecked.discard(name)


def _assignment(stmt: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value
    return None, None


def _is_param_call(value: ast.expr | None) -> bool:
    if not isinstance(value, ast.Call):
        return False
    f = value.func
    return (isinstance(f, ast.Name) and f.id == "Param") or (isinstance(f, ast.Attribute) and f.attr == "Param")


def _literal(expr: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(expr, ast.Name) and expr.id in constants:
        return constants[expr.id]
    return ast.literal_eval(expr)


def _param_from_call(call: ast.Call, constants: dict[str, Any]) -> Param | None:
    """A Param built from literal arguments, or None when something is not a literal."""
    try:
        if not call.args:
            return None
        default = _literal(call.args[0], constants)
        doc = _literal(call.args[1], constants) if len(call.args) > 1 else ""
        kwargs: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg == "type":
                if not isinstance(kw.value, ast.Name) or kw.value.id not in _TYPES:
                    return None
                kwargs["type"] = _TYPES[kw.value.id]
            elif kw.arg in ("choices", "ge", "gt", "le", "lt", "read_only", "config"):
                kwargs[kw.arg] = _literal(kw.value, constants)
            elif kw.arg == "doc":
                doc = _literal(kw.value, constants)
            else:  # validate=... and anything new: the node checks it when it starts
                return None
        return Param(default, str(doc), **kwargs)
    except (ValueError, TypeError, SyntaxError):
        return None


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stmt in tree.body:
        target, value = _assignment(stmt)
        if target is None or value is None:
            continue
        try:
            out[target] = _literal(value, out)
        except (ValueError, TypeError, SyntaxError):
            continue
    return out


def _imported_names(tree: ast.Module, path: Path) -> dict[str, tuple[str, str]]:
    """local name -> (module, original name) for every ``from module import name``."""
    out: dict[str, tuple[str, str]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module is not None and stmt.level == 0:
            for alias in stmt.names:
                out[alias.asname or alias.name] = (stmt.module, alias.name)
    return out
