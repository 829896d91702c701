"""Every message kind on the wire, read back by the plain ``msgpack`` package; the JSON Schema covers them all."""

from __future__ import annotations

import re
import struct

import msgpack
import msgspec
import numpy as np
import pytest
import zmq

import protocols
from persist_rt.codec import EXT_FRAME, EXT_INLINE, Codec, DecodeError
from persist_rt.transport import recv_frames, send_frames
from protocols import SCHEMAS
from tests.runtime import wire

N = 3
f32 = np.float32


def _examples() -> dict[str, protocols.Message]:
    rng = np.random.default_rng(0)
    return {m.SCHEMA: m for m in [
        protocols.Observation(step=7, obs=rng.random((N, 5), f32), positions=rng.random((N, 2)),
                              episode_step=np.arange(N, dtype=np.int64), internal=rng.random((N, 2)),
                              sim_time=0.7),
        protocols.StateEstimate(step=7, mean=rng.random((N, 2), f32), std=rng.random((N, 2), f32)),
        protocols.ProposedAction(step=7, actions=rng.random((N, 2), f32), policy_version=3),
        protocols.SafeAction(step=7, actions=rng.random((N, 2), f32), mode=np.array([0, 1, 2], np.uint8),
                             constraint=["", "energy", "stale"], margin_before=np.array([1, -1, np.inf], f32),
                             margin_after=rng.random(N, f32)),
        protocols.TransitionBatch(step=7, obs=rng.random((N, 5), f32), actions=rng.random((N, 2), f32),
                                  reward=rng.random(N, f32), reward_task=rng.random(N, f32),
                                  reward_homeo=rng.random(N, f32), next_obs=rng.random((N, 5), f32),
                                  terminated=np.array([0, 1, 0], bool), truncated=np.zeros(N, bool)),
        protocols.EpisodeEvents(step=7, arena=np.array([1], np.int64), length=np.array([40], np.int64),
                                ret=np.array([2.5], f32), task_return=np.array([1.0], f32),
                                died=np.array([True]), cause=["energy"]),
        # a large tensor goes out of band as its own frame
        protocols.PolicyWeights(version=2, spec={"hidden": [64, 64]}, source="learner",
                                tensors={"w": rng.random((256, 64), f32), "b": rng.random(64, f32)}),
        protocols.ShieldReport(step=[7], arena=[1], mode=["filtered"], cause=["temperature"], margin_before=[-0.1],
                               margin_after=[0.0], proposed=[[1.0, 0.0]], safe=[[0.5, 0.0]]),
        protocols.StationRequests(step=7, station=np.array([0, -1, 2], np.int64), demand=rng.random(N, f32),
                                  margin=rng.random(N, f32)),
        protocols.StationGrants(step=7, grants=rng.random(N, f32), jain_index=0.95),
        protocols.Heartbeat(node="agent", state="active", pid=12, seq=4),
        protocols.Metrics(node="agent", counters={"edge.obs.dropped": 2.0}, gauges={"restarts": 0.0}),
        protocols.LogRecord(node="agent", level="info", event="started", fields={"k": 1}),
        protocols.ParameterUpdate(node="agent", name="lr", value=0.001, old=0.01),
        protocols.Text(data="hello", seq=1),
        protocols.Blob(data=rng.random((2, 3)), seq=2),
    ]}


EXAMPLES = _examples()


def test_every_schema_has_an_example() -> None:
    assert set(EXAMPLES) == set(SCHEMAS)


@pytest.mark.parametrize("schema", sorted(EXAMPLES))
def test_plain_msgpack_reads_every_message_kind(schema: str) -> None:
    msg = EXAMPLES[schema]
    codec = Codec()
    frames = [b"topic", Codec.encode_header(type(msg), seq=5, sender="agent", step=7, sim_time=0.7),
              *codec.encode_payload(msg)]
    frames = [bytes(memoryview(f).cast("B")) if isinstance(f, np.ndarray) else bytes(f) for f in frames]

    header = msgpack.unpackb(frames[1])
    assert header["schema"] == schema and header["version"] == type(msg).VERSION
    assert (header["seq"], header["sender"], header["step"], header["sim_time"]) == (5, "agent", 7, 0.7)
    assert isinstance(header["wall_time"], float)

    payload = msgpack.unpackb(frames[2], strict_map_key=False)
    assert set(payload) == set(msg.__struct_fields__)
    for name in msg.__struct_fields__:
        expected, got = getattr(msg, name), payload[name]
        if isinstance(expected, np.ndarray):
            assert isinstance(got, msgpack.ExtType) and got.code in (EXT_INLINE, EXT_FRAME)
            np.testing.assert_array_equal(wire.decode_array(got, frames), expected)
            assert wire.decode_array(got, frames).dtype == expected.dtype
        elif isinstance(expected, dict) and expected and isinstance(next(iter(expected.values())), np.ndarray):
            for key, arr in expected.items():
                np.testing.assert_array_equal(wire.decode_array(got[key], frames), arr)
        else:
            assert got == msgspec.to_builtins(expected)
    # and the codec gets the same message back
    back = codec.decode(frames, type(msg))
    assert msgspec.msgpack.encode(back, enc_hook=codec._enc_hook) == frames[2]


def test_large_arrays_travel_out_of_band() -> None:
    codec = Codec()
    frames = codec.encode_payload(EXAMPLES["persist.PolicyWeights"])
    assert len(frames) == 2 and frames[1].nbytes == 256 * 64 * 4
    payload = msgpack.unpackb(frames[0])
    assert payload["tensors"]["w"].code == EXT_FRAME and payload["tensors"]["b"].code == EXT_INLINE


def test_json_schema_covers_every_schema() -> None:
    doc = protocols.json_schema()
    by_schema = {d["x-schema"]: d for d in doc["$defs"].values() if "x-schema" in d}
    assert set(by_schema) == set(SCHEMAS)
    for name, cls in SCHEMAS.items():
        entry = by_schema[name]
        assert entry["x-version"] == cls.VERSION
        assert set(entry["properties"]) == set(cls.__struct_fields__)
    obs = by_schema["persist.Observation"]["properties"]["obs"]
    assert obs["x-msgpack-ext"] == [1, 2]


def _proposal_frames(actions: msgspec.msgpack.Ext, *extra: bytes) -> list[bytes]:
    """A ProposedAction on the wire whose `actions` field is the given ext value."""
    header = Codec.encode_header(protocols.ProposedAction, seq=1, sender="test")
    payload = msgspec.msgpack.encode({"step": 1, "actions": actions, "policy_version": 0})
    return [b"action/proposed", header, payload, *extra]


def _array_ext(code: int, dtype_code: int, shape: tuple[int, ...], body: bytes) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, bytes([dtype_code, len(shape)]) + struct.pack(f"<{len(shape)}Q", *shape) + body)


F32_CODE = 10  # persist_rt.codec.DTYPES


@pytest.mark.parametrize(("ext", "frames", "reason"), [
    (msgspec.msgpack.Ext(7, b"\x0a\x02"), (), "unknown ext type 7"),
    (msgspec.msgpack.Ext(EXT_INLINE, b"\x0a"), (), "truncated array header"),
    (_array_ext(EXT_INLINE, 99, (1, 2), bytes(8)), (), "unknown array dtype code 99"),
    (msgspec.msgpack.Ext(EXT_INLINE, bytes([F32_CODE, 9]) + bytes(72)), (), "9 dimensions, at most 8"),
    (msgspec.msgpack.Ext(EXT_INLINE, bytes([F32_CODE, 2]) + bytes(8)), (), "truncated array header"),
    (_array_ext(EXT_INLINE, F32_CODE, (1, 2), bytes(12)), (), "array data is 12 bytes, shape (1, 2) of float32 needs 8"),
    (_array_ext(EXT_FRAME, F32_CODE, (1, 2), bytes(2)), (), "malformed out-of-band array reference"),
    (_array_ext(EXT_FRAME, F32_CODE, (1, 2), struct.pack("<I", 1)), (bytes(8),), "refers to frame 4"),
    (_array_ext(EXT_FRAME, F32_CODE, (1, 2), struct.pack("<I", 0)), (bytes(4),), "array data is 4 bytes"),
])  # fmt: skip
def test_a_malformed_array_is_refused_naming_the_payload(ext: msgspec.msgpack.Ext, frames: tuple[bytes, ...],
                                                         reason: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(reason)) as caught:
        Codec().decode(_proposal_frames(ext, *frames), protocols.ProposedAction)
    assert caught.value.field == "payload"


def test_arrays_decode_as_read_only_views_in_and_out_of_band() -> None:
    """Through a real socket: an inline array is a view of the payload frame, an out-of-band one a view of its
    own zmq.Frame (whose buffer pyzmq hands out writable); neither may be written."""
    weights = EXAMPLES["persist.PolicyWeights"]
    codec = Codec()
    ctx = zmq.Context.instance()
    tx, rx = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        tx.bind("inproc://test-read-only-arrays")
        rx.connect("inproc://test-read-only-arrays")
        send_frames(tx, codec.encode_frames(b"policy/weights", Codec.encode_header(type(weights), 1, "test"), weights))
        assert rx.poll(5000)
        frames = recv_frames(rx)
    finally:
        tx.close(0)
        rx.close(0)
    assert len(frames) == 4 and isinstance(frames[3], zmq.Frame)  # w travels out of band, b inline
    msg = codec.decode(frames, type(weights))
    for name in ("w", "b"):
        np.testing.assert_array_equal(msg.tensors[name], weights.tensors[name])
        assert not msg.tensors[name].flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            msg.tensors[name][0] = 1.0


@pytest.mark.parametrize("rows", [1, 64])  # a sum proves small arrays finite, numpy checks large ones
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_in_small_and_large_arrays(rows: int, bad: float) -> None:
    actions = np.zeros((rows, 2), f32)
    actions[-1, 1] = bad
    with pytest.raises(protocols.FieldError, match=r"field `actions`: contains NaN or inf"):
        protocols.ProposedAction(step=1, actions=actions)
    huge = np.full((rows, 2), 3e38, f32)  # finite values whose sum overflows
    assert protocols.ProposedAction(step=1, actions=huge).actions is huge
