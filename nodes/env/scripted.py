"""A scripted GridLife controller: refill the most-needed variable when low, else collect tokens.

It reads the true state (positions, internal variables, tokens), so the env node can use it as its
conservative fallback, and the tuning benchmark uses it to show that the arena is survivable.
"""

from dataclasses import dataclass

import numpy as np

from nodes.env.gridlife import (
    STATION_KINDS,
    GridLifeConfig,
    GridLifeLayout,
    build_layout,
    edge_distance,
    inside_any,
)


@dataclass(frozen=True)
class SeekStationParams:
    seek_slack_s: float = 4.0  # head for a station when the time left after reaching it drops below this
    # plus the longest hop between stations of different kinds
    critical_slack_s: float = 2.0  # leave a station being used when another variable gets this urgent
    full_level: float = 0.97  # a station is left once its variable is this close to the good end
    hazard_buffer: float = 0.35  # metres from a hazard edge within which motion towards it is cancelled
    hot_zone_buffer: float = 0.2  # the same for hot zones
    hot_token_penalty: float = 5.0  # metres added to the distance of tokens that lie in a hot zone


def seek_station_policy(
    positions: np.ndarray,
    internal: np.ndarray,
    tokens: np.ndarray,
    cfg: GridLifeConfig,
    layout: GridLifeLayout | None = None,
    params: SeekStationParams | None = None,
) -> np.ndarray:
    """Actions (N, 2) float32 in [-1, 1] from positions (N, 2), internal (N, 3) and tokens (N, K, 2)."""
    layout = build_layout(cfg) if layout is None else layout
    params = SeekStationParams() if params is None else params
    pos = np.asarray(positions, dtype=np.float64)
    h = np.asarray(internal, dtype=np.float64)
    n = pos.shape[0]
    rows = np.arange(n)

    # nearest station of each kind: centres (N, 3, 2), centre distances (N, 3)
    station_centre = np.zeros((n, 3, 2))
    station_dist = np.zeros((n, 3))
    for k, kind in enumerate(STATION_KINDS):
        centres, _ = layout.stations(kind)
        dist = np.linalg.norm(pos[:, None, :] - centres, axis=-1)
        nearest = np.argmin(dist, axis=1)
        station_centre[:, k] = centres[nearest]
        station_dist[:, k] = dist[rows, nearest]

    # seconds each variable lasts while travelling at unit speed, minus the time to reach its station
    travel_effort = 0.5
    rates = np.array(
        [
            cfg.k_basal + cfg.k_effort * travel_effort,
            cfg.eta_basal + cfg.eta_effort * travel_effort,
            cfg.omega_wear * travel_effort,
        ]
    )
    headroom = np.column_stack([h[:, 0], 1.0 - h[:, 1], h[:, 2]])
    lifetime = headroom / np.maximum(rates, 1e-9)
    slack = lifetime - station_dist / cfg.vmax
    full = headroom >= params.full_level
    inside = station_dist <= cfg.station_radius
    urgent_elsewhere = (slack < params.critical_slack_s) & ~inside

    filling = inside & ~full & ~urgent_elsewhere.any(axis=1, keepdims=True)
    # leave time for a tour: after one station the agent may have to cross to a station of another kind
    seeking = slack < params.seek_slack_s + _longest_station_hop(cfg, layout) / cfg.vmax
    target = _nearest_token(pos, tokens, layout, params.hot_token_penalty)
    # among the variables that need a station, serve the one that runs out first; lifetimes all fall at
    # one second per second whatever the heading, so this choice does not flip back and forth en route
    seek_kind = np.argmin(np.where(seeking, lifetime, np.inf), axis=1)
    go_seek = seeking.any(axis=1)
    target = np.where(go_seek[:, None], station_centre[rows, seek_kind], target)
    fill_kind = np.argmax(filling, axis=1)
    go_fill = filling.any(axis=1)
    target = np.where(go_fill[:, None], station_centre[rows, fill_kind], target)

    # head for the target at full speed, slowing down for the last step so as to stop on it
    offset = target - pos
    dist = np.linalg.norm(offset, axis=1, keepdims=True)
    step = cfg.dt * cfg.vmax
    velocity = offset / np.maximum(dist, 1e-9) * np.minimum(1.0, dist / step)
    velocity = _avoid_discs(pos, velocity, target, layout.hazard_centres, layout.hazard_radii, params.hazard_buffer)
    # hot zones only cost heat: go round them unless the target or the agent is inside one
    velocity = _avoid_discs(pos, velocity, target, layout.hot_centres, layout.hot_radii, params.hot_zone_buffer)
    return np.clip(velocity, -1.0, 1.0).astype(np.float32)


def _longest_station_hop(cfg: GridLifeConfig, layout: GridLifeLayout) -> float:
    """The longest distance from a station to the nearest station of another kind."""
    hops = [0.0]
    for i, centre in enumerate(layout.station_centres):
        for kind in range(len(STATION_KINDS)):
            if kind != layout.station_kinds[i]:
                others = layout.station_centres[layout.station_kinds == kind]
                hops.append(float(np.min(np.linalg.norm(others - centre, axis=1))))
    return max(hops)


def _nearest_token(pos: np.ndarray, tokens: np.ndarray, layout: GridLifeLayout, hot_penalty: float) -> np.ndarray:
    """The nearest token, counting tokens inside a hot zone as `hot_penalty` metres further away."""
    if tokens.shape[1] == 0:
        return pos.copy()
    dist = np.linalg.norm(tokens - pos[:, None, :], axis=-1)
    dist = dist + hot_penalty * inside_any(tokens, layout.hot_centres, layout.hot_radii)
    return tokens[np.arange(pos.shape[0]), np.argmin(dist, axis=1)]


def _avoid_discs(
    pos: np.ndarray,
    velocity: np.ndarray,
    target: np.ndarray,
    centres: np.ndarray,
    radii: np.ndarray,
    buffer: float,
) -> np.ndarray:
    """Near a disc, cancel the velocity component towards it and slide along its edge instead.

    Discs that contain the agent or its target are left alone.
    """
    if len(radii) == 0:
        return velocity
    edge = edge_distance(pos, centres, radii)  # (N, M)
    target_edge = edge_distance(target, centres, radii)
    to_target = target - pos
    for j in range(len(radii)):
        away = pos - centres[j]
        normal = away / np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-9)
        inward = np.sum(velocity * normal, axis=1)
        close = (edge[:, j] < buffer) & (edge[:, j] > 0) & (target_edge[:, j] > 0) & (inward < 0)
        if not close.any():
            continue
        speed = np.linalg.norm(velocity, axis=1, keepdims=True)
        tangent = np.column_stack([-normal[:, 1], normal[:, 0]])
        # go round the side that faces the target
        tangent *= np.where(np.sum(tangent * to_target, axis=1) >= 0, 1.0, -1.0)[:, None]
        slid = velocity - inward[:, None] * normal
        slid_norm = np.linalg.norm(slid, axis=1, keepdims=True)
        slid = np.where(slid_norm > 1e-3 * np.maximum(speed, 1e-9), slid / np.maximum(slid_norm, 1e-12), tangent)
        # push outwards a little when inside the buffer, so that the edge is never reached
        push = np.clip((buffer - edge[:, j]) / buffer, 0.0, 1.0)[:, None] * 0.5 * normal
        corrected = slid + push
        corrected /= np.maximum(np.linalg.norm(corrected, axis=1, keepdims=True), 1e-9)
        velocity = np.where(close[:, None], corrected * np.maximum(speed, 0.5), velocity)
    return velocity
