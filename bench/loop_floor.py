"""Floors under the 1-arena lockstep loop env -> agent -> shield -> env (env/obs also goes to the shield).

Both run the graph's topology and message sizes with trivial work in each process, so that what is left of
a graph step is transport:

* ``transport_only``: three ``persist_rt.Node`` processes with the graph's messages, reliable publishers and
  LOCKSTEP subscriptions (what the env, agent and shield nodes use), callbacks that only answer.
  The cost of PERSIST's transport and node runtime per step.
* ``raw_zmq``: the same three processes in plain pyzmq, each waiting in ``zmq.Poller``: env PUB obs to the
  agent's and the shield's SUB, agent PUSH proposal to the shield's PULL, shield PUSH safe action to the
  env's PULL; three frames per message of the graph's sizes. ZeroMQ's own floor for this graph in Python.

Both floors take the graph's idle strategy: each process polls without sleeping for up to its role's
``busy_poll_us`` before it sleeps in the poll (0: sleeps at once), by default what launch/single_agent.yaml
gives the env, agent and shield nodes.

Each env times a fixed number of steps after a warm-up in its own process. A step whose answer does not
come within ``resend_s`` (the env's deadline) sends its observation again; such re-sends are counted, and a
figure is only clean with none in the timed part.

    .venv/bin/python bench/loop_floor.py [--steps 5000]     # both floors alone, one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.transport import _spawn, _stop, _with_registry  # noqa: E402
from nodes.env.gridlife import INTERNAL_NAMES, GridLifeConfig, obs_names  # noqa: E402
from persist_rt import Node, Param  # noqa: E402
from persist_rt.codec import Codec, HeaderPacker  # noqa: E402
from persist_rt.launch import load_launch  # noqa: E402
from persist_rt.node import busy_poll_seconds  # noqa: E402
from persist_rt.qos import LOCKSTEP  # noqa: E402
from persist_rt.transport import ipc_domain  # noqa: E402
from protocols import Observation, ProposedAction, SafeAction  # noqa: E402
from protocols.base import Message  # noqa: E402

THIS = str(Path(__file__).resolve())
ENV, AGENT, SHIELD = "env", "agent", "shield"  # node names: the env starts once both others read env/obs
ROLES = (ENV, AGENT, SHIELD)
LAUNCH_FILE = REPO / "launch" / "single_agent.yaml"  # the graph whose loop the floors stand under
OBS_TOPIC, PROPOSED_TOPIC, SAFE_TOPIC = "env/obs", "action/proposed", "action/safe"
OBS_DIM, INTERNAL_DIM, ACT_DIM = len(obs_names(GridLifeConfig())), len(INTERNAL_NAMES), 2
STEP_BYTES = 8  # raw floor: the step rides in the first bytes of the header frame


@dataclass(frozen=True)
class FloorConfig:
    steps: int = 5000  # timed lockstep steps per floor
    warmup: int = 500  # untimed steps first: connections settle, first allocations
    resend_s: float = 1.0  # re-send a step's observation after this long without its safe action
    timeout_s: float = 120.0  # whole run of one floor, start-up included
    busy_poll_us: dict[str, float] = field(default_factory=dict)  # role -> µs of polling before sleeping; absent: 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: must be >= 1, got {self.steps}")
        if self.warmup < 0:
            raise ValueError(f"warmup: must be >= 0, got {self.warmup}")
        if not self.resend_s > 0:
            raise ValueError(f"resend_s: must be > 0, got {self.resend_s}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: must be > 0, got {self.timeout_s}")
        for role, us in self.busy_poll_us.items():
            if role not in ROLES:
                raise ValueError(f"busy_poll_us: no role {role!r} (roles: {', '.join(ROLES)})")
            try:
                busy_poll_seconds(us)
            except ValueError as exc:
                raise ValueError(f"busy_poll_us.{role}: {exc}") from None

    def busy_poll_of(self, role: str) -> str:
        """The role's budget as a command-line value."""
        return repr(float(self.busy_poll_us.get(role, 0.0)))


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def _observation(step: int) -> Observation:
    return Observation(step=step, obs=_zeros(1, OBS_DIM), positions=np.zeros((1, 2)),
                       internal=np.zeros((1, INTERNAL_DIM)), episode_step=np.full(1, step, np.int64))


def _proposal(step: int) -> ProposedAction:
    return ProposedAction(step=step, actions=_zeros(1, ACT_DIM))


def _safe_action(step: int, proposed: np.ndarray, policy_version: int) -> SafeAction:
    # what the shield node sends when it passes a proposal, the proposal echoed included
    return SafeAction(step=step, actions=proposed, mode=np.zeros(1, np.uint8), constraint=[""],
                      margin_before=_zeros(1), margin_after=_zeros(1), policy_version=policy_version,
                      proposed=proposed)


# ================================ PERSIST runtime, trivial callbacks ===========================


class FloorEnv(Node):
    """Publishes step t's Observation and publishes step t+1's when step t's SafeAction comes; times the loop."""

    steps = Param(FloorConfig.steps, "timed steps", ge=1)
    warmup = Param(FloorConfig.warmup, "untimed steps before the timed ones", ge=0)
    resend_s = Param(FloorConfig.resend_s, "re-send the step's observation after this long without an answer", gt=0)

    def on_configure(self) -> None:
        self.obs_pub = self.publisher(OBS_TOPIC, Observation, reliable=True)
        self.subscribe(SAFE_TOPIC, SafeAction, self.on_safe, qos=LOCKSTEP)
        self.step_id = -1  # not started
        self.sent_at = 0.0
        self.t0 = 0.0
        self.resends = {"warmup": 0, "timed": 0}
        self.stale = 0
        self.timer(0.05, self.tick)  # the period the env node checks its peers and deadline at

    def tick(self) -> None:
        if self.step_id < 0:
            # reliable publishers drop what no subscriber is matched for yet: start once both read env/obs
            if {AGENT, SHIELD} <= set(self.obs_pub.matched()):
                self.begin_step(0)
            return
        if time.monotonic() - self.sent_at >= self.resend_s:  # e.g. action/proposed not matched yet
            self.resends["timed" if self.step_id >= self.warmup else "warmup"] += 1
            self.publish_obs()

    def begin_step(self, step: int) -> None:
        self.step_id = step
        if step == self.warmup:
            self.t0 = time.perf_counter()
        self.publish_obs()

    def publish_obs(self) -> None:
        self.sent_at = time.monotonic()
        self.obs_pub.publish(_observation(self.step_id), step=self.step_id)

    def on_safe(self, msg: SafeAction) -> None:
        if msg.step != self.step_id:  # the answer to a re-sent observation, or before the start
            self.stale += 1
            return
        if self.step_id + 1 < self.warmup + self.steps:
            self.begin_step(self.step_id + 1)
            return
        elapsed = time.perf_counter() - self.t0
        print(json.dumps({"steps_per_s": self.steps / elapsed, "steps": self.steps, "warmup": self.warmup,
                          "resends_warmup": self.resends["warmup"], "resends_timed": self.resends["timed"],
                          "stale_answers": self.stale}), flush=True)
        self.request_stop()


class FloorAgent(Node):
    """Answers each Observation with a zero ProposedAction."""

    def on_configure(self) -> None:
        self.out = self.publisher(PROPOSED_TOPIC, ProposedAction, reliable=True)
        self.subscribe(OBS_TOPIC, Observation, self.on_obs, qos=LOCKSTEP)

    def on_obs(self, msg: Observation) -> None:
        self.out.publish(_proposal(msg.step), step=msg.step)


class FloorShield(Node):
    """Keeps the newest Observation (the shield's state) and passes each ProposedAction on as a SafeAction."""

    def on_configure(self) -> None:
        self.out = self.publisher(SAFE_TOPIC, SafeAction, reliable=True)
        self.obs: Observation | None = None
        self.subscribe(OBS_TOPIC, Observation, self.on_obs, qos=LOCKSTEP)
        self.subscribe(PROPOSED_TOPIC, ProposedAction, self.on_proposed, qos=LOCKSTEP)

    def on_obs(self, msg: Observation) -> None:
        self.obs = msg

    def on_proposed(self, msg: ProposedAction) -> None:
        self.out.publish(_safe_action(msg.step, msg.actions, msg.policy_version), step=msg.step)


# ================================ process plumbing =============================================


class _Lines:
    """A child's stdout lines, read by a thread so that waiting for the next one can time out."""

    def __init__(self, proc: subprocess.Popen, what: str) -> None:
        self.proc, self.what = proc, what
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)
        self.lines.put(None)

    def next_json(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"{self.what}: no answer within {timeout_s:g} s") from None
        if line is None:
            self.proc.wait(5)
            raise RuntimeError(f"{self.what} exited ({self.proc.returncode}): "
                               f"{self.proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        return json.loads(line)


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """Signal every child first, so that their shutdowns overlap, then wait for (or kill) each."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        _stop(proc)


def transport_only_steps_per_s(cfg: FloorConfig) -> dict[str, Any]:
    """The lockstep loop through PERSIST's runtime with trivial callbacks; the env's figures."""

    def run(registry: str) -> dict[str, Any]:
        params = json.dumps({"steps": cfg.steps, "warmup": cfg.warmup, "resend_s": cfg.resend_s})
        procs: list[subprocess.Popen] = []
        try:
            for cls, name in ((FloorShield, SHIELD), (FloorAgent, AGENT), (FloorEnv, ENV)):
                procs.append(_spawn("-m", "persist_rt.run", "--kind", f"{THIS}:{cls.__name__}", "--name", name,
                                    "--registry", registry, "--params", params if cls is FloorEnv else "{}",
                                    "--busy-poll-us", cfg.busy_poll_of(name)))
            return _Lines(procs[-1], "transport-only env node").next_json(cfg.timeout_s)
        finally:
            _stop_all(procs)

    return _with_registry(run)


# ================================ plain pyzmq ==================================================


def _wire_frames(topic: str, msg: Message) -> tuple[bytes, int, bytes]:
    """(topic, header length, payload) of ``msg`` as the codec puts it on the wire: the raw floor's sizes."""
    frames = Codec().encode_frames(topic.encode(), HeaderPacker(msg.SCHEMA, msg.VERSION, ENV).pack(1, 1, 0.0), msg)
    if len(frames) != 3:
        raise RuntimeError(f"{topic}: expected 3 frames, the codec made {len(frames)}")
    return bytes(frames[0]), len(frames[1]), bytes(frames[2])


class _RawMessage:
    """Three frames of a real message's sizes whose header starts with the step."""

    def __init__(self, topic: str, msg: Message) -> None:
        self.topic, header_len, self.payload = _wire_frames(topic, msg)
        self.padding = bytes(header_len - STEP_BYTES)

    def frames(self, step: int) -> list[bytes]:
        return [self.topic, step.to_bytes(STEP_BYTES, "little") + self.padding, self.payload]


def _step_of(frames: list[bytes]) -> int:
    return int.from_bytes(frames[1][:STEP_BYTES], "little")


def _bind(ctx: zmq.Context, kind: int) -> tuple[zmq.Socket, str]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if ipc_domain() is not None:  # as the nodes do: same-host edges ride IPC
        sock.bind(f"ipc://@persist-bench-floor-{os.getpid()}-{os.urandom(4).hex()}")
    else:
        sock.bind("tcp://127.0.0.1:0")  # a free port chosen by the system
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _connect(ctx: zmq.Context, kind: int, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _poll(poller: zmq.Poller, timeout_ms: float | None, busy_poll_s: float) -> list[tuple[zmq.Socket, int]]:
    """``poller.poll(timeout_ms)`` (None: no timeout) with the nodes' idle strategy, in plain pyzmq: up to
    ``busy_poll_s`` of polling without sleeping (yielding the CPU between polls) first, within the timeout."""
    if busy_poll_s > 0:
        start = time.monotonic()
        spin_s = busy_poll_s if timeout_ms is None else min(busy_poll_s, timeout_ms / 1000)
        while not (ready := poller.poll(0)) and time.monotonic() - start < spin_s:
            os.sched_yield()
        if ready:
            return ready
        if timeout_ms is not None:
            timeout_ms = max(0.0, timeout_ms - (time.monotonic() - start) * 1000)
    return poller.poll(timeout_ms)


def role_raw_env(steps: int, warmup: int, resend_s: float, timeout_s: float, busy_poll_s: float) -> None:
    ctx = zmq.Context()
    obs, obs_ep = _bind(ctx, zmq.XPUB)  # a PUB that tells us when subscribers arrive
    obs.setsockopt(zmq.XPUB_VERBOSE, 1)
    safe, safe_ep = _bind(ctx, zmq.PULL)
    print(json.dumps({"obs": obs_ep, "safe": safe_ep}), flush=True)
    # PUB drops what no subscriber is connected for yet: start once the agent and the shield both are
    for _ in range(2):
        if not obs.poll(timeout_s * 1000):
            raise RuntimeError(f"fewer than 2 subscribers to {OBS_TOPIC} within {timeout_s:g} s")
        obs.recv()
    message = _RawMessage(OBS_TOPIC, _observation(0))
    poller = zmq.Poller()
    poller.register(safe, zmq.POLLIN)
    resend_ms = resend_s * 1000
    resends = {"warmup": 0, "timed": 0}
    stale = 0
    t0 = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        obs.send_multipart(message.frames(step))
        while True:
            if not _poll(poller, resend_ms, busy_poll_s):
                resends["timed" if step >= warmup else "warmup"] += 1
                obs.send_multipart(message.frames(step))
                continue
            if _step_of(safe.recv_multipart()) == step:
                break
            stale += 1
    elapsed = time.perf_counter() - t0
    print(json.dumps({"steps_per_s": steps / elapsed, "steps": steps, "warmup": warmup,
                      "resends_warmup": resends["warmup"], "resends_timed": resends["timed"],
                      "stale_answers": stale}), flush=True)


def role_raw_agent(busy_poll_s: float, obs_ep: str, proposed_ep: str) -> None:
    ctx = zmq.Context()
    obs = _connect(ctx, zmq.SUB, obs_ep)
    obs.setsockopt(zmq.SUBSCRIBE, OBS_TOPIC.encode())
    out = _connect(ctx, zmq.PUSH, proposed_ep)  # a connecting PUSH queues until the connection is up: no loss
    message = _RawMessage(PROPOSED_TOPIC, _proposal(0))
    poller = zmq.Poller()
    poller.register(obs, zmq.POLLIN)
    while True:
        _poll(poller, None, busy_poll_s)
        out.send_multipart(message.frames(_step_of(obs.recv_multipart())))


def role_raw_shield(busy_poll_s: float, obs_ep: str, safe_ep: str) -> None:
    ctx = zmq.Context()
    proposed, proposed_ep = _bind(ctx, zmq.PULL)
    print(json.dumps({"proposed": proposed_ep}), flush=True)
    obs = _connect(ctx, zmq.SUB, obs_ep)
    obs.setsockopt(zmq.SUBSCRIBE, OBS_TOPIC.encode())
    out = _connect(ctx, zmq.PUSH, safe_ep)
    message = _RawMessage(SAFE_TOPIC, _safe_action(0, _zeros(1, ACT_DIM), 0))
    poller = zmq.Poller()
    poller.register(obs, zmq.POLLIN)
    poller.register(proposed, zmq.POLLIN)
    while True:
        for sock, _ in _poll(poller, None, busy_poll_s):
            frames = sock.recv_multipart()  # an observation is only read: the shield's state
            if sock is proposed:
                out.send_multipart(message.frames(_step_of(frames)))


def launch_busy_poll_us() -> dict[str, float]:
    """What launch/single_agent.yaml, with its defaults, gives the env, agent and shield nodes."""
    spec = load_launch(LAUNCH_FILE)
    return {role: spec.node(role).busy_poll_us for role in ROLES}


def raw_zmq_steps_per_s(cfg: FloorConfig) -> dict[str, Any]:
    """The lockstep loop in plain pyzmq between three processes; the env's figures."""
    procs: list[subprocess.Popen] = []
    try:
        env = _spawn(THIS, "--role", "raw-env", "--steps", str(cfg.steps), "--warmup", str(cfg.warmup),
                     "--resend-s", str(cfg.resend_s), "--timeout", str(cfg.timeout_s),
                     "--role-busy-poll-us", cfg.busy_poll_of(ENV))
        procs.append(env)
        env_lines = _Lines(env, "raw env")
        env_eps = env_lines.next_json(cfg.timeout_s)
        procs.append(_spawn(THIS, "--role", "raw-shield", "--role-busy-poll-us", cfg.busy_poll_of(SHIELD),
                            env_eps["obs"], env_eps["safe"]))
        proposed_ep = _Lines(procs[-1], "raw shield").next_json(cfg.timeout_s)["proposed"]
        procs.append(_spawn(THIS, "--role", "raw-agent", "--role-busy-poll-us", cfg.busy_poll_of(AGENT),
                            env_eps["obs"], proposed_ep))
        return env_lines.next_json(cfg.timeout_s)
    finally:
        _stop_all(procs)


def _role_values(pairs: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        role, sep, text = pair.partition("=")
        try:
            values[role] = float(text)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--busy-poll-us: expected ROLE=MICROSECONDS, got {pair!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=FloorConfig.steps, help="timed steps per floor")
    parser.add_argument("--warmup", type=int, default=FloorConfig.warmup, help="untimed steps before")
    parser.add_argument("--resend-s", type=float, default=FloorConfig.resend_s, help="env deadline before a re-send")
    parser.add_argument("--timeout", type=float, default=FloorConfig.timeout_s, help="seconds allowed per floor")
    parser.add_argument("--busy-poll-us", action="append", metavar="ROLE=US", default=None,
                        help="µs the role's process polls without sleeping before it sleeps (repeatable; "
                             "default: the launch file's env, agent and shield nodes')")
    parser.add_argument("--role-busy-poll-us", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["raw-env", "raw-agent", "raw-shield"], help=argparse.SUPPRESS)
    parser.add_argument("endpoints", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        if args.role:  # a raw floor's process: its own budget comes as --role-busy-poll-us
            busy_poll_us: dict[str, float] = {}
            busy_poll_s = busy_poll_seconds(args.role_busy_poll_us)
        elif args.busy_poll_us is None:
            busy_poll_us = launch_busy_poll_us()
        else:
            busy_poll_us = _role_values(args.busy_poll_us)
        cfg = FloorConfig(steps=args.steps, warmup=args.warmup, resend_s=args.resend_s, timeout_s=args.timeout,
                          busy_poll_us=busy_poll_us)
    except ValueError as exc:
        parser.error(str(exc))
    if args.role == "raw-env":
        role_raw_env(cfg.steps, cfg.warmup, cfg.resend_s, cfg.timeout_s, busy_poll_s)
    elif args.role == "raw-agent":
        role_raw_agent(busy_poll_s, *args.endpoints)
    elif args.role == "raw-shield":
        role_raw_shield(busy_poll_s, *args.endpoints)
    else:
        floors = {"transport_only_1": transport_only_steps_per_s(cfg), "raw_zmq_1": raw_zmq_steps_per_s(cfg)}
        print(json.dumps({"busy_poll_us": cfg.busy_poll_us,
                          "steps_per_s": {k: round(v["steps_per_s"], 1) for k, v in floors.items()},
                          "per_step_us": {k: round(1e6 / v["steps_per_s"], 1) for k, v in floors.items()},
                          "runs": {k: {f: x for f, x in v.items() if f != "steps_per_s"} for k, v in floors.items()}}))


if __name__ == "__main__":
    main()
