"""The wire format written by hand with the plain ``msgpack`` package, as a client in another language would."""

from __future__ import annotations

import struct
import time
from typing import Any

import msgpack
import numpy as np

from persist_rt.codec import DTYPE_CODES, EXT_FRAME, EXT_INLINE


def array_prefix(arr: np.ndarray) -> bytes:
    return struct.pack(f"<BB{arr.ndim}Q", DTYPE_CODES[arr.dtype.newbyteorder("<")], arr.ndim, *arr.shape)


def inline(arr: np.ndarray) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_INLINE, array_prefix(arr) + arr.tobytes())


def out_of_band(arr: np.ndarray, index: int) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_FRAME, array_prefix(arr) + struct.pack("<I", index))


def header(seq: int, schema: str = "persist.Observation", version: int = 2, sender: str = "raw") -> bytes:
    return msgpack.packb({"schema": schema, "version": version, "seq": seq, "sender": sender,
                          "wall_time": time.time(), "step": seq, "sim_time": 0.0})


def decode_array(ext: msgpack.ExtType, frames: list[bytes]) -> np.ndarray:
    """Read an array ext type following docs in persist_rt.codec, without the codec."""
    code, ndim = ext.data[0], ext.data[1]
    shape = struct.unpack_from(f"<{ndim}Q", ext.data, 2)
    dtype = next(d for d, c in DTYPE_CODES.items() if c == code)
    body = ext.data[2 + 8 * ndim:]
    if ext.code == EXT_FRAME:
        body = frames[3 + struct.unpack("<I", body)[0]]
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def observation(step: int, n: int = 4, obs: Any = None, positions: Any = None) -> dict[str, Any]:
    """An Observation payload as a plain map; pass arrays (or ext types) to override fields."""
    return {
        "step": step,
        "obs": inline(np.full((n, 3), step, np.float32)) if obs is None else obs,
        "positions": inline(np.zeros((n, 2))) if positions is None else positions,
        "episode_step": inline(np.arange(n, dtype=np.int64)),
        "internal": None,
        "sim_time": 0.0,
    }
