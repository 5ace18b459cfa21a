"""JSON Schema of every command and every event envelope, for platforms that publish to Kafka."""

from __future__ import annotations

from typing import Any

import msgspec

from handoff.kernel.codec import current_schema_version
from handoff.kernel.commands import Command
from handoff.kernel.events import EVENT_TYPES

_ENVELOPE_FIELDS: dict[str, Any] = {
    "eventId": {"type": "string"},
    "sessionKey": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,255}$"},
    "version": {"type": "integer", "minimum": 1},
    "schemaVersion": {"type": "integer", "minimum": 1},
    "occurredAt": {"type": "string", "format": "date-time"},
    "actor": {"type": "string"},
    "idempotencyKey": {"type": "string", "maxLength": 128},
    "prevHash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}


def event_schemas() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) per event type: the envelope with its typed ``data``."""
    payloads, components = msgspec.json.schema_components(list(EVENT_TYPES.values()), ref_template="#/$defs/{name}")
    out: dict[str, Any] = {}
    for (name, _cls), payload in zip(EVENT_TYPES.items(), payloads, strict=True):
        properties = dict(_ENVELOPE_FIELDS)
        properties["type"] = {"const": name}
        properties["schemaVersion"] = {"const": current_schema_version(name)}
        properties["data"] = payload
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": name,
            "type": "object",
            "properties": properties,
            "required": [k for k in properties if k != "idempotencyKey"],
            "$defs": components,
        }
    return out


def command_schema() -> dict[str, Any]:
    """The JSON Schema of a command record: one of the tagged command objects."""
    schema: dict[str, Any] = msgspec.json.schema(Command)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def all_schemas() -> dict[str, Any]:
    """Everything the package publishes: ``{"events": {...}, "command": {...}}``."""
    return {"events": event_schemas(), "command": command_schema()}
