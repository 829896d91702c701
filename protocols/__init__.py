"""The contract between nodes: every message schema, versioned, in one place."""

from protocols.base import SCHEMAS, FieldError, Message, schema_id
from protocols.messages import (
    MODE_FALLBACK,
    MODE_FILTERED,
    MODE_NAMES,
    MODE_PASS,
    Blob,
    EpisodeEvents,
    Heartbeat,
    LogRecord,
    Metrics,
    Observation,
    ParameterUpdate,
    PolicyWeights,
    ProposedAction,
    SafeAction,
    ShieldReport,
    StateEstimate,
    StationGrants,
    StationRequests,
    Text,
    TransitionBatch,
)

__all__ = [
    "MODE_FALLBACK", "MODE_FILTERED", "MODE_NAMES", "MODE_PASS", "SCHEMAS", "Blob", "EpisodeEvents",
    "FieldError", "Heartbeat", "LogRecord", "Message", "Metrics", "Observation", "ParameterUpdate",
    "PolicyWeights", "ProposedAction", "SafeAction", "ShieldReport", "StateEstimate", "StationGrants",
    "StationRequests", "Text", "TransitionBatch", "json_schema", "schema_id",
]


def json_schema() -> dict:
    """A JSON Schema document with every message; ndarrays are described as the ext type they are."""
    import msgspec
    import numpy as np

    def hook(t: type) -> dict:
        if t is np.ndarray:
            return {
                "description": "numpy array: msgpack ext type 1 (inline) or 2 (out-of-band frame); "
                "see docs/wire.md",
                "x-msgpack-ext": [1, 2],
            }
        raise NotImplementedError

    types = [SCHEMAS[name] for name in sorted(SCHEMAS)]
    (_, components) = msgspec.json.schema_components(types, schema_hook=hook)
    for cls in types:
        entry = components[cls.__name__]
        entry["x-schema"] = cls.SCHEMA
        entry["x-version"] = cls.VERSION
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": components}
