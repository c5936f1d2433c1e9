"""InfluxDB v2 HTTP API adapter (/api/v2/write with token, org and bucket) via influxdb-client.

Works against InfluxDB 2.x, the v2 write endpoint of InfluxDB 3 Core/Enterprise and servers
that accept it, such as VictoriaMetrics (docs/storage.md). Only the client's async write call is
used, one request per batch: its batching WriteApi drops batches after its own retries
(DOMAIN.md), while the TelemetryWriter keeps a failed batch and retries it itself.
"""

from __future__ import annotations

import logging

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.buckets_service import BucketsService

from gateway.config import InfluxSettings
from gateway.ports import PointsRejectedError
from gateway.storage.influx import refuses_points

log = logging.getLogger(__name__)


class InfluxV2Sink:
    """TelemetrySink over /api/v2/write; one influxdb-client async client (aiohttp inside)."""

    def __init__(self, settings: InfluxSettings) -> None:
        if settings.bucket is None or settings.org is None:
            raise ValueError("InfluxV2Sink needs influxdb.bucket and influxdb.org")
        self._settings = settings
        self._bucket, self._org = settings.bucket, settings.org
        self._url = str(settings.url).rstrip("/")
        self._client: InfluxDBClientAsync | None = None
        self._writer: WriteApiAsync | None = None

    async def __aenter__(self) -> InfluxV2Sink:
        token = self._settings.token.get_secret_value() if self._settings.token else ""
        # The async client must be made inside the running loop (it owns an aiohttp session).
        self._client = InfluxDBClientAsync(
            url=self._url, token=token, org=self._org, timeout=int(self._settings.timeout_s * 1000)
        )
        self._writer = self._client.write_api()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.close()  # type: ignore[no-untyped-call]
            self._client = self._writer = None

    @property
    def client(self) -> InfluxDBClientAsync:
        """The open client (only inside `async with`)."""
        if self._client is None:
            raise RuntimeError("InfluxV2Sink used outside 'async with'")
        return self._client

    async def prepare(self) -> None:
        """Check that the server answers and, where it has buckets, that ours exists."""
        if not await self.ping():
            raise ConnectionError(f"{self._url}/ping does not answer")
        await self._check_bucket()

    async def write(self, lines: bytes) -> None:
        """One POST /api/v2/write (precision ns); 4xx refusing the points raises
        PointsRejectedError, anything else (5xx, timeout, refused connection) is retryable."""
        if self._writer is None:
            raise RuntimeError("InfluxV2Sink used outside 'async with'")
        try:
            # The client annotates precision as its WritePrecision class; its values are str.
            ns: WritePrecision = WritePrecision.NS  # type: ignore[assignment]
            await self._writer.write(self._bucket, self._org, lines, ns)
        except ApiException as exc:
            raise write_failure(exc.status or 0, _answer(exc)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionError(f"{self._url}/api/v2/write: {exc or type(exc).__name__}") from exc

    async def ping(self) -> bool:
        """GET /ping answers 204 when the server is up."""
        try:
            return await self.client.ping()
        except Exception:  # the client raises whatever aiohttp or the server said
            return False

    async def _check_bucket(self) -> None:
        service = BucketsService(self.client.api_client)  # type: ignore[no-untyped-call]
        try:
            found = await service.get_buckets_async(name=self._bucket, org=self._org)  # type: ignore[no-untyped-call]
        except ApiException as exc:
            answer = _answer(exc)
            if exc.status in (401, 403) or (exc.status == 404 and "org" in answer):
                raise ConnectionError(f"GET /api/v2/buckets: HTTP {exc.status}: {answer}") from None
            # VictoriaMetrics and InfluxDB 3 have no bucket API: writes will tell.
            log.info("%s has no bucket API (HTTP %s); bucket not checked", self._url, exc.status)
            return
        if not any(bucket.name == self._bucket for bucket in found.buckets or []):
            raise ConnectionError(
                f"bucket {self._bucket!r} does not exist in org {self._org!r}; create it "
                f"(docs/storage.md) or set influxdb.bucket"
            )


def write_failure(status: int, answer: str) -> Exception:
    """The exception for a refused /api/v2/write: PointsRejectedError when the points
    themselves were refused (a partial write, bad line protocol), else a retryable one."""
    if refuses_points(status):
        return PointsRejectedError(f"HTTP {status}: {answer}")
    return ConnectionError(f"/api/v2/write answered HTTP {status}: {answer}")


def _answer(exc: ApiException) -> str:
    """The server's message (InfluxDB answers JSON {"code", "message"}), at most 500 chars."""
    message = getattr(exc, "message", None) or exc.body or exc.reason or ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return str(message)[:500]
