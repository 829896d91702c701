"""The allocator node: answers the env's ``allocator/requests`` with ``allocator/grants`` (docs/allocator.md).

Rows are bodies, arena-major (row ``i * num_agents + j`` is body j of arena i; the number of arenas is the rows
over ``num_agents``, so evaluation phases may run more arenas than training). A request that the rule cannot
take (a station that does not exist, a demand outside [0, 1], the wrong number of rows) is refused by field,
counted as ``rejected.<field>`` and answered with nothing: the env then gives that step equal shares (its
``GrantBook``), as it does while the allocator is down. Jain's index over the bodies' satisfaction goes to
telemetry as the gauge ``allocator.jain_index`` and with every answer.
"""

from __future__ import annotations

import numpy as np

from nodes.allocator.core import Allocator, AllocatorConfig
from nodes.env.gridlife import build_layout
from nodes.env.multi_gridlife import MultiGridLifeConfig
from persist_rt import Node, Param
from persist_rt.qos import LOCKSTEP
from protocols import StationGrants, StationRequests
from protocols.topics import ALLOCATOR_GRANTS, ALLOCATOR_REQUESTS


class AllocatorNode(Node):
    kind = "allocator"

    config = Param({}, "multi-agent GridLife parameters: must match the env's", read_only=True)
    margin_floor = Param(0.05, "margins below this weigh as this", gt=0, read_only=True)

    def on_configure(self) -> None:
        env_cfg = MultiGridLifeConfig.from_params(self.config)
        self.agents = env_cfg.num_agents
        self.n_stations = len(build_layout(env_cfg.world).station_kinds)
        self.core = Allocator(AllocatorConfig(margin_floor=self.margin_floor), self.agents)
        self.grants_pub = self.publisher(ALLOCATOR_GRANTS, StationGrants, reliable=True)
        self.subscribe(ALLOCATOR_REQUESTS, StationRequests, self.on_requests, qos=LOCKSTEP)

    def on_requests(self, msg: StationRequests) -> None:
        rows = msg.station.shape[0]
        try:
            if rows == 0 or rows % self.agents:
                raise ValueError(f"station: expected a multiple of {self.agents} rows (bodies per arena), got {rows}")
            shape = (rows // self.agents, self.agents)
            grants = self.core.allocate(msg.station.reshape(shape), msg.demand.reshape(shape),
                                        msg.margin.reshape(shape), self.n_stations)  # fmt: skip
        except ValueError as exc:
            field = str(exc).split(":", 1)[0]
            self.count(f"rejected.{field}")
            self.log.warning("rejected", field=field, reason=str(exc))
            return
        jain = self.core.jain_index()
        self.gauge("allocator.jain_index", jain)
        self.grants_pub.publish(StationGrants(step=msg.step, grants=grants.reshape(-1).astype(np.float32),
                                              jain_index=jain), step=msg.step)  # fmt: skip
