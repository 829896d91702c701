"""A user's node that extends an existing node class instead of Node itself."""

from __future__ import annotations

from tests.launch.probe_node import Probe


class LoudProbe(Probe):
    """The Probe, found by `persist attach` and by a launch file without naming the class."""
