"""Device models of the simulated fleet and the payloads they send; pure, no I/O.

Payloads follow the device contract (gateway/models.py) for canonical devices, plus two vendor
formats: the key=value text of `gate_kv` gates and Hikvision-style camera alarm JSON. The payload
functions are also what bench/ uses to make messages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

CHINA_TZ = timezone(timedelta(hours=8))  # Hikvision devices report local time


# --- payloads: pure functions, also used by bench/ ------------------------------------------


def rfc3339_ms(ts: datetime) -> str:
    """`2026-11-23T08:00:00.123Z`: UTC with milliseconds, as devices in the contract send it."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_payload(seq: int, ts: datetime, **fields: Any) -> bytes:
    """A canonical JSON message: v, seq, ts, then the given fields."""
    return orjson.dumps({"v": 1, "seq": seq, "ts": rfc3339_ms(ts), **fields})


def press_payload(seq: int, ts: datetime, category: str = "police") -> bytes:
    """An alarm-button press routed by category (police, fire, medical)."""
    return canonical_payload(seq, ts, event="press", category=category)


def event_payload(seq: int, ts: datetime, event: str) -> bytes:
    """A canonical event without extra fields (gate `forced`, camera `video_loss` ...)."""
    return canonical_payload(seq, ts, event=event)


def kv_gate_payload(seq: int, ts: datetime, **fields: int | str) -> bytes:
    """gate_kv text: `seq=12 ts=2026-11-23T08:00:00Z evt=FORCED` or `... door=0 lock=1 bat=87`."""
    stamp = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return " ".join(
        [f"seq={seq}", f"ts={stamp}", *(f"{k}={v}" for k, v in fields.items())]
    ).encode()


def hik_alarm_payload(seq: int, ts: datetime, ip: str, event_type: str = "videoloss") -> bytes:
    """A Hikvision-style alarm; activePostCount carries the device's sequence number."""
    return orjson.dumps(
        {
            "ipAddress": ip,
            "channelID": 1,
            "dateTime": ts.astimezone(CHINA_TZ).isoformat(timespec="seconds"),
            "activePostCount": seq,
            "eventType": event_type,
            "eventState": "active",
            "eventDescription": f"{event_type} alarm",
        }
    )


# --- devices ------------------------------------------------------------------------------------


@dataclass
class Device:
    """One simulated device and the state its status messages report."""

    school: str
    kind: str  # button, camera, gate
    name: str
    vendor: bool = False
    ip: str = ""
    seq: int = 0
    battery: float = 100.0
    rssi: int = -60
    storage_free_gb: float = 800.0

    def topic(self, channel: str, root: str = "campus") -> str:
        """The device's topic for a channel."""
        return f"{root}/{self.school}/{self.kind}/{self.name}/{channel}"

    def next_seq(self) -> int:
        """The seq of the device's next message."""
        self.seq += 1
        return self.seq

    def status(self, rng: random.Random, ts: datetime) -> bytes:
        """The next status message, with values drifting the way real devices' do."""
        seq, rssi = self.next_seq(), max(-90, min(-40, self.rssi + rng.randint(-4, 4)))
        self.battery = max(5.0, self.battery - rng.uniform(0.0, 0.05))
        if self.kind == "camera":
            self.storage_free_gb = max(50.0, self.storage_free_gb - rng.uniform(0.0, 0.2))
            return canonical_payload(
                seq, ts, fps=round(rng.gauss(25.0, 0.4), 1),
                bitrate_kbps=round(rng.gauss(4096, 150)), recording=True,
                storage_free_gb=round(self.storage_free_gb, 1),
                retention_days=round(rng.uniform(30.0, 45.0), 1),
            )  # fmt: skip
        if self.kind == "button":
            return canonical_payload(
                seq, ts, battery=round(self.battery, 1), rssi=rssi, power="battery"
            )
        door_open = rng.random() < 0.05
        locked = not door_open and rng.random() < 0.9
        if self.vendor:
            bat = round(self.battery)
            return kv_gate_payload(
                seq, ts, door=int(door_open), lock=int(locked), bat=bat, rssi=rssi
            )
        door = "open" if door_open else "closed"
        return canonical_payload(
            seq,
            ts,
            door=door,
            locked=locked,
            battery=round(self.battery, 1),
            rssi=rssi,
            power="battery",
        )

    def event(self, ts: datetime, event: str) -> bytes:
        """An event in the device's own format (forced, video_loss, low_battery ...)."""
        seq = self.next_seq()
        if self.vendor and self.kind == "gate":
            return kv_gate_payload(seq, ts, evt=event.upper())
        if self.vendor and self.kind == "camera":
            return hik_alarm_payload(seq, ts, self.ip, event.replace("_", ""))
        return event_payload(seq, ts, event)


def make_school(
    school: str, index: int, counts: tuple[int, int, int], vendor: bool, rng: random.Random
) -> list[Device]:
    """One school's buttons b1.., cameras c1.. (hik-c1..) and gates g1.. (kv-g1..) by counts."""
    buttons, cameras, gates = counts
    rssi = rng.randint(-75, -50)  # the school's radio conditions

    def battery() -> float:
        return round(rng.uniform(25.0, 100.0), 1)

    devices = [
        Device(school, "button", f"b{n}", battery=battery(), rssi=rssi)
        for n in range(1, buttons + 1)
    ]
    devices += [
        Device(school, "camera", f"{'hik-' * vendor}c{n}", vendor, ip=f"10.0.{index}.{n}")
        for n in range(1, cameras + 1)
    ]
    devices += [
        Device(school, "gate", f"{'kv-' * vendor}g{n}", vendor, battery=battery(), rssi=rssi)
        for n in range(1, gates + 1)
    ]
    return devices
