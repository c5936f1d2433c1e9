"""`campusgw storage init`: retention policies and 5-minute downsampling on the InfluxDB v1 API.

Raw points go to the default retention policy `raw` (influxdb.retention, 90 days by default);
one continuous query per measurement the gateway writes keeps 5-minute means of its numeric
fields and a count of its points in `downsampled` (influxdb.downsample_retention, 730 days).
Every step is idempotent: what exists as wanted is left alone, what differs is altered or
replaced. docs/storage.md explains the choices and what a v2 server needs instead.
"""

from __future__ import annotations

import base64
import json
import sys
import types
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import InfluxSettings
from gateway.models import EVENT_MODELS, STATUS_MODELS

RAW_RP = "raw"
DOWNSAMPLED_RP = "downsampled"
INTERVAL = "5m"
# Recompute the last hour's windows at every run: points that arrive late (a device's backlog,
# the writer draining after an outage) still reach the means if they are less than 1 h late.
RESAMPLE_FOR = "1h"
# camera_quality's float fields: drivers/camera/quality_scores.Scores (a unit test keeps them
# equal; that module needs OpenCV, which this command should not load).
QUALITY_SCORES = (
    "brightness", "contrast", "sharpness", "textured", "noise", "colour_cast", "occlusion",
    "entropy", "dark", "cast_a", "cast_b", "motion", "shift", "match",
)  # fmt: skip


class StorageInitError(Exception):
    """InfluxDB refused a statement or could not be reached; the message says which."""


@dataclass(frozen=True, slots=True)
class Downsample:
    """One measurement's 5-minute rollup: count(counted) AS messages, mean(f) AS f."""

    measurement: str
    counted: str
    means: tuple[str, ...]


def rollups() -> list[Downsample]:
    """Every measurement the gateway writes (docs/devices.md "InfluxDB", gateway/lineproto.py)."""
    out = [
        Downsample(f"{kind.value}_{channel}", "seq", _numeric_fields(model))
        for channel, models in (("event", EVENT_MODELS), ("status", STATUS_MODELS))
        for kind, model in models.items()
    ]
    out.append(Downsample("availability", "state", ()))
    out.append(Downsample("camera_quality", "active", (*QUALITY_SCORES, "active")))
    return out


def _numeric_fields(model: type[Any]) -> tuple[str, ...]:
    # int and float fields except seq (a counter, meaningless as a mean); bool is not numeric.
    return tuple(
        name
        for name, field in model.model_fields.items()
        if name not in ("seq", "v") and _is_number(field.annotation)
    )


def _is_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_number(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_number(args[0])
    return False


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def downsample_select(db: str, rollup: Downsample, where: str = "") -> str:
    """The SELECT ... INTO of a rollup; with `where` (a time range) it backfills by hand."""
    columns = [f"count({_q(rollup.counted)}) AS {_q('messages')}"]
    columns += [f"mean({_q(f)}) AS {_q(f)}" for f in rollup.means]
    target = f"{_q(db)}.{_q(DOWNSAMPLED_RP)}.{_q(rollup.measurement)}"
    source = f"{_q(db)}.{_q(RAW_RP)}.{_q(rollup.measurement)}"
    condition = f" WHERE {where}" if where else ""
    return (
        f"SELECT {', '.join(columns)} INTO {target} FROM {source}{condition} "
        f"GROUP BY time({INTERVAL}), * fill(none)"
    )


def cq_name(rollup: Downsample) -> str:
    """cq_<measurement>_5m."""
    return f"cq_{rollup.measurement}_{INTERVAL}"


def create_cq(db: str, rollup: Downsample) -> str:
    """CREATE CONTINUOUS QUERY for one rollup."""
    return (
        f"CREATE CONTINUOUS QUERY {_q(cq_name(rollup))} ON {_q(db)} "
        f"RESAMPLE EVERY {INTERVAL} FOR {RESAMPLE_FOR} "
        f"BEGIN {downsample_select(db, rollup)} END"
    )


def create_rp(db: str, name: str, duration: str, default: bool) -> str:
    """CREATE RETENTION POLICY (a no-op when it exists with the same settings)."""
    suffix = " DEFAULT" if default else ""
    return (
        f"CREATE RETENTION POLICY {_q(name)} ON {_q(db)} DURATION {duration} REPLICATION 1{suffix}"
    )


def alter_rp(db: str, name: str, duration: str, default: bool) -> str:
    """ALTER RETENTION POLICY to the wanted duration (and DEFAULT)."""
    suffix = " DEFAULT" if default else ""
    return f"ALTER RETENTION POLICY {_q(name)} ON {_q(db)} DURATION {duration}{suffix}"


def plan(db: str, retention: str, downsample_retention: str) -> list[str]:
    """Every statement for a database that has none of it yet (what --dry-run prints)."""
    return [
        f"CREATE DATABASE {_q(db)}",
        create_rp(db, RAW_RP, retention, default=True),
        create_rp(db, DOWNSAMPLED_RP, downsample_retention, default=False),
        *(create_cq(db, rollup) for rollup in rollups()),
    ]


def go_duration(duration: str) -> str:
    """An InfluxQL duration (90d, 12w, 24h, INF) as SHOW RETENTION POLICIES prints it."""
    if duration == "INF":
        return "0s"
    hours = int(duration[:-1]) * {"h": 1, "d": 24, "w": 168}[duration[-1]]
    return f"{hours}h0m0s"


def duration(text: str) -> str:
    """An InfluxQL retention duration: a whole number of h, d or w, or INF (argparse type)."""
    if text == "INF" or (text[:-1].isdigit() and int(text[:-1]) > 0 and text[-1:] in "hdw"):
        return text
    raise ValueError(text)


Query = Callable[[str], dict[str, Any]]


def apply(query: Query, db: str, retention: str, downsample_retention: str) -> list[str]:
    """Bring the database to the plan; one line per object saying what was done."""
    databases = {row[0] for row in _rows(query("SHOW DATABASES"))}
    query(f"CREATE DATABASE {_q(db)}")
    report = [f"database {db}: {'exists' if db in databases else 'created'}"]
    policies = {row[0]: row for row in _rows(query(f"SHOW RETENTION POLICIES ON {_q(db)}"))}
    old_default = next((name for name, row in policies.items() if row[4]), None)
    for name, length, default in (
        (RAW_RP, retention, True),
        (DOWNSAMPLED_RP, downsample_retention, False),
    ):
        report.append(_ensure_rp(query, db, policies.get(name), name, length, default))
    if old_default not in (None, RAW_RP):
        report.append(
            f"note: the default retention policy was {old_default!r}; points written before "
            f"stay there (query {db}.{old_default}.<measurement>), new points go to {RAW_RP!r}"
        )
    existing = {row[0] for row in _rows(query("SHOW CONTINUOUS QUERIES"), series_name=db)}
    report += [_ensure_cq(query, db, rollup, existing) for rollup in rollups()]
    return report


def _ensure_rp(
    query: Query, db: str, row: list[Any] | None, name: str, length: str, default: bool
) -> str:
    what = f"retention policy {name} ({length}{', default' if default else ''})"
    if row is None:
        query(create_rp(db, name, length, default))
        return f"{what}: created"
    if row[1] == go_duration(length) and (row[4] or not default):
        return f"{what}: unchanged"
    query(alter_rp(db, name, length, default))
    return f"{what}: altered (was {row[1]}{', default' if row[4] else ''})"


def _ensure_cq(query: Query, db: str, rollup: Downsample, existing: set[str]) -> str:
    name = cq_name(rollup)
    try:
        query(create_cq(db, rollup))  # a no-op when the same query exists
    except StorageInitError as exc:
        if "already exists" not in str(exc):
            raise
        query(f"DROP CONTINUOUS QUERY {_q(name)} ON {_q(db)}")
        query(create_cq(db, rollup))
        return f"continuous query {name}: replaced (it had another definition)"
    return f"continuous query {name}: {'unchanged' if name in existing else 'created'}"


def _rows(answer: dict[str, Any], series_name: str | None = None) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for series in answer.get("series", []):
        if series_name is None or series.get("name") == series_name:
            rows += series.get("values", [])
    return rows


def http_query(settings: InfluxSettings) -> Query:
    """Run one InfluxQL statement through POST /query; the statement's result, or
    StorageInitError with InfluxDB's error."""
    base = str(settings.url).rstrip("/")
    headers = {}
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        token = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"

    def query(statement: str) -> dict[str, Any]:
        body = urllib.parse.urlencode({"q": statement}).encode()
        request = urllib.request.Request(f"{base}/query", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_s) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise StorageInitError(f"{statement}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        except OSError as exc:
            raise StorageInitError(f"cannot reach InfluxDB at {base}: {exc}") from None
        result: dict[str, Any] = (answer.get("results") or [{}])[0]
        if "error" in result or "error" in answer:
            raise StorageInitError(f"{statement}: {result.get('error') or answer['error']}")
        return result

    return query


def run(
    influx: InfluxSettings, retention: str, downsample_retention: str, dry_run: bool,
    echo: Callable[[str], None],
) -> int:  # fmt: skip
    """`campusgw storage init`: apply (or print) the plan on v1, advise on v2; exit code."""
    if influx.api == "v2":
        echo(v2_advice(influx, retention, downsample_retention))
        return 0
    if dry_run:
        echo(";\n".join(plan(influx.database, retention, downsample_retention)) + ";")
        return 0
    try:
        report = apply(http_query(influx), influx.database, retention, downsample_retention)
    except StorageInitError as exc:
        print(f"campusgw storage init: {exc}", file=sys.stderr)
        return 1
    for line in report:
        echo(line)
    return 0


def v2_advice(influx: InfluxSettings, retention: str, downsample_retention: str) -> str:
    """What to set up by hand on a v2 server, with this configuration's names."""
    bucket, org = influx.bucket, influx.org
    fields = sorted({f for rollup in rollups() for f in rollup.means})
    keep = "r._field =~ /^(" + "|".join(fields) + ")$/"
    return f"""\
influxdb.api = "v2": nothing was changed. The v2 API has no retention policies or continuous
queries: retention belongs to the bucket (or database) and downsampling to the server's own
scheduler, both need an operator's token and differ per server. Set up by hand
(docs/storage.md; the commands below are examples, not run by campusgw):

InfluxDB 2.x   raw points: influx bucket create --name {bucket} --org {org} --retention {retention}
               (existing bucket: influx bucket update --id <id> --retention {retention})
               5-minute means: influx bucket create --name {bucket}_5m --org {org} \\
                 --retention {downsample_retention}
               and a task (influx task create --org {org} --file campus_5m.flux):
                 option task = {{name: "campus_5m", every: {INTERVAL}}}
                 from(bucket: "{bucket}") |> range(start: -{RESAMPLE_FOR})
                   |> filter(fn: (r) => {keep})
                   |> aggregateWindow(every: {INTERVAL}, fn: mean, createEmpty: false)
                   |> to(bucket: "{bucket}_5m", org: "{org}")
InfluxDB 3     retention is set per database by the server's own tools (check your version);
               downsampling is a processing-engine plugin: nothing campusgw can create.
VictoriaMetrics  one retention for all data: the server flag -retentionPeriod={retention};
               bucket and org are ignored; downsampling is an Enterprise feature."""
