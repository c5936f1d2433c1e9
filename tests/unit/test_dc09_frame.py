"""DC-09 framing: CRC, length, timestamps, AES, reply matching and the alarm -> SIA mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from gateway.linkage.dc09_frame import (
    MAX_BODY,
    FrameError,
    Reply,
    Route,
    alarm_data,
    build_frame,
    crc16,
    decrypt,
    encrypt,
    format_timestamp,
    match_reply,
    next_seq,
    parse_frame,
    sia_code,
    take_frame,
    wrap,
    xdata_text,
    zone_number,
)
from gateway.models import Alarm, Kind

AT = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
ROUTE = Route("1234")
KEY16 = b"0123456789ABCDEF"
# pysiaalarm's test suite: an encrypted NULL message, key = the ASCII bytes of "AAAAAAAAAAAAAAAA"
PYSIA_NULL = (
    b'\n76D80055"*NULL"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD'
    b"64D9\r"
)


def alarm(**change: object) -> Alarm:
    fields: dict[str, object] = {
        "id": "a-1", "school": "s1", "kind": Kind.BUTTON, "device": "b-17", "event": "press",
        "category": "police", "seq": 3, "device_ts": AT, "received_at": AT,
    }  # fmt: skip
    fields.update(change)
    return Alarm.model_validate(fields)


def ones(n: int) -> str:
    return "x" * n


def raw_decrypt(key: bytes, hex_text: str) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    return dec.update(bytes.fromhex(hex_text)) + dec.finalize()


# --- CRC, length, timestamp, sequence ----------------------------------------------------------


def test_crc16_is_crc16_arc() -> None:
    assert crc16(b"123456789") == 0xBB3D  # the catalogue check value of CRC-16/ARC
    assert crc16(b"") == 0


def test_crc_and_length_of_a_published_frame() -> None:
    body = PYSIA_NULL[9:-1]
    assert f"{crc16(body):04X}{len(body):04X}".encode() == PYSIA_NULL[1:9]


@given(st.text(max_size=200))
def test_crc16_matches_pysiaalarm(text: str) -> None:
    event = pytest.importorskip("pysiaalarm.event")
    assert f"{crc16(text.encode()):04X}" == event.BaseEvent._crc_calc(text)


def test_plain_frame_layout() -> None:
    raw = build_frame("SIA-DCS", 1, ROUTE, "#1234|Nri1/PA0042]", AT)
    body = b'"SIA-DCS"0001L0#1234[#1234|Nri1/PA0042]_08:00:00,11-23-2026'
    assert raw == b"\nA204003B" + body + b"\r"  # CRC A204 (cross-checked with pysiaalarm above)
    assert len(body) == 0x3B


def test_receiver_number_and_line_prefix_in_the_header() -> None:
    raw = build_frame("NULL", 9999, Route("ABC", "7F", "12"), "]", AT)
    assert raw[9:] == b'"NULL"9999R12L7F#ABC[]_08:00:00,11-23-2026\r'


def test_timestamp_is_utc() -> None:
    assert format_timestamp(AT) == "_08:00:00,11-23-2026"
    beijing = AT.astimezone(timezone(timedelta(hours=8)))
    assert format_timestamp(beijing) == "_08:00:00,11-23-2026"


def test_sequence_wraps_from_9999_to_0001() -> None:
    assert [next_seq(s) for s in (0, 1, 9998, 9999)] == [1, 2, 9999, 1]
    for bad in (0, 10000):
        with pytest.raises(ValueError, match=r"1\.\.9999"):
            build_frame("NULL", bad, ROUTE, "]", AT)


def test_too_long_a_message_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        wrap('"SIA-DCS"' + "x" * MAX_BODY)


# --- encryption --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY16, bytes(range(24)), bytes(range(32))])
def test_encrypted_frame_pads_before_the_bar(key: bytes) -> None:
    raw = build_frame("SIA-DCS", 2, ROUTE, "#1234|Nri1/PA0042]", AT, key, pad=ones)
    body = raw[9:-1].decode()
    assert body.startswith('"*SIA-DCS"0002L0#1234[')
    plain = raw_decrypt(key, body.split("[", 1)[1])
    text = b"|#1234|Nri1/PA0042]_08:00:00,11-23-2026"
    assert plain == b"x" * (len(plain) - len(text)) + text
    assert len(plain) % 16 == 0 and 1 <= len(plain) - len(text) <= 16


def test_encrypted_null_has_no_bar() -> None:
    raw = build_frame("NULL", 5, ROUTE, "]", AT, KEY16, pad=ones)
    plain = raw_decrypt(KEY16, raw[9:-1].decode().split("[", 1)[1])
    assert plain.endswith(b"x]_08:00:00,11-23-2026")


def test_decrypts_pysiaalarms_encrypted_null() -> None:
    frame = parse_frame(PYSIA_NULL, b"A" * 16)
    assert (frame.msg_id, frame.encrypted, frame.seq) == ("NULL", True, 0)
    assert (frame.account, frame.receiver, frame.line) == ("AAAB", "0", "0")
    assert frame.data == "]"
    assert frame.timestamp == datetime(2020, 7, 5, 18, 24, 52, tzinfo=UTC)


def test_pysiaalarm_reads_our_encrypted_frame() -> None:
    event_mod = pytest.importorskip("pysiaalarm.event")
    account_mod = pytest.importorskip("pysiaalarm.account")
    now = datetime.now(UTC)
    raw = build_frame("SIA-DCS", 7, ROUTE, alarm_data(alarm(device_ts=now), "1234"), now, KEY16)
    accounts = {"1234": account_mod.SIAAccount("1234", KEY16.decode())}
    event = event_mod.SIAEvent.from_line(raw.decode().strip(), accounts)
    assert (event.code, event.account, event.ri, event.message) == ("PA", "1234", "1", "1634")
    assert event.valid_message and event.response.value == "ACK"
    reply, _, ignored = match_reply(event.create_response(), 7, KEY16)
    assert reply == Reply("ACK", reply.timestamp) and reply.timestamp is not None, ignored


def test_encrypt_decrypt_round_trip() -> None:
    assert decrypt(KEY16, encrypt(KEY16, "|#1234|Nri1/FA0001]")) == "#1234|Nri1/FA0001]"
    assert decrypt(KEY16, encrypt(KEY16, "]_08:00:00,11-23-2026")) == "]_08:00:00,11-23-2026"


def test_wrong_key_does_not_decrypt() -> None:
    hex_text = encrypt(KEY16, "|#1234|Nri1/FA0001]_08:00:00,11-23-2026")
    with pytest.raises(FrameError, match="wrong key"):
        decrypt(b"F" * 16, hex_text)
    with pytest.raises(FrameError, match="multiple of 16"):
        decrypt(KEY16, hex_text[:-2])


# --- parsing -----------------------------------------------------------------------------------


def test_parse_round_trip() -> None:
    raw = build_frame("SIA-DCS", 42, Route("1234", "0", "5"), "#1234|Nri2/BA0001]", AT, KEY16)
    frame = parse_frame(raw, KEY16)
    assert (frame.msg_id, frame.seq, frame.account, frame.receiver) == ("SIA-DCS", 42, "1234", "5")
    assert (frame.data, frame.timestamp) == ("#1234|Nri2/BA0001]", AT)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda r: r[:1] + b"0000" + r[5:], "CRC mismatch"),
        (lambda r: r[:-2] + b"7\r", "CRC mismatch"),
        (lambda r: wrap(r[9:-1].decode())[:5] + b"0FFF" + r[9:], "length mismatch"),
        (lambda r: b"\nZZZZ0000" + r[9:], "bad CRC/length"),
        (lambda r: b"hello", "not a DC-09 frame"),
        (lambda r: wrap('"SIA-DCS"12L0#1234[]'), "bad DC-09 header"),
    ],
)
def test_parse_rejects(mutate: object, error: str) -> None:
    raw = build_frame("NULL", 1, ROUTE, "]", AT)
    with pytest.raises(FrameError, match=error):
        parse_frame(mutate(raw), None)  # type: ignore[operator]


def test_encrypted_frame_needs_the_key() -> None:
    raw = build_frame("NULL", 1, ROUTE, "]", AT, KEY16)
    with pytest.raises(FrameError, match="no key"):
        parse_frame(raw, None)


def test_take_frame() -> None:
    one, two = build_frame("NULL", 1, ROUTE, "]", AT), build_frame("NULL", 2, ROUTE, "]", AT)
    assert take_frame(b"junk" + one + two[:5]) == (one, two[:5])
    assert take_frame(two[:5]) == (None, two[:5])
    assert take_frame(b"no line feed") == (None, b"no line feed")
    assert take_frame(b'"NAK"') == (b'"NAK"', b"")


# --- replies -----------------------------------------------------------------------------------


def ack(seq: int, key: bytes | None = None) -> bytes:
    if key is None:
        return wrap(f'"ACK"{seq:04d}R0L0#1234[]')
    return wrap(f'"*ACK"{seq:04d}R0L0#1234[{encrypt(key, "]_08:00:00,11-23-2026")}')


def test_ack_matches_its_sequence_number() -> None:
    stale = ack(6)
    reply, rest, ignored = match_reply(stale + ack(7) + b"\n12", 7, None)
    assert reply == Reply("ACK") and rest == b"\n12"
    assert ignored == ["ACK for sequence 0006, not 0007"]


def test_nak_carries_the_receiver_clock() -> None:
    nak = wrap('"NAK"0000R0L0A0[]_08:05:00,11-23-2026')
    reply, _, _ = match_reply(nak, 7, KEY16)
    assert reply == Reply("NAK", AT + timedelta(minutes=5))


def test_encrypted_ack_is_required_for_an_encrypted_message() -> None:
    reply, _, ignored = match_reply(ack(7), 7, KEY16)
    assert reply is None and ignored == ["plain-text ACK to an encrypted message"]
    reply, _, _ = match_reply(ack(7, KEY16), 7, KEY16)
    assert reply == Reply("ACK", AT)
    reply, _, ignored = match_reply(ack(7, b"F" * 16), 7, KEY16)
    assert reply is None and "wrong key" in ignored[0]


def test_bare_and_corrupt_replies() -> None:
    assert match_reply(b'"NAK"', 7, None)[0] == Reply("NAK", bare=True)
    assert match_reply(b'"ACK"', 7, None)[2] == ["unframed ACK"]
    corrupt = ack(7)[:-3] + b"X]\r"
    reply, _, ignored = match_reply(corrupt, 7, None)
    assert reply is None and ignored[0].startswith("CRC mismatch")
    duh = wrap('"DUH"0007R0L0#1234[]')
    assert match_reply(duh, 7, KEY16)[0] == Reply("DUH")


# --- alarms as SIA events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"category": "police"}, "PA"),
        ({"category": "fire"}, "FA"),
        ({"category": "medical"}, "MA"),
        ({"category": "intrusion", "kind": Kind.GATE, "event": "forced"}, "BA"),
        ({"category": "trouble", "event": "linkage_trouble"}, "YS"),
        ({"category": "fire", "test": True}, "TX"),
        ({"category": "something-new"}, "UA"),
    ],
)
def test_sia_codes(change: dict[str, object], code: str) -> None:
    assert sia_code(alarm(**change)) == code


def test_alarm_data_block() -> None:
    assert alarm_data(alarm(), "1234") == (
        "#1234|Nri1/PA1634][Ss1][Lbutton/b-17][Ipolice press a-1][H08:00:00,11-23-2026]"
    )
    gate = alarm_data(alarm(kind=Kind.GATE, category="intrusion", event="forced"), "1234")
    assert gate.startswith("#1234|Nri2/BA")
    test = alarm_data(alarm(test=True), "1234")
    assert test.startswith("#1234|Nri1/TX][") and "[ITEST police press a-1]" in test


def test_zone_is_stable_and_in_range() -> None:
    assert zone_number(alarm()) == zone_number(alarm(id="other", seq=99)) == 1634
    zones = {zone_number(alarm(device=f"d{i}")) for i in range(500)}
    assert all(1 <= z <= 9999 for z in zones) and len(zones) > 480


def test_xdata_is_sanitised() -> None:
    assert xdata_text("a[b]c|d^e\u6821\n") == "a?b?c?d?e??"
    assert len(xdata_text("x" * 300)) == 64


def test_largest_alarm_fits_pysiaalarms_1000_byte_read() -> None:
    big = alarm(id="i" * 64, school="s" * 64, device="d" * 64, category="intrusion")
    raw = build_frame("SIA-DCS", 1, Route("F" * 16, "FFFFFF", "FFFFFF"), alarm_data(big, "F" * 16),
                      AT, bytes(32))  # fmt: skip
    assert len(raw) < 1000
