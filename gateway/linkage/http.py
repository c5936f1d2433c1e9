"""Forwarder adapter: POST an alarm as JSON to a linkage endpoint with an Idempotency-Key."""

from __future__ import annotations

import aiohttp
import orjson

from gateway.config import EndpointSettings
from gateway.models import Alarm
from gateway.ports import SendResult


def alarm_body(alarm: Alarm) -> bytes:
    """The JSON an endpoint receives (the alarm without its delivery bookkeeping)."""
    return orjson.dumps(alarm.model_dump(mode="json", exclude={"deliveries"}))


class HttpForwarder:
    """Forwarder over HTTP(S); one pooled session for all endpoints."""

    def __init__(self, endpoints: dict[str, EndpointSettings]) -> None:
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

    async def send(self, endpoint: str, alarm: Alarm) -> SendResult:
        """One attempt; 2xx confirms, anything else (or no answer in time) is a failure."""
        settings = self._endpoints.get(endpoint)
        if settings is None:
            return SendResult(False, f"endpoint {endpoint!r} is not configured")
        if self._session is None:
            raise RuntimeError("HttpForwarder used outside 'async with'")
        headers = {"Content-Type": "application/json", "Idempotency-Key": alarm.id}
        timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        try:
            async with self._session.post(
                str(settings.url), data=alarm_body(alarm), headers=headers, timeout=timeout
            ) as resp:
                text = (await resp.text())[:200]
                if 200 <= resp.status < 300:
                    return SendResult(True, f"HTTP {resp.status}")
                return SendResult(False, f"HTTP {resp.status}: {text}")
        except TimeoutError:
            return SendResult(False, f"no answer within {settings.timeout_s} s")
        except aiohttp.ClientError as exc:
            return SendResult(False, f"{type(exc).__name__}: {exc}")
