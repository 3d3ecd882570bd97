"""aiohttp request -> the framework-free InboundRequest the providers parse; Ack -> response."""

from __future__ import annotations

from aiohttp import web

from bot.core import Ack, InboundRequest


async def to_inbound(request: web.Request) -> InboundRequest:
    try:
        body = await request.read() if request.can_read_body else b""
    except web.RequestPayloadError:  # a body that cannot be decoded (a false gzip claim)
        raise web.HTTPBadRequest(text="unreadable body") from None
    return InboundRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query.items()),
        headers={k.lower(): v for k, v in request.headers.items() if k.lower() != "cookie"},
        body=body,
    )


def to_response(ack: Ack) -> web.Response:
    kind, _, params = ack.content_type.partition(";")
    charset = params.partition("charset=")[2].strip() or None
    return web.Response(
        status=ack.status, body=ack.body, content_type=kind.strip(), charset=charset
    )
