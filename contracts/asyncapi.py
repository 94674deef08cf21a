"""Generate the AsyncAPI 3.0 document of the bus from ``contracts.catalog``.

python -m contracts.asyncapi docs/asyncapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts import subjects
from contracts.audit import Checkpoint
from contracts.catalog import EVENTS, OPERATIONS
from contracts.envelope import Reply
from contracts.events import Event


def _key(text: str) -> str:
    return text.replace(".", "_").replace(">", "all")


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {"Reply": {"name": "Reply", "payload": _schema(Reply, schemas)}}
    for op in OPERATIONS:
        key = _key(op.subject)
        messages[op.request.__name__] = {"name": op.request.__name__, "payload": _schema(op.request, schemas)}
        if op.reply is not None:
            _schema(op.reply, schemas)
        channels[key] = {
            "address": op.subject,
            "messages": {"request": {"$ref": f"#/components/messages/{op.request.__name__}"}},
            "description": f"Request/reply; queue group {subjects.queue_group(op.subject.split('.')[1])}. "
            f"Reply: the envelope, result {op.reply.__name__ if op.reply else 'object'}.",
        }
        operations[key] = {
            "action": "receive",
            "summary": op.summary,
            "channel": {"$ref": f"#/channels/{key}"},
            "reply": {
                "address": {"location": "$message.header#/reply_to"},
                "messages": [{"$ref": "#/components/messages/Reply"}],
            },
        }
    messages["Event"] = {
        "name": "Event",
        "payload": _schema(Event, schemas),
        "headers": {"type": "object", "properties": {"Nats-Msg-Id": {"type": "string"}}},
    }
    for event in EVENTS:
        service, _, name = event.event_type.partition(".")
        key = _key(subjects.event(service, name))
        if event.data is not None:
            _schema(event.data, schemas)
        channels[key] = {
            "address": subjects.event(service, name),
            "messages": {"event": {"$ref": "#/components/messages/Event"}},
            "description": f"JetStream stream {event.stream}; data: "
            f"{event.data.__name__ if event.data else 'see the event type'}.",
        }
        operations[key] = {"action": "send", "summary": event.summary, "channel": {"$ref": f"#/channels/{key}"}}
    channels["fevt_all"] = {
        "address": "fevt.>",
        "messages": {"event": {"$ref": "#/components/messages/Event"}},
        "description": f"High-volume file-change events on JetStream stream {subjects.FILE_EVENTS_STREAM}.",
    }
    channels["auditcp_all"] = {
        "address": "auditcp.>",
        "messages": {"checkpoint": {"payload": _schema(Checkpoint, schemas)}},
        "description": f"Signed audit checkpoints, auditcp.<tenant>, on JetStream stream "
        f"{subjects.AUDIT_CHECKPOINTS_STREAM} (deny delete, deny purge).",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Coditect bus",
            "version": "5.0.0",
            "description": "NATS subjects of the Coditect services, generated from contracts/.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/asyncapi.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(build(), indent=2, default=str) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
