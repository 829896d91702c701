"""The coupler and allocator nodes as real processes on real sockets, fed by a stand-in env."""

from __future__ import annotations

import json

from tests.runtime.conftest import Graph, Proc, eventually
from tests.runtime.conftest import graph as graph  # the runtime tests' process fixture

WORLD = {"num_agents": 2}


def _node(graph: Graph, kind: str, name: str, params: dict) -> Proc:
    return graph._spawn(name, ["-m", "persist_rt.run", "--kind", kind, "--name", name, "--registry", graph.registry,
                               "--params", json.dumps(params)])  # fmt: skip


def test_coupler_and_allocator_nodes_keep_bodies_apart_and_refuse_bad_requests(graph: Graph) -> None:
    graph.start_registry(lease_s=60.0)
    coupler = _node(graph, "coupler", "coupler", {"config": WORLD})
    allocator = _node(graph, "allocator", "allocator", {"config": WORLD})
    graph.endpoint("coupler"), graph.endpoint("allocator")
    _node(graph, "tests/cbf_coupler/driver_node.py:MultiDriver", "driver", {"steps": 60})
    gauges = eventually(lambda: (s := graph.stats("driver"))["counters"].get("steps", 0) >= 60 and s["gauges"],
                        timeout=30.0, what="60 coupled steps")  # fmt: skip
    counters = graph.stats("driver")["counters"]
    assert gauges["min_gap"] >= -1e-9  # two bodies sent straight through each other never came closer than d
    assert counters["coupled"] > 0 and gauges["goal_error"] < 1.0  # the coupler acted, and they got past
    coupler_stats = graph.stats("coupler")
    assert coupler_stats["gauges"]["coupler.interventions"] > 0 and coupler_stats["gauges"]["coupler.infeasible"] == 0
    # the allocator answered every good request, refused the 6 that named station 99 by field, and kept running
    allocator_stats = eventually(lambda: (s := graph.stats("allocator"))["counters"].get("rejected.station") == 6
                                 and s, what="6 refused requests")  # fmt: skip
    assert counters["grants"] == 54 and gauges["grant_sum_max"] <= 1.0 + 1e-6
    assert gauges["grant_first"] > 0.5  # the body with the smaller margin gets the larger share
    assert 0.0 < allocator_stats["gauges"]["allocator.jain_index"] <= 1.0
    assert coupler.popen.poll() is None and allocator.popen.poll() is None
