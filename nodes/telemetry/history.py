"""The run's metric history: one bounded, progressively downsampled series per (node, metric).

A series keeps at most ``capacity`` points. When it is full it drops every other point and from
then on keeps only every second sample it is offered (then every fourth, ...), so it always spans
the whole run at a resolution that halves as the run doubles, and memory stays fixed.

On disk (``metrics.jsonl`` in the run directory) the first line is a header and every further line
is one series: ``{"node", "name", "type", "t": [wall s], "v": [values]}``; ``load_history`` reads it.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persist_rt.checkpoint import atomic_write_chunks

FORMAT = "persist.metrics_history"
VERSION = 1


class SeriesHistory:
    def __init__(self, kind: str, capacity: int = 2048) -> None:
        if capacity < 4 or capacity % 2:
            raise ValueError(f"history capacity must be an even number >= 4, got {capacity}")
        self.kind = kind  # "counter" | "gauge"
        self.capacity = capacity
        self.stride = 1
        # allocated whole (and written, so resident) now: a long run's memory does not creep up as series fill
        self.t = array("d", bytes(8 * capacity))
        self.v = array("d", bytes(8 * capacity))
        self.n = 0  # points kept
        self.last: tuple[float, float] | None = None
        self._offered = 0

    def add(self, t: float, value: float) -> None:
        self.last = (t, value)
        self._offered += 1
        if (self._offered - 1) % self.stride:
            return
        if self.n >= self.capacity:  # full: keep every other point, in place
            half = self.capacity // 2
            self.t[:half] = self.t[::2]
            self.v[:half] = self.v[::2]
            self.n = half
            self.stride *= 2
            if (self._offered - 1) % self.stride:
                return
        self.t[self.n] = t
        self.v[self.n] = value
        self.n += 1

    def points(self) -> tuple[array, array]:
        """Copies of the kept points plus the newest value, so the history ends where the run ended."""
        t, v = self.t[: self.n], self.v[: self.n]
        if self.last is not None and (not t or t[-1] != self.last[0]):
            t.append(self.last[0])
            v.append(self.last[1])
        return t, v

    def __len__(self) -> int:
        return self.n


@dataclass
class Series:
    node: str
    name: str
    kind: str
    t: Sequence[float]
    v: Sequence[float]


def freeze(series: dict[tuple[str, str], SeriesHistory]) -> list[Series]:
    """Compact copies of every series (arrays of doubles), safe to hand to another thread for writing."""
    out = []
    for (node, name), h in sorted(series.items()):
        t, v = h.points()
        out.append(Series(node, name, h.kind, t, v))
    return out


def write_history(path: Path, run_id: str, series: list[Series]) -> None:
    """Write every series atomically (temp file, fsync, rename): a reader never sees half a file. Line by line,
    so that only one series is ever held as JSON."""

    def lines() -> Iterator[bytes]:
        yield (json.dumps({"format": FORMAT, "version": VERSION, "run_id": run_id}) + "\n").encode()
        for s in series:
            record = {"node": s.node, "name": s.name, "type": s.kind, "t": [round(x, 3) for x in s.t],
                      "v": list(s.v)}
            yield (json.dumps(record) + "\n").encode()

    atomic_write_chunks(path, lines())


def load_history(path: str | os.PathLike[str]) -> dict[tuple[str, str], Series]:
    """Read a history file; a malformed one raises ValueError naming the line and the field."""
    path = Path(path)
    out: dict[tuple[str, str], Series] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object")
            if lineno == 1:
                if record.get("format") != FORMAT or record.get("version") != VERSION:
                    raise ValueError(f"{where}: field `format`/`version`: expected {FORMAT} v{VERSION}, "
                                     f"got {record.get('format')!r} v{record.get('version')!r}")
                continue
            for key, kind in (("node", str), ("name", str), ("type", str), ("t", list), ("v", list)):
                if not isinstance(record.get(key), kind):
                    raise ValueError(f"{where}: field `{key}` must be a {kind.__name__}")
            if len(record["t"]) != len(record["v"]):
                raise ValueError(f"{where}: fields `t` and `v` differ in length")
            out[(record["node"], record["name"])] = Series(record["node"], record["name"], record["type"],
                                                           record["t"], record["v"])
    if not out and not path.stat().st_size:
        raise ValueError(f"{path}: empty file, expected a {FORMAT} header")
    return out
