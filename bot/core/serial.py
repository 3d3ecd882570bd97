"""Inbound requests as stored in the inbox: enough to parse them again after a crash."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from providers.base import ChatPayment, Inbound, InboundRequest, InChat, Provider

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


def dump_chat_payment(payment: ChatPayment) -> bytes:
    return json.dumps(
        {
            "user_id": payment.user_id,
            "currency": payment.currency,
            "total_amount": payment.total_amount,
            "invoice_payload": payment.invoice_payload,
            "charge_id": payment.charge_id,
            "provider_charge_id": payment.provider_charge_id,
            "at": payment.at.isoformat() if payment.at else None,
        }
    ).encode()


def load_chat_payment(raw: bytes) -> ChatPayment:
    data = json.loads(raw)
    at = data.pop("at", None)
    return ChatPayment(**data, at=datetime.fromisoformat(at) if at else None)


STORED_ERRORS = (ValueError, KeyError, TypeError)  # a row that is not one of ours (any version)


async def parse_stored(provider: Provider, raw: bytes) -> tuple[str, Inbound]:
    """A stored event read again by its adapter: (kind, what it says). Raises one of
    STORED_ERRORS, or the adapter's BadCallback, for a row it cannot read."""
    kind, request = load_request(raw)
    if kind == "return":
        return kind, await provider.parse_return(request)
    if kind in ("callback", "unknown"):  # unknown: a callback about a payment no order has
        return kind, await provider.parse_callback(request)
    if kind == "chat" and isinstance(provider, InChat):
        return kind, provider.parse_chat_payment(load_chat_payment(request.body))
    return kind, Inbound(None)  # a bridge post: its ref went onto the order when it came
