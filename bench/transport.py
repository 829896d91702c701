"""Transport benchmark: round trips, reliable throughput and idle CPU, against raw pyzmq, Zenoh and dora-rs.

    .venv/bin/python bench/transport.py            # prints one JSON line
    .venv/bin/python bench/transport.py --systems persist,persist_curve    # PERSIST with keys against without

`persist_curve` is PERSIST's round trip with CurveZMQ on (a fresh key set, docs/security.md), next to `persist`.

Every figure comes from this one run on this machine: the baselines are measured next to PERSIST.
Each system echoes through a second process; all use loopback TCP except dora (its own shared memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from persist_rt import Node, security, services  # noqa: E402
from protocols import Blob, Text  # noqa: E402

SIZES = (64, 1024, 65536, 1048576)
PY = sys.executable
THIS = str(Path(__file__).resolve())


@dataclass(frozen=True)
class BenchConfig:
    rounds: int = 2000  # round trips per size below 64 KiB
    rounds_large: int = 300  # round trips per size from 64 KiB
    warmup: int = 100
    throughput_msgs: int = 200_000
    idle_seconds: float = 4.0
    timeout_s: float = 60.0

    def rounds_for(self, size: int) -> int:
        return self.rounds if size < 65536 else self.rounds_large


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    us = np.asarray(samples_s) * 1e6
    return {"p50": round(float(np.percentile(us, 50)), 1), "p99": round(float(np.percentile(us, 99)), 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                                          "PERSIST_LOG_LEVEL": "error", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(f"child exited: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    return line


# ================================ PERSIST ======================================================


class Ponger(Node):
    """Echoes every ping back as a pong (the arrays are re-sent straight from the received frames)."""

    def on_configure(self) -> None:
        self.out = self.publisher("pong", Blob)
        self.subscribe("ping", Blob, self.out.publish, qos="queue")


class Pinger(Node):
    def on_configure(self) -> None:
        self.out = self.publisher("ping", Blob)
        self.got = 0
        self.subscribe("pong", Blob, self.on_pong, qos="queue")

    def on_pong(self, msg: Blob) -> None:
        self.got += 1


class ReliableSink(Node):
    """Counts reliable messages; reports the count and the wall time of the last one."""

    def on_configure(self) -> None:
        self.n = 0
        self.last = 0.0
        self.sub = self.subscribe("bulk", Text, self.on_msg, qos="reliable")
        self.service("result", lambda a: {"n": self.n, "last": self.last,
                                          **{k: self.sub.stats()[k] for k in ("lost", "dropped", "rejected")}})

    def on_msg(self, msg: Text) -> None:
        self.n += 1
        self.last = time.time()


class IdleTicker(Node):
    """The idle-node case: a small message from a 100 Hz timer, nothing else."""

    def on_configure(self) -> None:
        self.out = self.publisher("tick", Text)
        self.timer(0.01, lambda: self.out.publish(Text(data="tick")))


REGISTRY_START_S = 30.0  # generous: a loaded machine can take seconds to start a Python process


def _with_registry(fn: Callable[[str], Any], keys: bool = False) -> Any:
    """``fn(registry address)`` with a registry of its own; ``keys``: the registry, the nodes this bench starts and
    this process (its in-process node, its service calls) hold a fresh key set."""
    with tempfile.TemporaryDirectory() as tmp:
        addr = Path(tmp) / "registry.addr"
        if keys:
            security.KeySet.create(Path(tmp) / "keys", ["ponger", "pinger", "sink", "pusher", "ticker"])
            os.environ[security.KEYS_ENV] = str(Path(tmp) / "keys")  # inherited by _spawn's processes
        reg = _spawn("-m", "persist_rt.registry", "--address-file", str(addr))
        try:
            deadline = time.monotonic() + REGISTRY_START_S
            while not (addr.exists() and addr.read_text().strip()):
                if reg.poll() is not None:
                    raise RuntimeError(f"registry exited with code {reg.returncode}: {reg.stderr.read()[-2000:]}")
                if time.monotonic() > deadline:
                    _stop(reg)
                    raise RuntimeError(f"registry wrote no address within {REGISTRY_START_S:g} s (it was still "
                                       f"running): {reg.stderr.read()[-2000:]}")
                time.sleep(0.01)
            if keys:  # until its node exists, this process's calls prove the client key
                security.use_curve(security.Curve(security.keys_from_env(), security.CLIENT, zmq.Context.instance()))
                security.expect_server(addr.read_text().strip(), security.REGISTRY)
            return fn(addr.read_text().strip())
        finally:
            _stop(reg)
            os.environ.pop(security.KEYS_ENV, None)
            security.use_curve(None)


def _run_node(kind: str, name: str, registry: str) -> subprocess.Popen:
    return _spawn("-m", "persist_rt.run", "--kind", f"{THIS}:{kind}", "--name", name, "--registry", registry)


def _wait_registered(registry: str, name: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in services.call(registry, "nodes", timeout=2.0):
            if n["name"] == name and n["state"] == "active":
                return n["endpoints"]["service"]
        time.sleep(0.02)
    raise RuntimeError(f"node {name} did not come up")


def bench_persist_curve_rtt(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    return bench_persist_rtt(cfg, keys=True)


def bench_persist_rtt(cfg: BenchConfig, keys: bool = False) -> dict[str, dict[str, float]]:
    def run(registry: str) -> dict[str, dict[str, float]]:
        ponger = _run_node("Ponger", "ponger", registry)
        pinger = Pinger("pinger", registry=registry)
        try:
            pinger.transition("active")
            _wait_registered(registry, "ponger")
            probe = Blob(data=np.zeros(8, np.uint8))
            deadline = time.monotonic() + cfg.timeout_s
            while pinger.got == 0:  # until both subscriptions have propagated
                if time.monotonic() > deadline:
                    raise RuntimeError("no pong from the ponger")
                pinger.out.publish(probe)
                pinger.spin_once(0.01)
            for _ in range(20):  # swallow stray pongs to the probes
                pinger.spin_once(0.005)
            out: dict[str, dict[str, float]] = {}
            for size in SIZES:
                msg = Blob(data=np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8))
                samples = []
                for i in range(cfg.warmup + cfg.rounds_for(size)):
                    want = pinger.got + 1
                    t0 = time.perf_counter()
                    pinger.out.publish(msg)
                    while pinger.got < want:
                        pinger.spin_once(1.0)
                    if i >= cfg.warmup:
                        samples.append(time.perf_counter() - t0)
                out[str(size)] = _percentiles(samples)
            return out
        finally:
            pinger.close()
            _stop(ponger)

    return _with_registry(run, keys)


def bench_persist_reliable(cfg: BenchConfig) -> tuple[float, int]:
    def run(registry: str) -> tuple[float, int]:
        sink = _run_node("ReliableSink", "sink", registry)

        class Pusher(Node):
            def on_configure(self) -> None:
                self.out = self.publisher("bulk", Text, reliable=True)

        pusher = Pusher("pusher", registry=registry)
        try:
            pusher.transition("active")
            sink_ep = _wait_registered(registry, "sink")
            deadline = time.monotonic() + cfg.timeout_s
            while not pusher.out.matched():
                if time.monotonic() > deadline:
                    raise RuntimeError("the reliable sink never matched")
                pusher.spin_once(0.01)
            msg = Text(data="x" * 16)
            n = cfg.throughput_msgs
            start = time.time()
            for i in range(n):
                pusher.out.publish(msg)
                if i % 256 == 0:
                    pusher.spin_once(0.0)  # take credit in as a node's executor would between callbacks
            if not pusher.out.drain(cfg.timeout_s):  # the last buffered messages go out against fresh credit
                raise RuntimeError(f"reliable publisher could not drain: {pusher.out.stats()}")
            result = services.call(sink_ep, "result", timeout=2.0)
            lost = n - result["n"] + result["lost"] + result["dropped"] + result["rejected"]
            return n / (result["last"] - start), lost
        finally:
            pusher.close()
            _stop(sink)

    return _with_registry(run)


def bench_idle_cpu(cfg: BenchConfig) -> float:
    import psutil

    def run(registry: str) -> float:
        node = _run_node("IdleTicker", "ticker", registry)
        try:
            _wait_registered(registry, "ticker")
            proc = psutil.Process(node.pid)
            time.sleep(0.5)  # past start-up
            c0, t0 = proc.cpu_times(), time.monotonic()
            time.sleep(cfg.idle_seconds)
            c1, t1 = proc.cpu_times(), time.monotonic()
            return 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0)
        finally:
            _stop(node)

    return _with_registry(run)


# ================================ raw pyzmq ====================================================


def role_zmq_echo(endpoint: str) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    while True:
        frames = sock.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            return
        sock.send_multipart(frames, copy=False)


def bench_zmq_blocking(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:0")
    echo = _spawn(THIS, "--role", "zmq-echo", sock.getsockopt_string(zmq.LAST_ENDPOINT))
    out = {}
    try:
        for size in SIZES:
            payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
            samples = []
            for i in range(cfg.warmup + cfg.rounds_for(size)):
                t0 = time.perf_counter()
                sock.send(payload, copy=size < 65536)
                sock.recv(copy=size < 65536)
                if i >= cfg.warmup:
                    samples.append(time.perf_counter() - t0)
            out[str(size)] = _percentiles(samples)
        sock.send(b"stop")
        echo.wait(5)
    finally:
        _stop(echo)
        sock.close(0)
    return out


def role_zmq_asyncio_echo(endpoint: str) -> None:
    import zmq.asyncio

    async def main() -> None:
        sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        sock.connect(endpoint)
        while True:
            frames = await sock.recv_multipart(copy=False)
            if frames[0].bytes == b"stop":
                return
            await sock.send_multipart(frames, copy=False)

    asyncio.run(main())


def bench_zmq_asyncio(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    import zmq.asyncio

    async def main() -> dict[str, dict[str, float]]:
        sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:0")
        echo = _spawn(THIS, "--role", "zmq-asyncio-echo", sock.getsockopt_string(zmq.LAST_ENDPOINT))
        out = {}
        try:
            for size in SIZES:
                payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
                samples = []
                for i in range(cfg.warmup + cfg.rounds_for(size)):
                    t0 = time.perf_counter()
                    await sock.send(payload, copy=size < 65536)
                    await sock.recv(copy=size < 65536)
                    if i >= cfg.warmup:
                        samples.append(time.perf_counter() - t0)
                out[str(size)] = _percentiles(samples)
            await sock.send(b"stop")
        finally:
            _stop(echo)
            sock.close(0)
        return out

    return asyncio.run(main())


class Small(msgspec.Struct):
    data: str
    seq: int = 0


def role_pull(endpoint: str, n: str) -> None:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.connect(endpoint)
    dec = msgspec.msgpack.Decoder(Small)
    for _ in range(int(n)):
        dec.decode(sock.recv())
    print(json.dumps({"last": time.time()}), flush=True)


def bench_zmq_pushpull(cfg: BenchConfig) -> float:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:0")
    n = cfg.throughput_msgs
    pull = _spawn(THIS, "--role", "pull", sock.getsockopt_string(zmq.LAST_ENDPOINT), str(n))
    try:
        enc = msgspec.msgpack.Encoder()
        sock.send(enc.encode(Small(data="warm")))  # PUSH blocks until the puller is connected
        start = time.time()
        for i in range(n - 1):
            sock.send(enc.encode(Small(data="x" * 16, seq=i)))
        last = json.loads(_read_line(pull))["last"]
        return n / (last - start)
    finally:
        _stop(pull)
        sock.close(0)


# ================================ Zenoh ========================================================


def _zenoh_config(listen: str | None, connect: str | None) -> Any:
    import zenoh

    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("scouting/multicast/enabled", "false")
    if listen:
        conf.insert_json5("listen/endpoints", json.dumps([listen]))
    if connect:
        conf.insert_json5("connect/endpoints", json.dumps([connect]))
    return conf


def role_zenoh_echo(listen: str) -> None:
    import zenoh

    session = zenoh.open(_zenoh_config(listen, None))
    pub = session.declare_publisher("bench/pong")
    sub = session.declare_subscriber("bench/ping")
    print("ready", flush=True)
    while True:
        payload = sub.recv().payload
        if len(payload) == 4 and payload.to_bytes() == b"stop":
            break
        pub.put(payload)
    session.close()


def bench_zenoh(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    import zenoh

    endpoint = f"tcp/127.0.0.1:{_free_port()}"
    echo = _spawn(THIS, "--role", "zenoh-echo", endpoint)
    try:
        _read_line(echo)
        session = zenoh.open(_zenoh_config(None, endpoint))
        pub = session.declare_publisher("bench/ping")
        sub = session.declare_subscriber("bench/pong")
        deadline = time.monotonic() + cfg.timeout_s
        while sub.try_recv() is None:  # until the route exists both ways
            if time.monotonic() > deadline:
                raise RuntimeError("zenoh echo never answered")
            pub.put(b"probe")
            time.sleep(0.01)
        time.sleep(0.1)
        while sub.try_recv() is not None:
            pass
        out = {}
        for size in SIZES:
            payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes()
            samples = []
            for i in range(cfg.warmup + cfg.rounds_for(size)):
                t0 = time.perf_counter()
                pub.put(payload)
                sub.recv()
                if i >= cfg.warmup:
                    samples.append(time.perf_counter() - t0)
            out[str(size)] = _percentiles(samples)
        pub.put(b"stop")
        session.close()
        return out
    finally:
        _stop(echo)


# ================================ dora-rs ======================================================


def role_dora_pinger(result_file: str, rounds: str, rounds_large: str, warmup: str) -> None:
    import pyarrow as pa
    from dora import Node as DoraNode

    node = DoraNode()
    out = {}
    for size in SIZES:
        payload = pa.array(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8))
        n = int(rounds) if size < 65536 else int(rounds_large)
        samples = []
        for i in range(int(warmup) + n):
            t0 = time.perf_counter()
            node.send_output("ping", payload)
            event = node.next(timeout=10.0)
            if event is None or event["type"] != "INPUT":
                raise RuntimeError(f"dora pinger: unexpected event {event}")
            if i >= int(warmup):
                samples.append(time.perf_counter() - t0)
        out[str(size)] = _percentiles(samples)
    Path(result_file).write_text(json.dumps(out))


def role_dora_ponger() -> None:
    from dora import Node as DoraNode

    node = DoraNode()
    for event in node:
        if event["type"] == "INPUT":
            node.send_output("pong", event["value"])
        elif event["type"] == "STOP":
            break


def bench_dora(cfg: BenchConfig) -> dict[str, dict[str, float]]:
    dora = shutil.which("dora", path=str(Path(PY).parent)) or shutil.which("dora")
    if dora is None:
        raise RuntimeError("the dora CLI (dora-rs-cli) is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "dora.json"
        args = lambda *a: " ".join([THIS, "--role", *a])  # noqa: E731
        dataflow = {
            "nodes": [
                {"id": "pinger", "path": PY, "args": args("dora-pinger", str(result), str(cfg.rounds),
                                                         str(cfg.rounds_large), str(cfg.warmup)),
                 "inputs": {"pong": "ponger/pong"}, "outputs": ["ping"]},
                {"id": "ponger", "path": PY, "args": args("dora-ponger"),
                 "inputs": {"ping": "pinger/ping"}, "outputs": ["pong"]},
            ]
        }
        spec = Path(tmp) / "dataflow.yml"
        spec.write_text(json.dumps(dataflow))  # JSON is YAML
        proc = subprocess.run([dora, "run", str(spec)], cwd=tmp, capture_output=True, text=True,
                              timeout=cfg.timeout_s * 3, env={**os.environ, "PYTHONPATH": str(REPO)})
        if not result.exists():
            raise RuntimeError(f"dora run exited {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}")
        return json.loads(result.read_text())


# ================================ main =========================================================


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default=None, help="internal: run one side of a benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke test)")
    parser.add_argument("--systems", default=None,
                        help="comma-separated round-trip systems to measure (default: all), then stop")
    parser.add_argument("--repeats", type=int, default=1, help="with --systems: alternate them this many times")
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("PERSIST_LOG_LEVEL", "error")
    os.environ["PERSIST_SAME_HOST_IPC"] = "0"  # like for like: PERSIST on loopback TCP, as the baselines are
    roles = {"zmq-echo": role_zmq_echo, "zmq-asyncio-echo": role_zmq_asyncio_echo, "pull": role_pull,
             "zenoh-echo": role_zenoh_echo, "dora-pinger": role_dora_pinger, "dora-ponger": role_dora_ponger}
    if args.role:
        roles[args.role](*args.rest)
        return
    cfg = BenchConfig(rounds=200, rounds_large=30, warmup=20, throughput_msgs=20_000, idle_seconds=1.0) \
        if args.quick else BenchConfig()

    notes: dict[str, str] = {}
    rtt: dict[str, Any] = {}
    systems = (("persist", bench_persist_rtt), ("persist_curve", bench_persist_curve_rtt),
               ("zmq_blocking", bench_zmq_blocking), ("zmq_asyncio", bench_zmq_asyncio), ("zenoh", bench_zenoh),
               ("dora", bench_dora))
    chosen = args.systems.split(",") if args.systems else [name for name, _ in systems]
    for system, fn in systems:
        if system not in chosen:
            continue
        try:
            rtt[system] = fn(cfg)
        except Exception as exc:  # a peer that cannot run here is recorded as null, with the reason
            rtt[system] = None
            notes[system] = f"{type(exc).__name__}: {exc}"[:400]
    if args.systems:  # round trips only, of the systems named, alternating `--repeats` times: the median p50
        runs = {name: [rtt[name]] for name in rtt if rtt[name] is not None}
        for _ in range(args.repeats - 1):
            for system, fn in systems:
                if system in runs:
                    runs[system].append(fn(cfg))
        median = {name: {size: float(np.median([r[size]["p50"] for r in rs])) for size in rs[0]}
                  for name, rs in runs.items()}
        print(json.dumps({"rtt_p50_us_median": median, "runs": runs, "repeats": args.repeats,
                          "transport": "tcp loopback", "cpus": os.cpu_count(), **({"notes": notes} if notes else {})}))
        return
    throughput_persist, lost = bench_persist_reliable(cfg)
    result: dict[str, Any] = {
        "rtt_us": rtt,
        "throughput_msgs_s": {"persist_reliable": round(throughput_persist),
                              "zmq_pushpull_msgspec": round(bench_zmq_pushpull(cfg))},
        "reliable_lost": lost,
        "idle_node_cpu_pct": round(bench_idle_cpu(cfg), 2),
        "transport": "tcp loopback (dora: its own shared memory)",
        "cpus": os.cpu_count(),
    }
    if notes:
        result["notes"] = notes
    print(json.dumps(result))


if __name__ == "__main__":
    main()
