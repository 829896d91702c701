"""Launch files and supervision: `persist launch FILE` reads, validates, starts and watches a graph."""

from persist_rt.launch.errors import LaunchError
from persist_rt.launch.loader import Overrides, load_launch
from persist_rt.launch.spec import LaunchSpec, NodeSpec, RespawnPolicy

__all__ = ["LaunchError", "LaunchSpec", "NodeSpec", "Overrides", "RespawnPolicy", "load_launch"]
