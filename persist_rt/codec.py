"""Wire codec: ``[topic, header, payload, *array frames]``, all msgpack, arrays without copies.

Header and payload are msgpack maps, so a plain msgpack reader in any language decodes them.
numpy arrays are msgpack ext types:

* ext 1 (inline):       ``u8 dtype code | u8 ndim | ndim x u64 shape (LE) | raw little-endian data``
* ext 2 (out-of-band):  ``u8 dtype code | u8 ndim | ndim x u64 shape (LE) | u32 frame index (LE)``;
  the data is multipart frame ``3 + index``. Large arrays go this way: the sender hands the array's
  buffer to ZeroMQ and the receiver wraps the frame with ``np.frombuffer``: no copy on either side.

Decoded arrays are read-only views of the received frames.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import msgspec
import numpy as np
import zmq

from protocols.base import FieldError, Message

EXT_INLINE = 1
EXT_FRAME = 2
DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(d).newbyteorder("<")
    for d in ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
              "float16", "float32", "float64")
)
DTYPE_CODES = {d: i for i, d in enumerate(DTYPES)}
MAX_NDIM = 8
_U32 = struct.Struct("<I")
_SHAPES = tuple(struct.Struct(f"<{n}Q") for n in range(MAX_NDIM + 1))


class DecodeError(ValueError):
    """A frame the codec refuses. ``field`` names the part, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Header(msgspec.Struct, kw_only=True, omit_defaults=False):
    schema: str
    version: int
    seq: int
    sender: str
    wall_time: float
    step: int = -1
    sim_time: float = 0.0


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(Header)


_PREFIXES = tuple(struct.Struct(f"<BB{n}Q") for n in range(MAX_NDIM + 1))
# (dtype code, ndim) -> (dtype, shape struct, offset of the data or frame index): one lookup per decoded array
_ARRAY_HEADS = {(code, ndim): (dtype, _SHAPES[ndim], 2 + 8 * ndim)
                for code, dtype in enumerate(DTYPES) for ndim in range(MAX_NDIM + 1)}


def _bad_array_head(data: memoryview) -> str:
    if len(data) < 2:
        return "truncated array header"
    if data[0] >= len(DTYPES):
        return f"unknown array dtype code {data[0]}"
    return f"array has {data[1]} dimensions, at most {MAX_NDIM}"


def _size_mismatch(got: int, shape: tuple[int, ...], dtype: np.dtype, needed: int) -> str:
    return f"array data is {got} bytes, shape {shape} of {dtype.name} needs {needed}"


def _array_prefix(arr: np.ndarray) -> bytes:
    code = DTYPE_CODES.get(arr.dtype)  # native little-endian dtypes hit directly
    if code is None:
        code = DTYPE_CODES.get(arr.dtype.newbyteorder("<"))
        if code is None:
            raise TypeError(f"arrays of dtype {arr.dtype} cannot be sent")
    if arr.ndim > MAX_NDIM:
        raise TypeError(f"arrays of {arr.ndim} dimensions cannot be sent (at most {MAX_NDIM})")
    return _PREFIXES[arr.ndim].pack(code, arr.ndim, *arr.shape)


class HeaderPacker:
    """Packs one publisher's headers by hand: the constant part once, the four changing fields per message.

    The result is the same msgpack map ``Header`` describes (keys in another order, fixed-width numbers), so
    plain msgpack readers and ``Codec.decode_header`` read it like any other header. About half the cost of
    building and encoding a ``Header`` per message.
    """

    _TAIL = struct.Struct(">4sBQ10sBd5sBq9sBd")

    def __init__(self, schema: str, version: int, sender: str) -> None:
        head = _header_encoder.encode({"schema": schema, "version": version, "sender": sender})
        self.prefix = bytes([0x87]) + head[1:]  # fixmap of 3 -> fixmap of 7; the 4 tail pairs follow

    def pack(self, seq: int, step: int, sim_time: float) -> bytes:
        return self.prefix + self._TAIL.pack(b"\xa3seq", 0xCF, seq, b"\xa9wall_time", 0xCB, time.time(),
                                             b"\xa4step", 0xD3, step, b"\xa8sim_time", 0xCB, sim_time)


class Codec:
    """Encodes and decodes messages; one per process (it is not thread-safe)."""

    def __init__(self, inline_limit: int = 16 * 1024, max_message_bytes: int = 256 * 1024 * 1024) -> None:
        self.inline_limit = inline_limit
        self.max_message_bytes = max_message_bytes
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._decoders: dict[type, msgspec.msgpack.Decoder] = {}
        self._out_frames: list[Any] = []
        self._in_frames: list[Any] | tuple[()] = ()

    # --- encode ------------------------------------------------------------------------------

    def _enc_hook(self, obj: Any) -> Any:
        if type(obj) is np.ndarray or isinstance(obj, np.ndarray):
            if obj.dtype.byteorder == ">":
                obj = obj.astype(obj.dtype.newbyteorder("<"))
            prefix = _array_prefix(obj)
            if obj.nbytes <= self.inline_limit:
                return msgspec.msgpack.Ext(EXT_INLINE, prefix + obj.tobytes())
            self._out_frames.append(np.ascontiguousarray(obj))
            return msgspec.msgpack.Ext(EXT_FRAME, prefix + _U32.pack(len(self._out_frames) - 1))
        if isinstance(obj, np.generic):
            return obj.item()
        raise NotImplementedError(f"cannot encode {type(obj).__name__}")

    def encode_payload(self, msg: Message) -> list[Any]:
        """``[payload, *array frames]`` for one message."""
        self._out_frames = []
        payload = self._encoder.encode(msg)
        frames, self._out_frames = self._out_frames, []
        return [payload, *frames]

    def encode_frames(self, topic: bytes, header: bytes, msg: Message) -> list[Any]:
        """``[topic, header, payload, *array frames]`` for one message."""
        try:
            payload = self._encoder.encode(msg)
        except BaseException:
            self._out_frames = []
            raise
        if self._out_frames:
            frames, self._out_frames = self._out_frames, []
            return [topic, header, payload, *frames]
        return [topic, header, payload]

    @staticmethod
    def encode_header(
        msg_type: type[Message], seq: int, sender: str, step: int = -1, sim_time: float = 0.0
    ) -> bytes:
        return _header_encoder.encode(
            Header(schema=msg_type.SCHEMA, version=msg_type.VERSION, seq=seq, sender=sender,
                   wall_time=time.time(), step=step, sim_time=sim_time)
        )

    # --- decode ------------------------------------------------------------------------------

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code != EXT_INLINE and code != EXT_FRAME:
            raise ValueError(f"unknown ext type {code}")
        try:
            dtype, shape_of, body = _ARRAY_HEADS[data[0], data[1]]
        except (KeyError, IndexError):
            raise ValueError(_bad_array_head(data)) from None
        if len(data) < body:
            raise ValueError("truncated array header")
        shape = shape_of.unpack_from(data, 2)
        nbytes = math.prod(shape) * dtype.itemsize
        if code == EXT_INLINE:
            if len(data) - body != nbytes:
                raise ValueError(_size_mismatch(len(data) - body, shape, dtype, nbytes))
            return np.ndarray(shape, dtype, data, body)  # one call: a view of the payload, no copy
        if len(data) != body + 4:
            raise ValueError("malformed out-of-band array reference")
        index = _U32.unpack_from(data, body)[0]
        if index + 3 >= len(self._in_frames):
            raise ValueError(f"array refers to frame {index + 3}, message has {len(self._in_frames)}")
        raw = _byte_view(self._in_frames[index + 3])
        if raw.nbytes != nbytes:
            raise ValueError(_size_mismatch(raw.nbytes, shape, dtype, nbytes))
        arr = np.ndarray(shape, dtype, raw)
        arr.flags.writeable = False  # a received zmq.Frame's buffer is writable; a decoded array never is
        return arr

    @staticmethod
    def _dec_hook(t: type, obj: Any) -> Any:
        if t is np.ndarray and isinstance(obj, np.ndarray):
            return obj
        raise TypeError(f"expected an array, got {type(obj).__name__}")

    def decoder_for(self, msg_type: Any) -> msgspec.msgpack.Decoder:
        """A cached decoder for ``msg_type`` (a message class, or a type built from one, e.g. a batch)."""
        return self._decoder(msg_type)

    def _decoder(self, msg_type: Any) -> msgspec.msgpack.Decoder:
        dec = self._decoders.get(msg_type)
        if dec is None:
            dec = msgspec.msgpack.Decoder(msg_type, ext_hook=self._ext_hook, dec_hook=self._dec_hook)
            self._decoders[msg_type] = dec
        return dec

    def check_size(self, frames: list[Any]) -> None:
        size = 0
        for f in frames:
            size += len(f) if type(f) is bytes else _byte_view(f).nbytes
        if size > self.max_message_bytes:
            raise DecodeError("frames", f"message is {size} bytes, the limit is {self.max_message_bytes}")

    def decode_header(self, frame: Any) -> Header:
        try:
            return _header_decoder.decode(frame)
        except msgspec.DecodeError as exc:
            raise DecodeError("header", f"not a valid msgpack header ({exc})") from None
        except msgspec.ValidationError as exc:
            raise DecodeError("header", str(exc)) from None

    def decode(self, frames: list[Any], msg_type: type[Message], header: Header | None = None) -> Message:
        """Decode ``[topic, header, payload, *arrays]`` as ``msg_type``; DecodeError on anything wrong."""
        if len(frames) < 3:
            raise DecodeError("frames", f"expected at least 3 frames (topic, header, payload), got {len(frames)}")
        self.check_size(frames)
        if header is None:
            header = self.decode_header(frames[1])
        if header.schema != msg_type.SCHEMA or header.version != msg_type.VERSION:
            raise DecodeError(
                "header.schema",
                f"got {header.schema}@{header.version}, this edge carries {msg_type.SCHEMA}@{msg_type.VERSION}",
            )
        return self.decode_payload(frames, self._decoder(msg_type))

    def decode_payload(self, frames: list[Any], decoder: msgspec.msgpack.Decoder, payload: Any = None) -> Any:
        """Decode the payload (``frames[2]`` unless given) with a decoder from ``decoder_for``; the header
        and size are the caller's to check. DecodeError names the field on anything wrong."""
        self._in_frames = frames
        try:
            msg = decoder.decode(frames[2] if payload is None else payload)
        except FieldError as exc:
            raise DecodeError(f"payload.{exc.field}", exc.reason) from None
        except msgspec.ValidationError as exc:
            cause = exc.__cause__  # msgspec wraps what __post_init__ raised
            if isinstance(cause, FieldError):
                raise DecodeError(f"payload.{cause.field}", cause.reason) from None
            raise DecodeError("payload", str(exc)) from None
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise DecodeError("payload", f"malformed ({exc})") from None
        finally:
            self._in_frames = ()
        return msg


def _byte_view(frame: Any) -> memoryview:
    """A flat byte view of a frame (zmq.Frame, bytes, memoryview or ndarray)."""
    view = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def plain_view(frames: list[bytes]) -> dict[str, Any]:
    """Decode a message with plain msgpack rules only (what a reader in another language sees)."""
    return {
        "topic": bytes(frames[0]).decode(),
        "header": msgspec.msgpack.decode(frames[1]),
        "payload": msgspec.msgpack.decode(frames[2]),
        "frames": len(frames) - 3,
    }
