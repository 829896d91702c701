"""Structured logging: JSON lines in the run directory, readable lines on the console.

Every record carries the run id and the node name. The console line goes to stderr as
``[node] LEVEL event key=value ...``; ``persist launch`` colours the prefix per node.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import structlog

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _Sink:
    """structlog's final stage: write one JSON line to the file and one readable line to stderr."""

    def __init__(self, node: str, run_dir: Path | None, console_level: str) -> None:
        self.node = node
        self.file: TextIO | None = None
        if run_dir is not None:
            log_dir = run_dir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            self.file = open(log_dir / f"{node.replace('/', '_')}.jsonl", "a", buffering=1)
        self.console_level = LEVELS.get(console_level, 20)

    def msg(self, **record: Any) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record, default=str) + "\n")
        level = record.get("level", "info")
        if LEVELS.get(level, 20) >= self.console_level:
            extras = " ".join(f"{k}={v}" for k, v in record.items()
                              if k not in ("event", "level", "node", "run_id", "ts", "exception"))
            line = f"[{self.node}] {level.upper():7} {record.get('event')} {extras}".rstrip()
            if "exception" in record:
                line += "\n" + str(record["exception"])
            print(line, file=sys.stderr, flush=True)

    debug = info = warning = error = critical = exception = log = msg


def should_log(nth: float) -> bool:
    """Log the ``nth`` occurrence of a repeated rejection? The first five, then every hundredth: a flood of bad
    input is counted in full but cannot flood the log (or stall a node on a full console pipe)."""
    return nth <= 5 or nth % 100 == 0


def _render(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return event_dict


def get_logger(node: str, run_dir: Path | None = None) -> Any:
    sink = _Sink(node, run_dir, os.environ.get("PERSIST_LOG_LEVEL", "info"))
    return structlog.wrap_logger(
        sink,
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            lambda _, __, ev: {"ts": round(time.time(), 6), "run_id": os.environ.get("PERSIST_RUN_ID", ""),
                               "node": node, **ev},
            _render,
        ],
        context_class=dict,
    )
