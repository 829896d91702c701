"""Typed node parameters: declared on the class, validated on every write, live-updatable.

    class Talker(Node):
        rate_hz = Param(10.0, "publish rate", gt=0)

Values from a launch file or the CLI may arrive as strings; ``coerce`` converts them by the
declared type and rejects what does not fit with a ``ParamError`` naming the parameter.

A parameter may hold a whole typed config (``config="module:Class"``): a mapping of some of the class's
fields, checked field by field by ``Class.check_mapping`` (errors name ``param.field``); ``Class.mapping_defaults``
gives every field it may set with its default (listed as the default, and under the value). The class is
imported by name on first use, so its module must be cheap to import (no torch).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any


class ParamError(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"parameter `{name}`: {reason}")
        self.name = name
        self.reason = reason


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Param:
    """A declared parameter. Reading it on a node instance gives its current value."""

    def __init__(
        self,
        default: Any,
        doc: str = "",
        *,
        type: type | None = None,
        choices: Sequence[Any] | None = None,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        validate: Callable[[Any], str | None] | None = None,
        read_only: bool = False,
        config: str | None = None,
    ) -> None:
        self.default = default
        self.doc = doc
        self.type = type if type is not None else (builtins_type(default))
        self.choices = tuple(choices) if choices is not None else None
        self.bounds = (ge, gt, le, lt)
        self.validate = validate
        self.read_only = read_only
        self.config = config  # "module:Class" of a typed config whose fields this mapping sets
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, node: Any, owner: type | None = None) -> Any:
        if node is None:
            return self
        return node._param_values[self.name]

    def __set__(self, node: Any, value: Any) -> None:
        node.set_param(self.name, value)

    def coerce(self, value: Any) -> Any:
        """The value converted to the declared type, or ParamError."""
        name, t = self.name, self.type
        if self.config is not None:
            return self.check_config(value)
        if value is None and self.default is None:
            return None
        if isinstance(value, str) and t is not str:
            value = _parse_text(name, value, t)
        if t is bool:
            if not isinstance(value, bool):
                raise ParamError(name, f"expected a bool, got {value!r}")
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParamError(name, f"expected a number, got {value!r}")
            value = float(value)
        elif t is int:
            if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float)
                                                                           and value.is_integer())):
                raise ParamError(name, f"expected an integer, got {value!r}")
            value = int(value)
        elif t is list:
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list):
                raise ParamError(name, f"expected a list, got {value!r}")
        elif t is not type(None) and not isinstance(value, t):
            raise ParamError(name, f"expected {t.__name__}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParamError(name, f"{value!r} is not one of {list(self.choices)}")
        ge, gt, le, lt = self.bounds
        if ge is not None and value < ge:
            raise ParamError(name, f"{value!r} is below the minimum {ge}")
        if gt is not None and value <= gt:
            raise ParamError(name, f"{value!r} must be greater than {gt}")
        if le is not None and value > le:
            raise ParamError(name, f"{value!r} is above the maximum {le}")
        if lt is not None and value >= lt:
            raise ParamError(name, f"{value!r} must be less than {lt}")
        if self.validate is not None:
            problem = self.validate(value)
            if problem:
                raise ParamError(name, problem)
        return value

    def config_class(self) -> Any:
        module, _, cls = (self.config or "").partition(":")
        return getattr(importlib.import_module(module), cls)

    def check_config(self, value: Any) -> dict[str, Any]:
        try:
            return self.config_class().check_mapping(value)
        except ValueError as exc:
            field = getattr(exc, "field", "")
            where = f"{self.name}.{field}" if field else self.name
            raise ParamError(self.name, f"{where}: {getattr(exc, 'reason', exc)}") from None

    def effective(self, value: Any) -> Any:
        """What the parameter amounts to: a config mapping over its class's defaults (``mapping_defaults``)."""
        if self.config is None:
            return value
        return {**self.config_class().mapping_defaults(), **value}

    def describe(self) -> dict[str, Any]:
        """Name, type, default (a config's: every field with its class default), doc, choices, read-only."""
        default = self.effective(self.default)
        return {"name": self.name, "type": self.type.__name__, "default": default, "doc": self.doc,
                "choices": list(self.choices) if self.choices else None, "read_only": self.read_only}


def builtins_type(default: Any) -> type:
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, list | tuple):
        return list
    if isinstance(default, dict):
        return dict
    return type(default)


def _parse_text(name: str, text: str, t: type) -> Any:
    s = text.strip()
    if t is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise ParamError(name, f"expected true/false, got {text!r}")
    if t is int:
        try:
            return int(s)
        except ValueError:
            raise ParamError(name, f"expected an integer, got {text!r}") from None
    if t is float:
        try:
            return float(s)
        except ValueError:
            raise ParamError(name, f"expected a number, got {text!r}") from None
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        raise ParamError(name, f"expected JSON for a {t.__name__}, got {text!r}") from None


def collect(cls: type) -> dict[str, Param]:
    """All Params declared on a node class and its bases, subclass definitions winning."""
    found: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for key, value in vars(klass).items():
            if isinstance(value, Param):
                found[key] = value
    return found
