"""The main job's progress: a live bar on a terminal, plain lines with elapsed time and ETA otherwise."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from persist_rt.launch.console import LaunchConsole, ProgressSnapshot
from tests.launch.conftest import HERE, persist

MAIN_JOB = HERE / "files" / "main_job.yaml"
PLAIN = re.compile(r"launch \| progress job: \d+/300 \(\d+%\)  progress\.steps=\d+  elapsed \d:\d\d:\d\d")


def test_without_a_terminal_progress_is_plain_lines(tmp_path: Path) -> None:
    out = persist("launch", str(MAIN_JOB), "--run-dir", str(tmp_path / "run"), "--steps", "300", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert PLAIN.search(out.stdout), out.stdout
    assert "\x1b[" not in out.stdout and "\r" not in out.stdout  # no bar, no cursor movement: a log reads as is


def test_plain_lines_give_elapsed_time_and_eta() -> None:
    buffer = io.StringIO()
    display = LaunchConsole("env", Console(file=buffer, force_terminal=False, width=200))
    for now, steps in ((100.0, 0), (105.0, 500), (110.0, 1000)):  # the gauges the env publishes
        snap = ProgressSnapshot.from_gauges({"progress.steps": steps, "progress.total": 10_000, "episodes": 3},
                                            ["episodes"])
        assert snap is not None
        display.progress(snap, now)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2  # one line per 10 s, not one per poll
    assert lines[0].endswith("0/10000 (0%)  episodes=3  elapsed 0:00:00")
    assert lines[1].endswith("1000/10000 (10%)  episodes=3  elapsed 0:00:10  eta 0:01:30")  # 100 steps/s


def test_on_a_terminal_progress_is_a_live_bar(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "persist_rt.cli", "launch", str(MAIN_JOB), "--run-dir",
                             str(tmp_path / "run"), "--steps", "300"], cwd=tmp_path, stdin=secondary,
                            stdout=secondary, stderr=secondary, env={**os.environ, "COLUMNS": "160"})
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "━" in text and "\r" in text  # rich's bar, redrawn in place
    assert "/300" in text and "0:00:0" in text  # steps of the total, elapsed time
    assert not PLAIN.search(text)
