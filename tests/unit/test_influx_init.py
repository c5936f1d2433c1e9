"""`campusgw storage init`: the InfluxQL it runs, and which measurements and fields it covers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from gateway.config import InfluxSettings
from gateway.lineproto import measurement, quality_line
from gateway.models import EVENT_MODELS, STATUS_MODELS, Channel, DeviceMessage, Topic
from gateway.storage import influx_init
from gateway.storage.influx_init import Downsample, duration, go_duration, plan, rollups


def test_plan_creates_database_policies_and_one_cq_per_measurement() -> None:
    statements = plan("campus", "90d", "730d")
    assert statements[:3] == [
        'CREATE DATABASE "campus"',
        'CREATE RETENTION POLICY "raw" ON "campus" DURATION 90d REPLICATION 1 DEFAULT',
        'CREATE RETENTION POLICY "downsampled" ON "campus" DURATION 730d REPLICATION 1',
    ]
    assert len(statements) == 3 + len(rollups())
    assert (
        'CREATE CONTINUOUS QUERY "cq_button_status_5m" ON "campus" RESAMPLE EVERY 5m FOR 1h '
        'BEGIN SELECT count("seq") AS "messages", mean("battery") AS "battery", '
        'mean("rssi") AS "rssi" INTO "campus"."downsampled"."button_status" '
        'FROM "campus"."raw"."button_status" GROUP BY time(5m), * fill(none) END'
    ) in statements


def test_names_are_quoted_as_influxql_identifiers() -> None:
    rollup = Downsample("m", "seq", ())
    select = influx_init.downsample_select('we"ird db', rollup, "time > now() - 1h")
    assert select == (
        'SELECT count("seq") AS "messages" INTO "we\\"ird db"."downsampled"."m" '
        'FROM "we\\"ird db"."raw"."m" WHERE time > now() - 1h GROUP BY time(5m), * fill(none)'
    )


def _device_measurements() -> set[str]:
    when = datetime(2026, 11, 23, tzinfo=UTC)
    return {
        measurement(DeviceMessage(Topic("s", kind, "d", channel), model.model_construct(), when))
        for channel, models in ((Channel.EVENT, EVENT_MODELS), (Channel.STATUS, STATUS_MODELS))
        for kind, model in models.items()
    }


def test_every_measurement_the_gateway_writes_is_downsampled() -> None:
    quality = quality_line("s", "c", {"brightness": 1.0}, [], datetime.now(UTC))
    written = _device_measurements() | {"availability", quality.split(b",")[0].decode()}
    assert {rollup.measurement for rollup in rollups()} == written


def test_means_are_the_numeric_fields_but_seq() -> None:
    means = {rollup.measurement: rollup.means for rollup in rollups()}
    assert means["button_status"] == ("battery", "rssi")
    assert means["gate_status"] == ("battery", "rssi")
    assert means["camera_status"] == (
        "fps", "bitrate_kbps", "storage_free_gb", "retention_days", "rssi",
    )  # fmt: skip
    assert means["button_event"] == means["availability"] == ()


def test_quality_scores_match_the_video_scores() -> None:
    from drivers.camera.quality_scores import Scores  # OpenCV: only this test loads it

    assert tuple(f.name for f in dataclasses.fields(Scores)) == influx_init.QUALITY_SCORES


@pytest.mark.parametrize(
    ("text", "shown"), [("90d", "2160h0m0s"), ("12w", "2016h0m0s"), ("1h", "1h0m0s"), ("INF", "0s")]
)
def test_durations_as_influxdb_shows_them(text: str, shown: str) -> None:
    assert duration(text) == text
    assert go_duration(text) == shown


@pytest.mark.parametrize("text", ["0d", "90", "d", "90 days", "1y", "-1d", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        duration(text)


def test_v2_prints_what_to_set_up_and_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9: any attempt to reach a server would fail the command.
    influx = InfluxSettings(api="v2", url="http://127.0.0.1:9", org="edu", bucket="campus")
    lines: list[str] = []
    assert influx_init.run(influx, "30d", "365d", dry_run=False, echo=lines.append) == 0
    text = "\n".join(lines)
    assert "nothing was changed" in text
    assert "--name campus --org edu --retention 30d" in text
    assert "-retentionPeriod=30d" in text
    assert capsys.readouterr().err == ""


def test_dry_run_prints_the_plan_only() -> None:
    influx = InfluxSettings(url="http://127.0.0.1:9", database="d")
    lines: list[str] = []
    assert influx_init.run(influx, "7d", "70d", dry_run=True, echo=lines.append) == 0
    assert lines == [";\n".join(plan("d", "7d", "70d")) + ";"]
