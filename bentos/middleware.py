"""An ASGI guard in front of the service: body size (413), media type (415), failure metrics.

BentoML 1.4 has no request-body limit (a 50 MB JSON took a worker to 1.2 GiB) and answers a
multipart request without a boundary with a 500: both are refused here before any parsing.
Every 4xx is counted per field and rule from the error body the service already produced.
"""

from __future__ import annotations

import json
from typing import Any

_DRAIN_LIMIT = 256 * 1024 * 1024  # read and drop a too-large body up to this, so the client
# gets the 413 instead of a reset connection; beyond it the connection is simply closed
_JSON = (b"application/json", b"")


async def _reply(send: Any, status: int, error: str, detail: list[dict]) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _count(rule: str, field: str, n: int = 1) -> None:
    try:
        from bentos.metrics import serving_metrics

        serving_metrics().validation_failures.labels(field=field, rule=rule).inc(n)
    except Exception:  # a metric must never turn a 4xx into a 5xx
        pass


def _count_errors(body: bytes) -> None:
    try:
        data = json.loads(body)
    except ValueError:
        return _count("unknown", "body")
    details = data.get("detail") if isinstance(data, dict) else None
    if not isinstance(details, list) or not details:
        return _count("unknown", "body")
    for d in details:
        if not isinstance(d, dict):
            continue
        loc = [p for p in d.get("loc", []) if isinstance(p, str)]
        _count(str(d.get("type", "unknown")), loc[-1] if loc else "body")


class GuardMiddleware:
    """Refuse oversized or non-JSON POST bodies; count validation failures by field."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media not in _JSON:
            _count("media_type", "body")
            await _drain(receive, _DRAIN_LIMIT)
            return await _reply(
                send,
                415,
                f"unsupported media type {media.decode(errors='replace')!r}: "
                "send the body as application/json",
                [{"type": "media_type", "loc": ["body"], "msg": "expected application/json"}],
            )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body_bytes
            except ValueError:
                return await _reply(send, 400, "invalid Content-Length header", [])
            if too_big:
                return await self._too_large(receive, send)
        else:  # chunked: read up to the limit here, then replay to the app
            body, over = await _read(receive, self.max_body_bytes)
            if over:
                return await self._too_large(receive, send)
            receive = _replay(body, receive)
        await self.app(scope, receive, _counting(send))

    async def _too_large(self, receive: Any, send: Any) -> None:
        _count("body_too_large", "body")
        await _drain(receive, _DRAIN_LIMIT)
        limit = self.max_body_bytes
        await _reply(
            send,
            413,
            f"request body larger than {limit} bytes: send fewer records per call",
            [{"type": "body_too_large", "loc": ["body"], "msg": f"at most {limit} bytes"}],
        )


def _counting(send: Any) -> Any:
    state = {"status": 0, "chunks": []}

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body" and 400 <= state["status"] < 500:
            state["chunks"].append(message.get("body", b""))
            if not message.get("more_body", False):
                _count_errors(b"".join(state["chunks"]))
        await send(message)

    return wrapped


async def _read(receive: Any, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


async def _drain(receive: Any, limit: int) -> None:
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(body: bytes, original: Any) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()  # only a disconnect can come now

    return receive
