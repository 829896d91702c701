"""PERSIST runtime: nodes, transport, discovery, parameters, lifecycle, launch and CLI."""

from persist_rt.node import Node
from persist_rt.params import Param, ParamError
from persist_rt.qos import QoS, latest, queue, reliable

__all__ = ["Node", "Param", "ParamError", "QoS", "latest", "queue", "reliable"]
