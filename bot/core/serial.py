"""Inbound requests as stored in the inbox: enough to parse them again after a crash."""

from __future__ import annotations

import base64
import json

from providers.base import InboundRequest

# The only headers an inbound request keeps when it is stored: what an adapter may need to parse
# it again. Never Authorization, cookies or anything else that may carry a credential.
STORED_HEADERS = frozenset({"content-type", "user-agent", "x-forwarded-for", "x-real-ip"})


def dump_request(kind: str, request: InboundRequest) -> bytes:
    return json.dumps(
        {
            "kind": kind,
            "method": request.method,
            "path": request.path,
            # never the callback key: it is the credential, and a replay does not need it
            "query": {k: v for k, v in request.query.items() if k != "k"},
            "headers": {k: v for k, v in request.headers.items() if k in STORED_HEADERS},
            "body": base64.b64encode(request.body).decode(),
        }
    ).encode()


def load_request(raw: bytes) -> tuple[str, InboundRequest]:
    """(kind, request); ValueError or KeyError for a row that is not one of ours."""
    data = json.loads(raw)
    return data["kind"], InboundRequest(
        method=data["method"],
        path=data["path"],
        query=data["query"],
        headers=data["headers"],
        body=base64.b64decode(data["body"]),
    )
