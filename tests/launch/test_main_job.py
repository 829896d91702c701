"""The main job ends the launch; its summary is merged; a failing node makes the exit code non-zero."""

from __future__ import annotations

import json
from pathlib import Path

from tests.launch.conftest import HERE, persist, run_processes


def test_main_job_ends_the_launch_and_its_summary_is_kept(tmp_path: Path) -> None:
    run = tmp_path / "run-main"
    out = persist("launch", str(HERE / "files" / "main_job.yaml"), "--run-dir", str(run), "--steps", "40",
                  "--seed", "4", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["seed"] == 4 and summary["fallback"] == "zero"  # the job's own part
    assert summary["launch"]["reason"] == "main job job finished" and summary["launch"]["exit_code"] == 0
    assert summary["launch"]["nodes"]["talker"]["status"] == "stopped"
    assert run_processes(run.name) == []


def test_a_node_that_fails_to_start_fails_the_launch(tmp_path: Path) -> None:
    run = tmp_path / "run-broken"
    out = persist("launch", str(HERE / "files" / "broken.yaml"), "--run-dir", str(run), cwd=tmp_path)
    assert out.returncode == 1
    assert "FAILED: node broken exited with code" in out.stdout and "broken on purpose" in out.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["launch"]["exit_code"] == 1 and summary["launch"]["nodes"]["talker"]["status"] == "stopped"
    assert run_processes(run.name) == []
