"""Reliable edges across a subscriber's death and a publisher's end: nothing accepted is lost."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

from tests.runtime.conftest import Graph, eventually


def _recorded(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_respawned_subscriber_replaces_the_dead_one_and_gets_its_backlog(graph: Graph, tmp_path: Path) -> None:
    dead_log, new_log = tmp_path / "dead.seqs", tmp_path / "new.seqs"
    graph.start_registry()
    graph.start_node("Source", "source", {"reliable": True, "buffer": 16})
    slow = graph.start_node("Sink", "learner", {"qos": "reliable(8)", "delay_s": 0.01, "record": str(dead_log)})
    eventually(lambda: graph.stats("source")["publishers"]["chatter"]["reliable_peers"] == 1,
               what="the reliable handshake")

    # the burst outruns the slow sink: the source blocks on it with its buffer full and no credit left
    burst: dict[str, Any] = {}

    def send_burst() -> None:
        try:
            burst.update(graph.call("source", "burst", timeout=15.0, n=300))
        except Exception as exc:  # reported by the assertion below
            burst["error"] = repr(exc)

    sender = threading.Thread(target=send_burst)
    sender.start()
    eventually(lambda: len(_recorded(dead_log)) >= 40, what="the slow sink to consume part of the burst")
    slow.kill()  # kill -9: no BYE, no last credit
    slow.wait()
    graph.start_node("Sink", "learner", {"qos": "reliable(8)", "record": str(new_log)})

    # the blocked producer resumes on the new peer instead of waiting out the dead one's timeout
    sender.join(timeout=20.0)
    assert not sender.is_alive() and "error" not in burst, burst
    eventually(lambda: (_recorded(new_log) or [0])[-1] > burst["last"], what="a probe after the burst")
    sent = graph.call("source", "stop")["sent"]
    eventually(lambda: _recorded(new_log)[-1] == sent, what="the last probe at the new sink")

    dead, new = _recorded(dead_log), _recorded(new_log)
    missing = set(range(dead[0], sent + 1)) - set(dead) - set(new)
    assert not missing, f"lost {sorted(missing)[:20]} ({len(missing)} in all)"
    assert all(a < b for a, b in itertools.pairwise(new)), "the new peer must get messages in order"
    # at least once: only what the dead sink consumed but had not yet paid back by credit comes twice
    assert len(set(dead) & set(new)) <= 8
    pub = graph.stats("source")["publishers"]["chatter"]
    assert pub["peers_replaced"] == 1 and pub["peers_lost"] == 0, pub
    assert pub["reliable_peers"] == 1 and pub["pending"] == 0
    assert graph.stats("learner")["subscriptions"]["chatter"]["lost"] == 0


def test_a_finishing_publisher_drains_its_reliable_backlog(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Sink", "learner", {"qos": "reliable(16)", "delay_s": 0.002})
    finisher = graph.start_node("Finisher", "env", {"n": 300})
    # the env publishes 300 messages and stops at once; the slow sink holds 16 at a time
    assert finisher.wait() == 0, finisher.output()
    seen = eventually(lambda: (s := graph.call("learner", "seen"))["count"] == 300 and s,
                      what="every message of the finished run")
    assert seen["ordered"] and (seen["first"], seen["last"]) == (1, 300)
    assert "drain_incomplete" not in finisher.output()


def test_a_coalescing_publisher_sends_batches_and_never_strands_a_partial_one(graph: Graph) -> None:
    graph.start_registry()
    graph.start_node("Source", "source", {"reliable": True, "coalesce": 8, "probe_hz": 10.0})
    graph.start_node("Sink", "sink", {"qos": "reliable(256)"})
    eventually(lambda: graph.stats("source")["publishers"]["chatter"]["reliable_peers"] == 1,
               what="the reliable handshake")
    # probes come one at a time, slower than a batch fills: each goes out alone once it has lingered
    eventually(lambda: graph.call("sink", "seen")["count"] >= 3, what="probes held back for a batch")

    # a burst fills batches: with credit to spare, a plain publisher would send each message by itself
    before = graph.stats("sink")["subscriptions"]["chatter"]["batches"]
    burst = graph.call("source", "burst", n=96)
    sent = graph.call("source", "stop")["sent"]
    seen = eventually(lambda: (s := graph.call("sink", "seen"))["last"] == sent and s, what="the last message")
    assert seen["ordered"] and seen["count"] == sent - seen["first"] + 1, seen
    batches = graph.stats("sink")["subscriptions"]["chatter"]["batches"] - before
    assert batches >= (burst["last"] - burst["first"] + 1) // 8 - 1, batches
    # and every message was paid back by credit: nothing is left held or unconfirmed at the publisher
    eventually(lambda: (p := graph.stats("source")["publishers"]["chatter"])["pending"] == p["unacked"] == 0,
               what="the publisher's books to clear")
    assert graph.stats("sink")["subscriptions"]["chatter"]["lost"] == 0
