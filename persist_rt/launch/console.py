"""What `persist launch` prints: node output behind a coloured name prefix, and the main job's progress."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta",
           "bright_green", "bright_yellow", "bright_blue")
PROGRESS_PREFIX = "progress."
PLAIN_PROGRESS_EVERY_S = 10.0  # without a terminal, one progress line this often


@dataclass
class ProgressSnapshot:
    """The main job's progress, read from the gauges it publishes (``progress.steps``, ``progress.total``)."""

    steps: float | None = None
    total: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_gauges(cls, gauges: dict[str, Any], show: list[str]) -> ProgressSnapshot | None:
        steps = gauges.get(f"{PROGRESS_PREFIX}steps")
        extra = {k.removeprefix(PROGRESS_PREFIX): v for k, v in gauges.items()
                 if k.startswith(PROGRESS_PREFIX) and k not in (f"{PROGRESS_PREFIX}steps", f"{PROGRESS_PREFIX}total")}
        extra.update({k: gauges[k] for k in show if k in gauges})
        if steps is None and not extra:
            return None
        total = gauges.get(f"{PROGRESS_PREFIX}total") or None
        return cls(steps, total, extra)

    def fields(self) -> str:
        return "  ".join(f"{k}={_short(v)}" for k, v in self.extra.items())

    def line(self) -> str:
        head = f"{_short(self.steps or 0)}"
        if self.total:
            head += f"/{_short(self.total)} ({100.0 * (self.steps or 0) / self.total:.0f}%)"
        return f"{head}  {self.fields()}".rstrip()


def _short(v: float) -> str:
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LaunchConsole:
    """Thread-safe printing of node lines; a live progress bar on a terminal, plain lines otherwise."""

    def __init__(self, main: str | None = None, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True, stderr=False)
        self.tty = self.console.is_terminal
        self.main = main
        self._colours: dict[str, str] = {}
        self._width = 8
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain = 0.0
        self._first: tuple[float, float] | None = None  # (time, steps) of the first progress seen

    def register(self, name: str) -> None:
        self._colours.setdefault(name, COLOURS[len(self._colours) % len(COLOURS)])
        self._width = max(self._width, len(name))

    def node_line(self, name: str, line: str) -> None:
        line = re.sub(rf"^\[{re.escape(name)}\]\s?", "", line.rstrip("\n"))  # the node's own prefix: shown once
        text = Text(f"{name:>{self._width}} | ", style=self._colours.get(name, "white"))
        text.append(line)
        with self._lock:
            self.console.print(text)

    def info(self, message: str, style: str = "bold") -> None:
        text = Text(f"{'launch':>{self._width}} | ", style="bold white")
        text.append(message, style=style)
        with self._lock:
            self.console.print(text)

    def progress(self, snap: ProgressSnapshot, now: float) -> None:
        if self._first is None:
            self._first = (now, snap.steps or 0.0)
        if not self.tty:
            if now - self._last_plain >= PLAIN_PROGRESS_EVERY_S:
                self._last_plain = now
                self.info(f"progress {self.main}: {snap.line()}  {self.timing(snap, now)}", style="")
            return
        with self._lock:
            if self._progress is None:
                columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[extra]}"))
                self._progress = Progress(*columns, console=self.console, transient=False)
                self._progress.start()
                self._task = self._progress.add_task(self.main or "main", total=snap.total, extra="")
            assert self._task is not None
            self._progress.update(self._task, completed=snap.steps or 0, total=snap.total, extra=snap.fields())

    def timing(self, snap: ProgressSnapshot, now: float) -> str:
        """Elapsed time since the first progress seen, and the time left at the rate since then (as the bar's)."""
        assert self._first is not None
        t0, steps0 = self._first
        elapsed = now - t0
        text = f"elapsed {_clock(elapsed)}"
        rate = ((snap.steps or 0.0) - steps0) / elapsed if elapsed > 0 else 0.0
        if snap.total and rate > 0:
            text += f"  eta {_clock(max(0.0, snap.total - (snap.steps or 0.0)) / rate)}"
        return text

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

