"""Forwarder adapter: POST an alarm as JSON to a linkage endpoint with an Idempotency-Key.

With a per-endpoint secret the request is signed: `X-Campusgw-Timestamp` (unix seconds) and
`X-Campusgw-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, so the
receiver can reject forged or replayed alarms.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
import orjson

from gateway.config import HttpEndpointSettings
from gateway.models import Alarm
from gateway.ports import SendResult


def alarm_body(alarm: Alarm) -> bytes:
    """The JSON an endpoint receives (the alarm without its delivery bookkeeping)."""
    return orjson.dumps(alarm.model_dump(mode="json", exclude={"deliveries"}))


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Campusgw-Signature value for a body sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class HttpForwarder:
    """Forwarder over HTTP(S); one pooled session for all endpoints."""

    def __init__(self, endpoints: dict[str, HttpEndpointSettings]) -> None:
        self._endpoints = endpoints
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpForwarder:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, limit_per_host=32)
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, settings: HttpEndpointSettings, alarm: Alarm, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": alarm.id}
        if alarm.test:
            headers["X-Campusgw-Test"] = "1"
        if settings.secret is not None:
            timestamp = str(int(time.time()))
            secret = settings.secret.get_secret_value().encode()
            headers["X-Campusgw-Timestamp"] = timestamp
            headers["X-Campusgw-Signature"] = signature(secret, timestamp, body)
        return headers

    async def send(self, endpoint: str, alarm: Alarm) -> SendResult:
        """One attempt; 2xx confirms, anything else (or no answer in time) is a failure."""
        settings = self._endpoints.get(endpoint)
        if settings is None:
            return SendResult(False, f"endpoint {endpoint!r} is not an HTTP endpoint")
        if self._session is None:
            raise RuntimeError("HttpForwarder used outside 'async with'")
        url = settings.test_url if alarm.test else settings.url
        if url is None:
            return SendResult(False, f"endpoint {endpoint!r} has no test_url (test channel)")
        body = alarm_body(alarm)
        timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        try:
            async with self._session.post(
                str(url), data=body, headers=self._headers(settings, alarm, body),
                timeout=timeout,
            ) as resp:  # fmt: skip
                text = (await resp.text())[:200]
                if 200 <= resp.status < 300:
                    return SendResult(True, f"HTTP {resp.status}")
                return SendResult(False, f"HTTP {resp.status}: {text}")
        except TimeoutError:
            return SendResult(False, f"no answer within {settings.timeout_s} s")
        except aiohttp.ClientError as exc:
            return SendResult(False, f"{type(exc).__name__}: {exc}")
