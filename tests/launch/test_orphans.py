"""No orphans: a `persist launch` killed with SIGKILL takes its nodes and its registry with it."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

from tests.launch.conftest import TALKER_LISTENER, nodes_by_name, run_processes, start_launch, wait_for


def test_sigkill_of_the_supervisor_leaves_no_process(tmp_path: Path) -> None:
    run_dir = tmp_path / f"run-{uuid.uuid4().hex[:8]}"
    proc = start_launch(str(TALKER_LISTENER), "--run-dir", str(run_dir), cwd=tmp_path, log=tmp_path / "launch.log")
    try:
        registry = wait_for("the registry address", lambda: (run_dir / "registry").exists()
                            and (run_dir / "registry").read_text().strip())
        wait_for("both nodes active", lambda: {n["name"]: n["state"] for n in nodes_by_name(registry).values()}
                 == {"talker": "active", "listener": "active"})
        children = run_processes(run_dir.name)
        assert len(children) == 3, f"expected registry, talker and listener, found pids {children}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for("every node and the registry to end", lambda: run_processes(run_dir.name) == [], deadline_s=20.0)
    finally:
        for pid in run_processes(run_dir.name):  # leave nothing behind even when the test fails
            os.kill(pid, signal.SIGKILL)
