"""The fleet simulator with --snapshots runs the camera simulator for its cameras, on a real
mosquitto: every camera of every ordinary school sends JPEG snapshots, the vendor school's
Hikvision cameras (alarm JSON only) send none, and the child ends with the fleet."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_fleet_snapshots_from_the_camera_simulator(tmp_path: Path, broker: Mosquitto) -> None:
    jpegs: Counter[str] = Counter()
    other: Counter[str] = Counter()
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        (jpegs if msg.payload[:2] == b"\xff\xd8" else other)[msg.topic] += 1

    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("campus/+/camera/+/snapshot", qos=0)
    sub.loop_start()
    try:
        assert subscribed.wait(5)
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "simulate", "--port", str(broker.port),
             "--schools", "3", "--buttons", "1", "--cameras", "2", "--gates", "1",
             "--vendor-devices", "--press-every", "0", "--forced-every", "0",
             "--video-loss-every", "0", "--status-interval", "5", "--progress", "0",
             "--snapshots", "1", "--duration", "8", "--seed", "3"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    finally:
        sub.loop_stop()
        sub.disconnect()
    print(done.stdout[-2000:], done.stderr[-2000:])
    assert done.returncode == 0
    cameras = {f"campus/s{s}/camera/c{n}/snapshot" for s in (1, 2) for n in (1, 2)}
    assert set(jpegs) == cameras  # s3 is the vendor school: hik-c1, hik-c2 send no snapshots
    assert min(jpegs.values()) >= 3 and not other, (jpegs, other)
    pid = int(re.search(r"simulate cameras` \(pid (\d+)\)", done.stdout).group(1))  # type: ignore[union-attr]
    assert not os.path.exists(f"/proc/{pid}")  # ended and reaped with the fleet
