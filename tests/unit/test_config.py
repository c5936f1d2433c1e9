"""Config: file + environment, and errors that name the field."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings

EXAMPLE = Path(__file__).parents[2] / "campusgw.example.toml"


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.mqtt.port == 1883
    assert str(settings.influxdb.url) == "http://127.0.0.1:8086/"
    assert settings.influxdb.database == "campus"
    assert settings.api.port == 8000
    assert settings.linkage.routes["fire"] == ["fire"]


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPUSGW_MQTT__PORT", "1999")
    assert load_settings(EXAMPLE).mqtt.port == 1999


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[mqtt]\nport = 70000\n", "mqtt.port"),
        ("[mqtt]\nprot = 1\n", "mqtt.prot"),
        ("[influxdb]\nurl = 'not a url'\n", "influxdb.url"),
        ("[linkage.routes]\npolice = ['nowhere']\n", "routes.police"),
        ("[linkage.routes]\nburglar = []\n", "linkage.routes"),
        ("log_level = 'LOUD'\n", "log_level"),
        ("[influxdb]\napi = 'v3'\n", "influxdb.api"),
        ("[influxdb]\nretention = '90 days'\n", "influxdb.retention"),
        ("[influxdb]\nlinger_s = -0.001\n", "influxdb.linger_s"),
        ("[influxdb]\nflush_interval_s = 0\n", "influxdb.flush_interval_s"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert field in str(info.value)


@pytest.mark.parametrize("missing", ["bucket", "org"])
def test_v2_without_bucket_or_org_stops_start_up_naming_it(tmp_path: Path, missing: str) -> None:
    present = {"bucket", "org"} - {missing}
    path = tmp_path / "v2.toml"
    path.write_text("[influxdb]\napi = 'v2'\n" + "".join(f"{k} = 'x'\n" for k in present))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"influxdb.{missing}" in str(info.value)
    assert f"CAMPUSGW_INFLUXDB__{missing.upper()}" in str(info.value)
    assert all(f"influxdb.{name}" not in str(info.value) for name in present)


def test_v2_settings_load_with_the_token_hidden(tmp_path: Path) -> None:
    path = tmp_path / "v2.toml"
    path.write_text("[influxdb]\napi = 'v2'\ntoken = 't0k'\norg = 'edu'\nbucket = 'campus'\n")
    influx = load_settings(path).influxdb
    assert (influx.api, influx.org, influx.bucket) == ("v2", "edu", "campus")
    assert influx.token is not None and influx.token.get_secret_value() == "t0k"
    assert "t0k" not in repr(influx)
    assert load_settings(None).influxdb.api == "v1"


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPUSGW_API__PORT", "eighty")
    with pytest.raises(ConfigError, match="CAMPUSGW_API__PORT"):
        load_settings(None)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_threshold_check_names_match_the_checks() -> None:
    from drivers.camera.quality_rules import CHECKS
    from gateway.config_devices import THRESHOLD_CHECKS

    assert CHECKS[1:] == THRESHOLD_CHECKS  # all but signal_loss (signal_loss_s)


def test_unknown_threshold_names_stop_start_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[video_quality.thresholds]\nbluriness = 3.0\n")
    with pytest.raises(ConfigError, match=r"video_quality\.thresholds"):
        load_settings(path)
