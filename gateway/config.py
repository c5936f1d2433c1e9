"""One settings tree for the gateway: a TOML file, overridden by CAMPUSGW_* environment variables.

Every field has a description (shown by `campusgw config --schema`); unknown keys are errors, so a
typo in a config file stops start-up instead of being silently ignored.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.config_devices import (
    AvailabilitySettings,
    CameraSource,
    CoverageSettings,
    VideoQualitySettings,
)

__all__ = [
    "AvailabilitySettings",
    "CameraSource",
    "ConfigError",
    "CoverageSettings",
    "Settings",
    "VideoQualitySettings",
    "load_settings",
]

ENV_PREFIX = "CAMPUSGW_"
Port = Annotated[int, Field(ge=1, le=65535)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    """The broker connection. One connection, fixed client id, persistent session."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: Port = Field(1883, description="Broker TCP port.")
    client_id: str = Field(
        "campusgw",
        min_length=1,
        max_length=20,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Fixed MQTT client id of the telemetry session; the event (alarm) session "
        "is `<client_id>-ev`. The broker keeps both queues while the gateway is down. Two "
        "gateways must never share it.",
    )
    topic_root: str = Field("campus", pattern=r"^[A-Za-z0-9_-]+$", description="First topic level.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds.")
    username: str | None = Field(None, description="Broker user name, if the broker requires one.")
    password: SecretStr | None = Field(None, description="Broker password.")
    max_payload_bytes: int = Field(
        65536, ge=64, description="Larger payloads are dead-lettered as oversized."
    )
    reconnect_max_s: float = Field(5.0, gt=0, description="Longest wait between reconnects.")


InfluxDuration = Annotated[str, Field(pattern=r"^([1-9][0-9]*[hdw]|INF)$")]


class InfluxSettings(_Section):
    """Telemetry storage: the InfluxDB v1 HTTP API (/write, /query) or the v2 API (/api/v2/write).

    docs/storage.md says which servers speak which (InfluxDB 1.x/2.x/3, VictoriaMetrics).
    """

    api: Literal["v1", "v2"] = Field(
        "v1",
        description="v1: /write with database (+ username/password); v2: /api/v2/write with "
        "token, org and bucket, through influxdb-client.",
    )
    url: AnyHttpUrl = Field(AnyHttpUrl("http://127.0.0.1:8086"), description="InfluxDB base URL.")
    database: str = Field(
        "campus", min_length=1, description="v1: database; created at start-up if missing."
    )
    username: str | None = Field(None, description="v1: InfluxDB user, if auth is enabled.")
    password: SecretStr | None = Field(None, description="v1: InfluxDB password.")
    token: SecretStr | None = Field(
        None, description="v2: API token (sent as `Authorization: Token ...`)."
    )
    org: str | None = Field(None, min_length=1, description="v2: organization name (or id).")
    bucket: str | None = Field(None, min_length=1, description="v2: bucket points go to.")
    retention: InfluxDuration = Field(
        "90d",
        description="v1, `campusgw storage init`: how long raw points are kept (the default "
        "retention policy `raw`), e.g. 90d, 12w, INF.",
    )
    downsample_retention: InfluxDuration = Field(
        "730d",
        description="v1, `campusgw storage init`: how long the 5-minute means are kept "
        "(retention policy `downsampled`).",
    )
    batch_size: int = Field(
        5000, ge=1, description="Most points in one write; batches grow to it only under load."
    )
    linger_s: float = Field(
        0.005, ge=0, le=1,
        description="Seconds the writer waits, once points are spooled, for more before writing "
        "(it also waits for the previous write to finish). 0: write at once.",
    )  # fmt: skip
    flush_interval_s: float = Field(
        0.2, gt=0,
        description="After a failed write, wait twice this (doubling to 5 s) before retrying. "
        "(Until linger_s, also the fixed interval of partial writes.)",
    )  # fmt: skip
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one write.")
    max_buffer: int = Field(
        200_000, ge=1,
        description="Points the gateway makes itself (availability, video scores) held in "
        "memory until the writer spools them; device telemetry goes to the spool directly.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _v2_needs_bucket_and_org(self) -> InfluxSettings:
        missing = [
            name for name in ("bucket", "org") if self.api == "v2" and not getattr(self, name)
        ]
        if missing:
            fields = " and ".join(f"influxdb.{name}" for name in missing)
            env = ", ".join(f"{ENV_PREFIX}INFLUXDB__{name.upper()}" for name in missing)
            raise ValueError(f"api = 'v2' needs {fields} (env {env})")
        return self


class SpoolSettings(_Section):
    """The durable telemetry spool between MQTT and InfluxDB (gateway/spool.py)."""

    path: Path | None = Field(
        None, description="Directory of the spool's segment files (default: `spool` next to "
        "store.path, so one gateway's state stays in one directory).",
    )  # fmt: skip
    max_bytes: int = Field(
        1 << 30, ge=1 << 20,
        description="Spool bound; past it the oldest telemetry is evicted (counted, logged). "
        "1 GiB holds about 7 million points: 10 minutes of 10,000 msg/s.",
    )  # fmt: skip
    segment_bytes: int = Field(16 << 20, ge=1 << 16, description="Size of one segment file.")
    fsync: bool = Field(
        True, description="fsync each batch before it is acknowledged (false: a power cut may "
        "lose the last batches acknowledged, a process crash still does not).",
    )  # fmt: skip
    backpressure_at: float = Field(
        0.9, gt=0, le=1,
        description="Share of max_bytes filled at which telemetry consumption slows down "
        "(batches held, unacknowledged, so the broker queues). Near the bound on purpose: the "
        "spool holds millions of points, the broker's queue far fewer (an outage must fill the "
        "spool, not the broker).",
    )  # fmt: skip
    max_hold_s: float = Field(1.0, gt=0, description="Longest a batch is held back, seconds.")


class StoreSettings(_Section):
    """The embedded alarm store (SQLite)."""

    path: Path = Field(Path("var/gateway.db"), description="SQLite file for alarms and letters.")
    registry_path: Path = Field(
        Path("var/registry.db"),
        description="SQLite file of the device registry; a file of its own so that a large "
        "import never holds the alarm store's write lock.",
    )


class ApiSettings(_Section):
    """The HTTP API and console."""

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: Port = Field(8000, description="Port the API listens on.")


class _EndpointBase(_Section):
    """What every linkage endpoint has."""

    timeout_s: float = Field(5.0, gt=0, description="One attempt fails after this many seconds.")
    backup: str | None = Field(
        None,
        description="Endpoint that also gets an alarm this one has not confirmed within "
        "linkage.deadline_s (e.g. a backup receiving centre).",
    )


class HttpEndpointSettings(_EndpointBase):
    """A linkage endpoint receiving alarms as JSON over HTTP(S) (a webhook)."""

    type: Literal["http"] = Field("http", description="Transport: http (default) or dc09.")
    url: AnyHttpUrl = Field(description="Alarms are POSTed here as JSON.")
    test_url: AnyHttpUrl | None = Field(
        None,
        description="The endpoint's test channel: end-to-end test alarms are POSTed here, never "
        "to url. Without it the endpoint gets no test alarms.",
    )
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key: each POST carries X-Campusgw-Timestamp and "
        "X-Campusgw-Signature = sha256=hex(HMAC(secret, timestamp + '.' + body)).",
    )


class Dc09EndpointSettings(_EndpointBase):
    """An alarm receiving centre speaking SIA DC-09 over TCP or UDP."""

    type: Literal["dc09"] = Field(description="Transport: dc09.")
    receivers: list[str] = Field(
        min_length=1,
        description="host:port of the main receiver, then backup receivers, tried in order.",
    )
    protocol: Literal["tcp", "udp"] = Field("tcp", description="DC-09 transport.")
    account: str = Field(
        pattern=r"^[0-9A-Fa-f]{3,16}$", description="Account number at the receiver (#acct)."
    )
    receiver_number: str | None = Field(
        None, pattern=r"^[0-9A-Fa-f]{1,6}$", description="Receiver number (R), if required."
    )
    line_prefix: str = Field(
        "L0", pattern=r"^L[0-9A-Fa-f]{1,6}$", description="Line prefix (L), e.g. L0."
    )
    key: SecretStr | None = Field(
        None,
        description="AES key as 32, 48 or 64 hex digits (AES-128/192/256); "
        "encrypted messages carry a timestamp.",
    )
    supervision_s: float = Field(
        0, ge=0, description="Send a NULL supervision message this often; 0 = never."
    )

    @field_validator("receivers")
    @classmethod
    def _host_ports(cls, receivers: list[str]) -> list[str]:
        for item in receivers:
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return receivers

    @field_validator("key")
    @classmethod
    def _aes_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            text = key.get_secret_value()
            if len(text) not in (32, 48, 64) or any(
                c not in "0123456789abcdefABCDEF" for c in text
            ):
                raise ValueError("must be 32, 48 or 64 hex digits (AES-128/192/256)")
        return key


def _endpoint_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "http"))
    return str(getattr(value, "type", "http"))


EndpointSettings = Annotated[
    Annotated[HttpEndpointSettings, Tag("http")] | Annotated[Dc09EndpointSettings, Tag("dc09")],
    Discriminator(_endpoint_type),
]


def _no_routes() -> dict[str, list[str]]:
    return {"police": [], "medical": [], "fire": [], "intrusion": []}


class LinkageSettings(_Section):
    """Where alarms go and how hard the gateway tries."""

    endpoints: dict[str, EndpointSettings] = Field(
        default_factory=dict, description="Endpoints by name, e.g. police, fire."
    )
    routes: dict[str, list[str]] = Field(
        default_factory=_no_routes,
        description="Alarm category -> endpoint names. Categories: police, medical, fire "
        "(button press) and intrusion (gate forced). An empty list keeps the alarm in the "
        "security room only.",
    )
    retry_initial_s: float = Field(0.2, gt=0, description="First retry delay, seconds.")
    retry_max_s: float = Field(30.0, gt=0, description="Longest retry delay, seconds.")
    deadline_s: float = Field(
        90.0,
        gt=0,
        description="An alarm an endpoint has not confirmed after this long raises a linkage "
        "trouble alarm and goes to the endpoint's backup too (NFPA 72: 90 s).",
    )
    down_after_failures: int = Field(
        5, ge=1, description="Consecutive failures after which an endpoint is declared down."
    )
    probe_interval_s: float = Field(
        5.0, gt=0, description="While an endpoint is down, one delivery probes it this often."
    )

    @field_validator("routes")
    @classmethod
    def _known_categories(cls, routes: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(routes) - {"police", "medical", "fire", "intrusion"}
        if unknown:
            raise ValueError(f"unknown alarm categories {sorted(unknown)}")
        return routes

    def test_channels(self) -> set[str]:
        """Endpoints that accept test alarms: DC-09 (test report codes) and HTTP with test_url."""
        return {
            name for name, e in self.endpoints.items()
            if isinstance(e, Dc09EndpointSettings) or e.test_url is not None
        }  # fmt: skip

    @model_validator(mode="after")
    def _backups_exist(self) -> LinkageSettings:
        for name, endpoint in self.endpoints.items():
            if endpoint.backup is not None and endpoint.backup not in self.endpoints:
                raise ValueError(
                    f"endpoints.{name}.backup names {endpoint.backup!r}, which is not in "
                    f"linkage.endpoints ({sorted(self.endpoints)})"
                )
            if endpoint.backup == name:
                raise ValueError(f"endpoints.{name}.backup names the endpoint itself")
        return self

    @model_validator(mode="after")
    def _routes_name_endpoints(self) -> LinkageSettings:
        for category, names in self.routes.items():
            for name in names:
                if name not in self.endpoints:
                    raise ValueError(
                        f"routes.{category} names endpoint {name!r}, which is not in "
                        f"linkage.endpoints ({sorted(self.endpoints) or 'none defined'})"
                    )
        return self


class AlarmSettings(_Section):
    """How device events become alarms."""

    duplicate_window_s: float = Field(
        300.0,
        gt=0,
        description="A press with the same device and seq whose device time is within this "
        "many seconds of an earlier alarm is the same press resent (QoS 1 redelivery, device "
        "retry); a restarted device reusing seq with a later time raises a new alarm.",
    )


class LimitSettings(_Section):
    """Limits that keep one device from starving the others (gateway/ratelimit.py)."""

    device_msgs_per_s: int = Field(
        100, ge=1,
        description="Non-event messages a device may send per second (100 is 100 times what a "
        "status device sends; a broken one floods thousands); the excess is dropped before "
        "decoding, counted and reported. Events (presses, forced gates) never are.",
    )  # fmt: skip


class DriverRoute(_Section):
    """Use a named driver for the devices whose `school/kind/device` matches a glob."""

    match: str = Field(description="fnmatch glob on school/kind/device, e.g. 's3/gate/*'.")
    driver: str = Field(description="Driver name, see `campusgw drivers`.")

    def matches(self, device_key: str) -> bool:
        """True when this route applies to the device."""
        return fnmatch.fnmatchcase(device_key, self.match)


class DriverSettings(_Section):
    """Which driver decodes which device; the family's canonical driver by default."""

    routes: list[DriverRoute] = Field(default_factory=list, description="First match wins.")


class Settings(BaseSettings):
    """The whole gateway configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    availability: AvailabilitySettings = Field(default_factory=AvailabilitySettings)
    coverage: CoverageSettings = Field(default_factory=CoverageSettings)
    video_quality: VideoQualitySettings = Field(default_factory=VideoQualitySettings)
    linkage: LinkageSettings = Field(default_factory=LinkageSettings)
    drivers: DriverSettings = Field(default_factory=DriverSettings)
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment overrides them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field."""


def load_settings(path: Path | None) -> Settings:
    """Read a TOML file (optional) plus the environment, or raise ConfigError naming the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from exc


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    """One line per bad field: `mqtt.port: Input should be ... (env CAMPUSGW_MQTT__PORT)`."""
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(top level)"
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"] if isinstance(p, str))
        lines.append(f"  {field}: {err['msg']} (file key {field!r} or env {env})")
    return "\n".join(lines)
