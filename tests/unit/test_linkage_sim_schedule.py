"""Fault schedules of the linkage simulator: parsing (CLI and /_control) and modes over time."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simulators.linkage import Endpoint, build_parser, endpoints_from_args, make_app
from simulators.linkage_schedule import Window


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="linkage-sim")
    build_parser(parser)
    return parser.parse_args(argv)


def test_a_schedule_spec_becomes_sorted_windows() -> None:
    args = parse("--schedule", "police:20-40=timeout,0-20=error", "--schedule", "fire:0.5-1=refuse")
    assert args.schedule == [
        ("police", (Window(0, 20, "error"), Window(20, 40, "timeout"))),
        ("fire", (Window(0.5, 1, "refuse"),)),
    ]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("police", "expected NAME:START-END=MODE"),
        (":0-20=error", "expected NAME:START-END=MODE"),
        ("police:", "is not START-END=MODE"),
        ("police:0-20", "is not START-END=MODE"),
        ("police:0-20=error;20-40=ok", "is not START-END=MODE"),
        ("police:-5-20=error", "is not START-END=MODE"),
        ("police:0-20=sometimes", "mode 'sometimes' is not one of"),
        ("police:20-10=error", "window 20-10=error ends before it starts"),
        ("police:5-5=error", "ends before it starts"),
        ("police:0-20=error,10-30=ok", "windows 0-20=error and 10-30=ok overlap"),
    ],
)
def test_a_bad_schedule_is_an_argparse_error_naming_the_spec(
    spec: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--schedule", spec)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --schedule" in err and repr(spec) in err and why in err


@pytest.mark.parametrize("text", ["police", "=abc", "police="])
def test_a_bad_secret_is_an_argparse_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--secret", text)
    assert repr(text) in capsys.readouterr().err


def test_options_become_endpoints(tmp_path: Path) -> None:
    args = parse(
        "--endpoint", "police:8110", "--endpoint", "fire:8119", "--mode", "slow",
        "--secret", "fire=abc", "--schedule", "police:0-1=error", "--record", str(tmp_path),
    )  # fmt: skip
    (police, police_port), (fire, fire_port) = endpoints_from_args(args)
    assert (police.name, police_port, police.mode, police.secret) == ("police", 8110, "slow", None)
    assert police.schedule == (Window(0, 1, "error"),) and police.mode_now() == "error"
    assert (fire.name, fire_port, fire.secret, fire.schedule) == ("fire", 8119, "abc", ())
    assert fire.record_dir == tmp_path


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--schedule", "ambulance:0-1=error"], "--schedule names 'ambulance', not an endpoint"),
        (["--secret", "police=a", "--secret", "police=b"], "--secret given twice for 'police'"),
        (["--endpoint", "police:1", "--endpoint", "police:2"], "endpoint names must differ"),
    ],
)
def test_options_that_contradict_each_other(argv: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        endpoints_from_args(parse(*argv))


def test_the_mode_follows_the_schedule_on_the_endpoint_clock() -> None:
    now = [100.0]
    ep = Endpoint("police", mode="slow", clock=lambda: now[0])
    ep.control({"schedule": [{"start": 10, "end": 20, "mode": "error"}]})
    assert (ep.mode_now(), ep.next_change_in()) == ("slow", 10)
    now[0] = 110.0
    assert (ep.mode_now(), ep.next_change_in()) == ("error", 10)
    now[0] = 125.0
    ep.control({"schedule": [{"start": 0, "end": 5, "mode": "refuse"}], "schedule_origin": "now"})
    assert (ep.mode_now(), ep.next_change_in()) == ("refuse", 5)
    assert ep.settings()["schedule_origin_s"] == 25
    now[0] = 130.0
    assert (ep.mode_now(), ep.next_change_in()) == ("slow", None)


@pytest.mark.parametrize(
    "schedule",
    [
        {"start": 0, "end": 1, "mode": "error"},
        [{"start": 0, "end": 1}],
        [{"start": "0", "end": 1, "mode": "error"}],
        [{"start": True, "end": 2, "mode": "error"}],
        [{"start": 0, "end": 1, "mode": "error", "extra": 1}],
        [{"start": 0, "end": 2, "mode": "error"}, {"start": 1, "end": 3, "mode": "ok"}],
    ],
)
def test_control_rejects_a_bad_schedule_and_keeps_the_old(schedule: Any) -> None:
    ep = Endpoint("police", schedule=(Window(0, 9, "timeout"),))
    with pytest.raises(ValueError, match=r"schedule|overlap"):
        ep.control({"schedule": schedule, "mode": "error"})
    assert (ep.schedule, ep.mode) == ((Window(0, 9, "timeout"),), "ok")


def test_control_clears_a_schedule_with_null() -> None:
    ep = Endpoint("police", schedule=(Window(0, 9, "timeout"),))
    assert ep.control({"schedule": None})["schedule"] == []


async def answer(client: TestClient[Any, Any], n: int) -> str:
    """What an alarm gets now: its status, or "dropped"."""
    try:
        resp = await client.post("/alarms", json={"n": n}, headers={"Idempotency-Key": f"k{n}"})
    except aiohttp.ClientConnectionError:
        return "dropped"
    return str(resp.status)


async def test_the_endpoint_switches_modes_as_scheduled() -> None:
    async with TestClient(TestServer(make_app(Endpoint("police")))) as client:
        windows = [
            {"start": 0, "end": 0.3, "mode": "error"},
            {"start": 0.3, "end": 0.6, "mode": "drop"},
        ]
        await client.post("/_control", json={"schedule": windows, "schedule_origin": "now"})
        seen: list[str] = []
        deadline = time.monotonic() + 5
        while seen[-1:] != ["200"] and time.monotonic() < deadline:
            got = await answer(client, len(seen))
            if seen[-1:] != [got]:
                seen.append(got)
            await asyncio.sleep(0.02)
        assert seen == ["503", "dropped", "200"]
        assert (await (await client.get("/healthz")).json())["mode"] == "ok"
