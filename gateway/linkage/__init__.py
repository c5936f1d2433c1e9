"""Linkage adapters (HTTP webhooks, SIA DC-09) behind one Forwarder that routes by endpoint name."""

from __future__ import annotations

from contextlib import AsyncExitStack

from gateway.config import Dc09EndpointSettings, HttpEndpointSettings, LinkageSettings
from gateway.linkage.http import HttpForwarder
from gateway.models import Alarm
from gateway.ports import Forwarder, SendResult


class LinkageForwarder:
    """Forwarder that hands each endpoint to the adapter of its type."""

    def __init__(self, settings: LinkageSettings) -> None:
        http = {n: e for n, e in settings.endpoints.items() if isinstance(e, HttpEndpointSettings)}
        dc09 = {n: e for n, e in settings.endpoints.items() if isinstance(e, Dc09EndpointSettings)}
        self._adapters: list[tuple[set[str], Forwarder]] = [(set(http), HttpForwarder(http))]
        if dc09:
            from gateway.linkage.dc09 import Dc09Forwarder

            self._adapters.append((set(dc09), Dc09Forwarder(dc09)))
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> LinkageForwarder:
        for _, adapter in self._adapters:
            await self._stack.enter_async_context(adapter)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def send(self, endpoint: str, alarm: Alarm) -> SendResult:
        """One attempt through the endpoint's adapter."""
        for names, adapter in self._adapters:
            if endpoint in names:
                return await adapter.send(endpoint, alarm)
        return SendResult(False, f"endpoint {endpoint!r} is not configured")
