"""The DC-09 receiver simulator without sockets: what it answers in each mode and records."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.linkage import dc09_frame as gw
from gateway.models import Alarm, Kind
from simulators import dc09 as sim

KEY = bytes(range(16))
ROUTE = gw.Route("1234", "0", "0")


def alarm_frame(seq: int = 1, key: bytes | None = None, at: datetime | None = None) -> bytes:
    now = at or datetime.now(UTC)
    alarm = Alarm(
        id="a-1", school="s1", kind=Kind.GATE, device="g-2", event="forced",
        category="intrusion", seq=1, device_ts=now, received_at=now,
    )  # fmt: skip
    return gw.build_frame("SIA-DCS", seq, ROUTE, gw.alarm_data(alarm, "1234"), now, key)


def answer_of(raw: bytes | None, seq: int = 1, key: bytes | None = None) -> gw.Reply | None:
    assert raw is not None
    return gw.match_reply(raw, seq, key)[0]


@given(st.binary(max_size=300))
def test_crc_duplicate_matches_the_gateway(data: bytes) -> None:
    assert sim.crc16(data) == gw.crc16(data)


def test_ok_acknowledges_and_records_the_decoded_event() -> None:
    receiver = sim.Dc09Receiver("1234")
    assert answer_of(receiver.handle(alarm_frame(seq=5)), seq=5) == gw.Reply("ACK")
    (msg,) = receiver.received
    assert (msg.msg_id, msg.seq, msg.account) == ("SIA-DCS", 5, "1234")
    assert (msg.code, msg.area) == ("BA", "2") and msg.zone and len(msg.zone) == 4
    assert msg.xdata["S"] == "s1" and msg.xdata["L"] == "gate/g-2" and msg.answer == "ACK"
    assert datetime.fromisoformat(msg.at) - datetime.now(UTC) < timedelta(seconds=5)


def test_encrypted_account_answers_with_an_encrypted_ack() -> None:
    receiver = sim.Dc09Receiver("1234", KEY)
    raw = receiver.handle(alarm_frame(key=KEY))
    assert raw is not None and raw[9:11] == b'"*'
    reply = answer_of(raw, key=KEY)
    assert reply is not None and reply.kind == "ACK" and reply.timestamp is not None
    assert receiver.received[0].code == "BA" and receiver.received[0].encrypted


def test_null_message() -> None:
    receiver = sim.Dc09Receiver("1234", KEY)
    frame = gw.build_frame("NULL", 9, ROUTE, "]", datetime.now(UTC), KEY)
    assert answer_of(receiver.handle(frame), seq=9, key=KEY) is not None
    assert receiver.received[0].msg_id == "NULL" and receiver.received[0].data == "]"


@pytest.mark.parametrize(
    ("receiver", "frame"),
    [
        (sim.Dc09Receiver("9999"), alarm_frame()),  # unknown account
        (sim.Dc09Receiver("1234", KEY), alarm_frame()),  # plain text to an encrypted account
        (sim.Dc09Receiver("1234", KEY), alarm_frame(key=bytes(16))),  # wrong key
        (sim.Dc09Receiver("1234"), alarm_frame(at=datetime.now(UTC) - timedelta(minutes=2))),
        (sim.Dc09Receiver("1234", mode="nak"), alarm_frame()),
        (sim.Dc09Receiver("1234", mode="wrong_account"), alarm_frame()),
    ],
)
def test_nak_carries_the_receiver_clock(receiver: sim.Dc09Receiver, frame: bytes) -> None:
    reply = answer_of(receiver.handle(frame))
    assert reply is not None and reply.kind == "NAK" and reply.timestamp is not None
    assert abs((reply.timestamp - datetime.now(UTC)).total_seconds()) < 2
    assert receiver.received[0].answer == "NAK"


def test_receiver_clock_offset_shows_in_the_nak() -> None:
    receiver = sim.Dc09Receiver("1234", clock_offset_s=600)
    reply = answer_of(receiver.handle(alarm_frame()))
    assert reply is not None and reply.timestamp is not None
    assert 598 < (reply.timestamp - datetime.now(UTC)).total_seconds() < 602


def test_duh_and_silent_modes() -> None:
    receiver = sim.Dc09Receiver("1234", mode="duh")
    assert answer_of(receiver.handle(alarm_frame(seq=3)), seq=3) == gw.Reply("DUH")
    receiver.set_mode("silent")
    assert receiver.handle(alarm_frame()) is None
    assert [m.answer for m in receiver.received] == ["DUH", "none"]
    with pytest.raises(ValueError, match="mode must be one of"):
        receiver.set_mode("loud")


def test_corrupt_frames_are_ignored_without_answer() -> None:
    receiver = sim.Dc09Receiver("1234")
    raw = alarm_frame()
    assert receiver.handle(raw[:-3] + b"X]\r") is None
    assert receiver.handle(b"\nZZZZ0000junk\r") is None
    assert receiver.received == [] and len(receiver.ignored) == 2


def test_record_appends_json_lines(tmp_path: Path) -> None:
    receiver = sim.Dc09Receiver("1234", record=tmp_path / "arc.jsonl")
    receiver.handle(alarm_frame(seq=1))
    receiver.handle(alarm_frame(seq=2))
    lines = (tmp_path / "arc.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"code": "BA"' in lines[1]


def test_command_line() -> None:
    parser = argparse.ArgumentParser()
    sim.build_parser(parser)
    args = parser.parse_args(["--port", "0", "--mode", "duh", "--key", "00" * 16])
    assert (args.port, args.mode, args.account, args.clock_offset) == (0, "duh", "1234", 0.0)
    assert sim.run(parser.parse_args(["--key", "abc"])) == 2


def test_schedule_switches_modes_by_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(sim.time, "monotonic", lambda: clock[0])
    windows = sim.parse_spec("10-20=silent,20-30=wrong_account", sim.MODES)
    receiver = sim.Dc09Receiver("1234", schedule=windows)
    answers = []
    for t in (5, 15, 25, 35):
        clock[0] = 1000.0 + t
        answers.append(receiver.handle(alarm_frame()))
    assert answer_of(answers[0]) == gw.Reply("ACK")
    assert answers[1] is None
    nak = answer_of(answers[2])
    assert nak is not None and nak.kind == "NAK"
    assert answer_of(answers[3]) == gw.Reply("ACK")


def test_schedule_option_names_the_bad_mode() -> None:
    parser = argparse.ArgumentParser()
    sim.build_parser(parser)
    args = parser.parse_args(["--schedule", "0-5=silent"])
    assert [w.mode for w in args.schedule] == ["silent"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "0-5=error"])  # an HTTP mode, not a DC-09 one
