"""InfluxDB v1 HTTP API adapter (/write line protocol, /query InfluxQL, /ping).

Works against InfluxDB 1.x and the v1 compatibility API of 2.x/3.x.
"""

from __future__ import annotations

import aiohttp

from gateway.config import InfluxSettings
from gateway.ports import PointsRejectedError


class _DatabaseNotFoundError(ConnectionError):
    pass


def refuses_points(status: int) -> bool:
    """A write answer that refuses (some of) the points themselves (bad line protocol, field
    type conflict, beyond retention, too large): sending them again cannot help. Auth (401,
    403), a missing database or bucket (404), timeouts (408) and throttling (429) are not about
    the points: the batch is kept and retried until someone or time fixes them."""
    return 400 <= status < 500 and status not in (401, 403, 404, 408, 429)


class InfluxV1Sink:
    """TelemetrySink over the v1 HTTP API with one pooled aiohttp session."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._base = str(settings.url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> InfluxV1Sink:
        auth = None
        if self._settings.username:
            password = self._settings.password.get_secret_value() if self._settings.password else ""
            auth = aiohttp.BasicAuth(self._settings.username, password)
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        self._session = aiohttp.ClientSession(auth=auth, timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (only inside `async with`)."""
        if self._session is None:
            raise RuntimeError("InfluxV1Sink used outside 'async with'")
        return self._session

    async def prepare(self) -> None:
        """CREATE DATABASE (idempotent in InfluxDB 1.x)."""
        query = f'CREATE DATABASE "{self._settings.database}"'
        async with self.session.post(f"{self._base}/query", data={"q": query}) as resp:
            if resp.status != 200:
                raise ConnectionError(
                    f"InfluxDB /query answered {resp.status}: {await resp.text()}"
                )

    async def write(self, lines: bytes) -> None:
        """POST /write; 4xx means refused points, anything else unexpected is retryable."""
        try:
            await self._write(lines)
        except _DatabaseNotFoundError:
            # Created while we run (or dropped by an operator): create it and try again once.
            await self.prepare()
            await self._write(lines)

    async def _write(self, lines: bytes) -> None:
        params = {"db": self._settings.database, "precision": "ns"}
        async with self.session.post(f"{self._base}/write", params=params, data=lines) as resp:
            if resp.status == 204:
                return
            body = (await resp.text())[:500]
            if resp.status == 404 and "database not found" in body:
                raise _DatabaseNotFoundError(body)
            if refuses_points(resp.status):
                raise PointsRejectedError(f"HTTP {resp.status}: {body}")
            raise ConnectionError(f"InfluxDB /write answered {resp.status}: {body}")

    async def ping(self) -> bool:
        """GET /ping answers 2xx when the server is up (1.x/2.x: 204, InfluxDB 3: 200)."""
        try:
            async with self.session.get(f"{self._base}/ping") as resp:
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False
