"""Managed-node lifecycle (as in ROS 2): unconfigured -> inactive -> active -> finalized."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    UNCONFIGURED = "unconfigured"
    INACTIVE = "inactive"
    ACTIVE = "active"
    FINALIZED = "finalized"


# transition name -> (allowed from, goes to)
TRANSITIONS: dict[str, tuple[tuple[State, ...], State]] = {
    "configure": ((State.UNCONFIGURED,), State.INACTIVE),
    "activate": ((State.INACTIVE,), State.ACTIVE),
    "deactivate": ((State.ACTIVE,), State.INACTIVE),
    "cleanup": ((State.INACTIVE,), State.UNCONFIGURED),
    "shutdown": ((State.UNCONFIGURED, State.INACTIVE, State.ACTIVE), State.FINALIZED),
}

# a target state reached from any state by this chain of transitions
PATHS: dict[State, dict[State, list[str]]] = {
    State.UNCONFIGURED: {State.INACTIVE: ["configure"], State.ACTIVE: ["configure", "activate"]},
    State.INACTIVE: {State.ACTIVE: ["activate"], State.UNCONFIGURED: ["cleanup"]},
    State.ACTIVE: {State.INACTIVE: ["deactivate"], State.UNCONFIGURED: ["deactivate", "cleanup"]},
}


class TransitionError(ValueError):
    pass


def plan(current: State, target: str) -> list[str]:
    """Transitions that take ``current`` to ``target`` (a state name or a transition name)."""
    if target in TRANSITIONS:
        allowed, _ = TRANSITIONS[target]
        if current not in allowed:
            raise TransitionError(f"transition `{target}` is not allowed from state {current}")
        return [target]
    try:
        goal = State(target)
    except ValueError:
        names = ", ".join([*TRANSITIONS, *(s.value for s in State)])
        raise TransitionError(f"unknown state or transition {target!r} (one of: {names})") from None
    if goal == current:
        return []
    if goal == State.FINALIZED:
        return ["shutdown"]
    path = PATHS.get(current, {}).get(goal)
    if path is None:
        raise TransitionError(f"no way from {current} to {goal}")
    return path
