"""Start, watch and stop a launched graph: the registry, then the nodes in order, then supervision.

Every child runs in its own process group (``start_new_session``), so a signal to the group
reaches whatever the node itself started, and a Ctrl-C on the terminal reaches only this
supervisor, which then stops the nodes in reverse start order within the shutdown deadline and
kills whatever is left. The run directory collects the resolved launch file, the registry
address, one console log per node and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
import zmq

from persist_rt import services
from persist_rt.launch.console import LaunchConsole, ProgressSnapshot
from persist_rt.launch.spec import LaunchSpec, NodeSpec
from persist_rt.parent_death import SUPERVISOR_ENV
from persist_rt.security import (
    AUTHORITY_ENV,
    CLIENT,
    INTROSPECTION_ENV,
    KEYS_ENV,
    REGISTRY,
    Curve,
    KeySet,
    authority_json,
    expect_server,
    use_curve,
)

POLL_S = 0.1
REGISTRY_START_TIMEOUT_S = 15.0
REGISTRY_NAME = "registry"
PROGRESS_PERIOD_S = 0.5  # the main job's figures are read this often: the bar moves at least once a second


@dataclass
class Child:
    """One supervised process and its history."""

    name: str
    spec: NodeSpec | None  # None for the registry
    proc: subprocess.Popen[bytes] | None = None
    pgids: set[int] = field(default_factory=set)
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)  # restart times inside the respawn window
    respawn_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)
    status: str = "pending"  # pending, starting, running, respawning, exited, failed, stopped, killed
    reason: str = ""
    log: IO[str] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RunOptions:
    run_dir: Path
    duration_s: float | None = None
    registry_bind: str = "tcp://127.0.0.1:0"
    python: str = sys.executable


class Supervisor:
    def __init__(self, spec: LaunchSpec, options: RunOptions, console: LaunchConsole | None = None) -> None:
        self.spec = spec
        self.opt = options
        self.run_dir = options.run_dir.resolve()
        self.run_id = self.run_dir.name
        self.console = console or LaunchConsole(spec.main)
        self.registry = Child(REGISTRY_NAME, None)
        self.children = {n.name: Child(n.name, n) for n in spec.nodes}
        self.address = ""
        self.failures: list[str] = []
        self.reason = ""
        self.main_exit: int | None = None
        self._signals = 0
        self._started_at = time.time()
        self._threads: list[threading.Thread] = []
        self._stop_progress = threading.Event()
        self.console.register(REGISTRY_NAME)
        for name in self.children:
            self.console.register(name)
        if spec.keys:  # the supervisor's own calls (registry, progress) prove the client key
            use_curve(Curve(KeySet(spec.keys), CLIENT, zmq.Context.instance()))
            if spec.introspection == "open":
                self.console.info("introspection is open: clients without a graph key may list nodes and topics and "
                                  "read parameters and figures (docs/security.md)", style="yellow")
        else:
            self.console.info("warning: the launch file names no `keys`: no CurveZMQ, so any process that reaches "
                              "this graph's ports can connect, call its services and publish (docs/security.md)",
                              style="bold yellow")

    # --- top level ------------------------------------------------------------------------------

    def run(self) -> int:
        """Launch, supervise until the end, shut down; the exit code is 0 only if nothing failed."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._prepare_run_dir()
            if self._start_registry() and self._start_nodes():
                self.console.info(f"all {len(self.children)} nodes active; registry {self.address}; "
                                  f"run dir {self.run_dir}", style="bold green")
                self._start_progress()
                self._supervise()
        finally:
            self._shutdown()
            for s, handler in old.items():
                signal.signal(s, handler)
            code = 1 if self.failures else 0
            self._write_summary(code)
            self.console.close()
        for failure in self.failures:
            self.console.info(f"FAILED: {failure}", style="bold red")
        self.console.info(f"{self.reason or 'stopped'}; exit code {code}; summary in {self.run_dir / 'summary.json'}")
        return code

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals += 1
        if self._signals == 1:
            self.reason = f"stopped by {signal.Signals(signum).name}"

    def _prepare_run_dir(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "launch.yaml", "w") as f:
            f.write(f"# {self.spec.file} as this run resolved it (launch arguments: {self.spec.args})\n")
            yaml.safe_dump(self.spec.resolved(), f, sort_keys=False)
        if self.spec.keys:  # where `persist` commands find the client key of this run (the path, never a key)
            (self.run_dir / "keys").write_text(self.spec.keys + "\n")

    # --- processes ------------------------------------------------------------------------------

    def _env(self, extra: dict[str, str], restarts: int) -> dict[str, str]:
        env = {**os.environ, **self.spec.env, **extra}
        env.update(PERSIST_RUN_ID=self.run_id, PERSIST_RESTARTS=str(restarts), PYTHONUNBUFFERED="1")
        env[SUPERVISOR_ENV] = str(os.getpid())  # children die with this process (persist_rt.parent_death)
        env[AUTHORITY_ENV] = authority_json(self.spec.authority)  # set even when empty: never inherited
        env.pop(KEYS_ENV, None)
        if self.spec.keys:
            env[KEYS_ENV] = self.spec.keys
        env[INTROSPECTION_ENV] = self.spec.introspection  # set even when closed: never inherited
        if self.address:
            env["PERSIST_REGISTRY"] = self.address
        return env

    def _spawn(self, child: Child, cmd: list[str], env: dict[str, str]) -> None:
        if child.log is None:
            child.log = open(self.run_dir / "logs" / f"{child.name.replace('/', '_')}.log", "a", buffering=1)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        child.proc = proc
        child.pgids.add(proc.pid)
        t = threading.Thread(target=self._pump, args=(child.name, proc.stdout, child.log), daemon=True)
        t.start()
        self._threads.append(t)

    def _pump(self, name: str, stream: IO[bytes] | None, log: IO[str] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if log is not None:
                try:
                    log.write(line + "\n")
                except ValueError:  # closed at the very end
                    pass
            self.console.node_line(name, line)
        stream.close()

    def _start_registry(self) -> bool:
        bind = self.address or self.opt.registry_bind
        address_file = self.run_dir / "registry"
        if not self.address:
            address_file.unlink(missing_ok=True)
        cmd = [self.opt.python, "-m", "persist_rt.registry", "--bind", bind, "--address-file", str(address_file)]
        self._spawn(self.registry, cmd, self._env({}, self.registry.restarts))
        deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
        while time.monotonic() < deadline and not self._signals:
            if not self.registry.alive:
                break
            text = address_file.read_text().strip() if address_file.exists() else ""
            if text:
                expect_server(text, REGISTRY)
                try:
                    services.call(text, "ping", timeout=1.0)
                except services.ServiceTimeout:
                    continue
                self.address = text
                self.registry.status = "running"
                return True
            time.sleep(0.05)
        self.failures.append(f"the registry did not start (bind {bind}); see {self.run_dir / 'logs/registry.log'}")
        self.reason = "registry failed"
        return False

    def _node_cmd(self, spec: NodeSpec) -> list[str]:
        return [self.opt.python, "-m", "persist_rt.run", "--kind", spec.kind, "--name", spec.name,
                "--registry", self.address, "--params", json.dumps(spec.params), "--namespace", spec.namespace,
                "--remaps", json.dumps(spec.remaps), "--qos", json.dumps(spec.qos), "--run-dir", str(self.run_dir),
                "--base-dir", spec.base_dir, "--busy-poll-us", repr(spec.busy_poll_us)]

    def _start_node(self, child: Child) -> None:
        assert child.spec is not None
        self._spawn(child, self._node_cmd(child.spec), self._env(child.spec.env, child.restarts))
        child.status = "starting"
        child.respawn_at = None

    def _start_nodes(self) -> bool:
        for child in self.children.values():
            assert child.spec is not None
            self.console.info(f"starting {child.name} ({child.spec.kind})")
            self._start_node(child)
            if not self._wait_active(child):
                return False
        return True

    def _wait_active(self, child: Child) -> bool:
        assert child.spec is not None and child.proc is not None
        deadline = time.monotonic() + child.spec.start_timeout_s
        while not self._signals:
            code = child.proc.poll()
            if code is not None:
                child.exit_codes.append(code)
                child.status = "failed"
                self.failures.append(f"node {child.name} exited with code {code} while starting "
                                     f"(see {self.run_dir / 'logs' / (child.name.replace('/', '_') + '.log')})")
                self.reason = f"node {child.name} failed to start"
                return False
            if self._state(child) == "active":
                child.status = "running"
                return True
            if time.monotonic() > deadline:
                child.status = "failed"
                self.failures.append(f"node {child.name} was not active within {child.spec.start_timeout_s:g} s")
                self.reason = f"node {child.name} failed to start"
                return False
            time.sleep(POLL_S)
        return False

    def _state(self, child: Child) -> str | None:
        """The node's lifecycle state as the registry has it, if the record is this process's."""
        info = self._record(child.name)
        if info is None or child.proc is None or info.get("pid") != child.proc.pid:
            return None
        return info.get("state")

    def _record(self, name: str) -> dict[str, Any] | None:
        """The registry's record of a node (a listing, so asking about an absent node is not an error)."""
        try:
            nodes = services.call(self.address, "nodes", timeout=1.0)
        except (services.ServiceError, services.ServiceTimeout):
            return None
        return next((n for n in nodes if n.get("name") == name), None)

    # --- supervision ----------------------------------------------------------------------------

    def _supervise(self) -> None:
        end = time.monotonic() + self.opt.duration_s if self.opt.duration_s else None
        while not self._signals:
            now = time.monotonic()
            if end is not None and now >= end:
                self.reason = f"duration of {self.opt.duration_s:g} s reached"
                return
            if not self.registry.alive:
                self._restart_registry()
            for child in self.children.values():
                if child.status in ("running", "starting") and child.proc is not None and child.proc.poll() is not None:
                    if self._on_exit(child, child.proc.returncode):
                        return
                elif child.status == "respawning" and child.respawn_at is not None and now >= child.respawn_at:
                    child.restarts += 1
                    self.console.info(f"respawning {child.name} (restart {child.restarts})", style="yellow")
                    self._start_node(child)
            time.sleep(POLL_S)

    def _on_exit(self, child: Child, code: int) -> bool:
        """Handle a node that exited by itself; True when the launch must end."""
        assert child.spec is not None
        child.exit_codes.append(code)
        policy = child.spec.respawn
        if child.name == self.spec.main and code == 0:
            child.status = "exited"
            self.main_exit = code
            self.reason = f"main job {child.name} finished"
            return True
        self.console.info(f"node {child.name} exited with code {code}", style="yellow" if code == 0 else "bold red")
        if policy.enabled:
            now = time.monotonic()
            while child.recent and now - child.recent[0] > policy.window_s:
                child.recent.popleft()
            if len(child.recent) < policy.max_restarts:
                delay = policy.delay(len(child.recent))
                child.recent.append(now + delay)
                child.respawn_at = now + delay
                child.status = "respawning"
                self.console.info(f"{child.name} restarts in {delay:g} s", style="yellow")
                return False
            child.reason = f"gave up after {policy.max_restarts} restarts within {policy.window_s:g} s"
        elif code == 0:
            child.status = "exited"
            return False
        child.status = "failed"
        child.reason = child.reason or f"exited with code {code}"
        self.failures.append(f"node {child.name} {child.reason}")
        if child.name == self.spec.main:
            self.main_exit = code
            self.reason = f"main job {child.name} failed"
            return True
        if child.spec.required:
            self.reason = f"required node {child.name} failed"
            return True
        return False

    def _restart_registry(self) -> None:
        code = self.registry.proc.returncode if self.registry.proc is not None else None
        self.registry.restarts += 1
        self.console.info(f"registry exited (code {code}); restarting it on {self.address}", style="bold yellow")
        if not self._start_registry():
            self._signals += 1  # nothing can be discovered any more: stop the run

    # --- progress of the main job ---------------------------------------------------------------

    def _start_progress(self) -> None:
        if self.spec.main is None:
            return
        t = threading.Thread(target=self._progress_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _progress_loop(self) -> None:
        main = self.children[self.spec.main]
        endpoint = ""
        while not self._stop_progress.wait(PROGRESS_PERIOD_S):
            try:
                if not endpoint:
                    info = self._record(main.name)
                    if info is None:
                        continue
                    endpoint = info["endpoints"]["service"]
                    expect_server(endpoint, main.name)
                stats = services.call(endpoint, "stats", timeout=1.0)
            except (services.ServiceError, services.ServiceTimeout, KeyError, TypeError):
                endpoint = ""  # respawned or not registered yet: look it up again
                continue
            snap = ProgressSnapshot.from_gauges(stats.get("gauges", {}), self.spec.progress_fields)
            if snap is not None and not self._stop_progress.is_set():
                self.console.progress(snap, time.monotonic())

    # --- shutdown -------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stop_progress.set()
        deadline = time.monotonic() + self.spec.shutdown_timeout_s
        running = [c for c in reversed(list(self.children.values())) if c.alive]
        if running:
            self.console.info(f"shutting down {len(running)} nodes (deadline {self.spec.shutdown_timeout_s:g} s)")
        for child in running:
            _signal_group(child, signal.SIGTERM)
            while child.alive and time.monotonic() < deadline and self._signals < 2:
                time.sleep(0.02)
            if not child.alive:
                code = child.proc.returncode  # type: ignore[union-attr]
                child.exit_codes.append(code)
                child.status = "stopped"
                if code not in (0, -signal.SIGTERM):
                    self.failures.append(f"node {child.name} exited with code {code} while stopping")
        for child in self.children.values():
            if child.alive:
                _signal_group(child, signal.SIGKILL)
                child.proc.wait()  # type: ignore[union-attr]
                child.status = "killed"
                self.failures.append(f"node {child.name} did not stop within the deadline and was killed")
            _sweep(child)
        if self.registry.alive:
            _signal_group(self.registry, signal.SIGTERM)
            try:
                self.registry.proc.wait(timeout=2.0)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                _signal_group(self.registry, signal.SIGKILL)
                self.registry.proc.wait()  # type: ignore[union-attr]
        _sweep(self.registry)
        for t in self._threads:
            t.join(timeout=1.0)
        for child in (*self.children.values(), self.registry):
            if child.log is not None:
                child.log.close()

    # --- summary --------------------------------------------------------------------------------

    def _write_summary(self, code: int) -> None:
        path = self.run_dir / "summary.json"
        merged: dict[str, Any] = {}
        if path.exists():  # the main job may have written its own summary: keep it
            try:
                fragment = json.loads(path.read_text())
                if isinstance(fragment, dict):
                    merged.update(fragment)
            except (OSError, json.JSONDecodeError) as exc:
                self.failures.append(f"summary.json written by the run is unreadable ({exc}); replaced")
                code = 1
        merged.setdefault("run_id", self.run_id)
        merged["launch"] = {
            "file": self.spec.file,
            "run_dir": str(self.run_dir),
            "registry": self.address,
            "started": self._started_at,
            "ended": time.time(),
            "wall_s": round(time.time() - self._started_at, 3),
            "reason": self.reason or "stopped",
            "exit_code": code,
            "failures": list(self.failures),
            "main": self.spec.main,
            "main_exit_code": self.main_exit,
            "registry_restarts": self.registry.restarts,
            "nodes": {c.name: {"kind": c.spec.kind if c.spec else "registry", "status": c.status,
                               "restarts": c.restarts, "exit_codes": c.exit_codes,
                               "pid": c.proc.pid if c.proc else None} for c in self.children.values()},
        }
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=2, default=str) + "\n")
        os.replace(tmp, path)


def _signal_group(child: Child, sig: int) -> None:
    if child.proc is None:
        return
    try:
        os.killpg(child.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep(child: Child) -> None:
    """Kill anything left in the child's process groups (what a node started and did not reap)."""
    for pgid in child.pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
