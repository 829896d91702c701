"""YAML loading that remembers where things are, so errors can name the line.

Mappings load as ``LineDict`` and sequences as ``LineList``: plain dict/list subclasses that also
hold the (1-based) line of themselves and of each key or item. Duplicate keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from persist_rt.launch.errors import LaunchError


class LineDict(dict):
    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


def line_of(container: Any, key: Any) -> int | None:
    """The line of ``container[key]`` (or of the container) if it was loaded from YAML."""
    if isinstance(container, LineDict | LineList):
        return container.line_of(key) or None
    return None


class _Loader(yaml.SafeLoader):
    file: str = "<launch>"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise LaunchError(loader.file, key_node.start_mark.line + 1, "", f"mapping key {key!r} is not a scalar")
        if key in out:
            raise LaunchError(loader.file, key_node.start_mark.line + 1, str(key), "duplicate key")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; syntax errors become LaunchError with the line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LaunchError(path, None, "", f"cannot read the file ({exc.strerror or exc})") from None
    loader = _Loader(text)
    loader.file = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise LaunchError(path, line, "", f"YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise LaunchError(path, None, "", f"YAML syntax error: {exc}") from None
    finally:
        loader.dispose()


def parse_scalar(text: str) -> Any:
    """A command-line value (``--arg x=3``) typed the way YAML would type it."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool | list | dict) or value is None else text
