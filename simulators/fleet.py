"""A fleet of schools publishing over MQTT (`campusgw simulate`): alarm buttons, cameras, gates.

Devices publish on `campus/{school}/{kind}/{device}/{channel}` the payloads of the device
contract (gateway/models.py): status every --status-interval seconds per device, alarm-button
presses and forced gates at random (exponential gaps with the given means, across the whole
fleet), camera video loss likewise. `seq` counts each device's messages from 1.

Each school shares one MQTT connection (paho-mqtt 2.x driven by the asyncio loop). At start every
device publishes a retained `online` on its availability topic, and on a clean exit (duration
reached, Ctrl-C, SIGTERM) a retained `offline`. One connection carries only one last will, so
devices have none: a killed simulator leaves its devices `online` until the gateway's silence
timeout notices. Messages published while the broker is away are kept and sent on reconnect, as
devices with store-and-forward do; on exit the simulator waits for every PUBACK, so the summary's
counts are exact.

With --vendor-devices the last school's gates (kv-g1 ...) speak the key=value `gate_kv` format and
its cameras (hik-c1 ...) send Hikvision-style alarm JSON for events (their status stays canonical).
With --registry FILE the fleet is exactly the devices of a registry file (registry_gen.py).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.devices import (
    Device,
    canonical_payload,
    event_payload,
    hik_alarm_payload,
    kv_gate_payload,
    make_school,
    press_payload,
)
from simulators.registry_gen import registry_file, registry_fleet

__all__ = [
    "Device",
    "Fleet",
    "SchoolLink",
    "build_parser",
    "canonical_payload",
    "event_payload",
    "hik_alarm_payload",
    "kv_gate_payload",
    "press_payload",
    "run",
]

LOW_BATTERY = 20.0  # percent; a button reports low_battery once when it drains past this


# --- one MQTT connection per school, driven by the asyncio loop ---------------------------------


class SchoolLink:
    """A school's MQTT connection: reconnects on its own, counts PUBACKs."""

    def __init__(self, school: str, host: str, port: int, qos: int) -> None:
        self.school, self.host, self.port, self.qos = school, host, port, qos
        self.published = self.acked = 0
        self.connected, self.lost, self.drained = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.closing = False
        self._loop = asyncio.get_running_loop()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{school}-{os.getpid()}")
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_lost
        c.on_publish = self._on_publish
        c.on_socket_open, c.on_socket_close = self._on_open, self._on_close
        c.on_socket_register_write, c.on_socket_unregister_write = self._on_write, self._on_unwrite
        self.client = c

    def _on_connect(self, *_: Any) -> None:
        self.connected.set()

    def _on_lost(self, *_: Any) -> None:
        self.connected.clear()
        self.lost.set()

    def _on_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_reader(sock, self.client.loop_read)

    def _on_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_writer(sock, self.client.loop_write)

    def _on_unwrite(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _on_publish(self, *_: Any) -> None:
        self.acked += 1
        if self.acked >= self.published:
            self.drained.set()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Queue a message; paho sends it now or after the next reconnect."""
        self.published += 1
        self.drained.clear()
        self.client.publish(topic, payload, self.qos, retain)

    async def keep_connected(self) -> None:
        """Connect, and reconnect after every loss (0.2 s doubling to 5 s between tries)."""
        self.client.connect_async(self.host, self.port, keepalive=30)
        delay = 0.2
        while not self.closing:
            try:
                self.client.reconnect()
            except OSError as exc:
                if delay == 0.2:  # once per outage
                    print(f"{self.school}: broker {self.host}:{self.port}: {exc}", flush=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            await self.lost.wait()
            self.lost.clear()

    async def housekeeping(self) -> None:
        """Keepalive pings and retries of unacknowledged messages (paho's loop_misc)."""
        while True:
            self.client.loop_misc()
            await asyncio.sleep(1.0)

    async def close(self, drain_s: float) -> None:
        """Wait up to drain_s seconds for outstanding PUBACKs, then disconnect."""
        if self.published > self.acked:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), drain_s)
        self.closing = True
        was_connected = self.connected.is_set()
        self.client.disconnect()
        if was_connected:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.lost.wait(), 2.0)


# --- the fleet ------------------------------------------------------------------------------------


@dataclass
class Stats:
    """What the fleet sent."""

    sent: Counter[str] = field(default_factory=Counter)  # by channel
    presses: Counter[str] = field(default_factory=Counter)  # by category
    events: Counter[str] = field(default_factory=Counter)  # other events by name


Action = Callable[[Device], None]


class Fleet:
    """Schools, their devices and links, and the schedule of what each device sends when."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.rng, self.stats = args, random.Random(args.seed), Stats()
        self.links: dict[str, SchoolLink] = {}
        self.devices: list[Device] = []
        registry = getattr(args, "registry", None)  # --registry: [(school, kind, id), ...]
        for i in range(1, args.schools + 1 if registry is None else 0):
            school, vendor = f"{args.school_prefix}{i}", args.vendor_devices and i == args.schools
            self.links[school] = SchoolLink(school, args.host, args.port, args.qos)
            counts = (args.buttons, args.cameras, args.gates)
            self.devices += make_school(school, i, counts, vendor, self.rng)
        if registry is not None:
            self.devices = registry_fleet(registry, self.rng)
            for school in dict.fromkeys(d.school for d in self.devices):
                self.links[school] = SchoolLink(school, args.host, args.port, args.qos)
        self._heap: list[tuple[float, int, Action, Device]] = []
        self._order = itertools.count()
        self._next_slot = 0.0

    def send(self, device: Device, channel: str, payload: bytes, retain: bool = False) -> None:
        """Publish one message of a device and count it."""
        self.links[device.school].publish(
            device.topic(channel, self.args.topic_root), payload, retain
        )
        self.stats.sent[channel] += 1

    def announce(self, state: str) -> None:
        """Publish every device's retained availability (`online` or `offline`)."""
        for device in self.devices:
            self.send(device, "availability", state.encode(), retain=True)

    def _at(self, delay: float, action: Action, device: Device) -> None:
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), action, device))

    def _gap(self, mean: float) -> float:
        return self.rng.expovariate(1.0 / mean)

    def _status(self, device: Device) -> None:
        before = device.battery
        self.send(device, "status", device.status(self.rng, datetime.now(UTC)))
        self._at(self.args.status_interval, self._status, device)
        if device.kind == "button" and before > LOW_BATTERY >= device.battery:
            self._event(device, "low_battery")

    def _event(self, device: Device, event: str) -> None:
        self.send(device, "event", device.event(datetime.now(UTC), event))
        self.stats.events[event] += 1

    def _random_event(self, kind: str, mean: float, event: str) -> None:
        """Schedule `event` on a random device of `kind`, again and again, mean gap `mean` s."""
        candidates = [d for d in self.devices if d.kind == kind]
        if mean <= 0 or not candidates:
            return

        def fire(_: Device) -> None:
            device = self.rng.choice(candidates)
            if event == "press":
                category = "fire" if self.rng.random() < self.args.fire_share else "police"
                self.send(
                    device, "event", press_payload(device.next_seq(), datetime.now(UTC), category)
                )
                self.stats.presses[category] += 1
            else:
                self._event(device, event)
            self._at(self._gap(mean), fire, device)

        self._at(self._gap(mean), fire, candidates[0])

    def plan(self) -> None:
        """Schedule statuses (phases spread over one interval) and the random events."""
        for device in self.devices:
            self._at(self.rng.uniform(0, self.args.status_interval), self._status, device)
        self._random_event("button", self.args.press_every, "press")
        self._random_event("gate", self.args.forced_every, "forced")
        self._random_event("camera", self.args.video_loss_every, "video_loss")

    async def _pace(self) -> None:
        """Space messages 1/rate seconds apart when --rate caps the fleet."""
        if self.args.rate > 0:
            now = time.monotonic()
            slot = max(self._next_slot, now)
            self._next_slot = slot + 1.0 / self.args.rate
            if slot > now:
                await asyncio.sleep(slot - now)

    async def play(self, stop: asyncio.Event) -> None:
        """Send what is due, in time order, until stop is set."""
        while self._heap and not stop.is_set():
            delay = self._heap[0][0] - time.monotonic()
            if delay > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            _, _, action, device = heapq.heappop(self._heap)
            await self._pace()
            action(device)
            await asyncio.sleep(0)  # let paho write and read acks between messages
        await stop.wait()

    def progress(self) -> str:
        """One line: sent, acknowledged, presses, forced."""
        published = sum(link.published for link in self.links.values())
        acked = sum(link.acked for link in self.links.values())
        presses = sum(self.stats.presses.values())
        forced = self.stats.events["forced"]
        clock = time.strftime("%H:%M:%S")
        return f"{clock} sent={published} acked={acked} presses={presses} forced={forced}"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


_OPTIONS: list[tuple[str, Callable[[str], Any], Any, str]] = [
    ("--host", str, "127.0.0.1", "MQTT broker host"),
    ("--port", int, 1883, "MQTT broker port"),
    ("--topic-root", str, "campus", "first topic level"),
    ("--schools", int, 3, "number of schools"),
    ("--school-prefix", str, "s", "school ids are PREFIX1..PREFIXn"),
    ("--buttons", int, 2, "alarm buttons per school"),
    ("--cameras", int, 4, "cameras per school"),
    ("--gates", int, 2, "gate sensors per school"),
    ("--status-interval", _positive, 10.0, "seconds between two status messages of one device"),
    ("--press-every", float, 60.0, "mean seconds between button presses, fleet-wide; 0 = none"),
    ("--forced-every", float, 120.0, "mean seconds between forced gates, fleet-wide; 0 = none"),
    ("--video-loss-every", float, 300.0, "mean seconds between video losses, fleet-wide; 0 = none"),
    ("--fire-share", float, 0.2, "share of presses that call the fire brigade (rest: police)"),
    ("--rate", float, 0.0, "cap on scheduled messages per second, whole fleet; 0 = none"),
    ("--duration", float, 0.0, "stop after this many seconds; 0 = until Ctrl-C or SIGTERM"),
    ("--drain-timeout", float, 30.0, "seconds to wait on exit for outstanding PUBACKs"),
    ("--progress", float, 10.0, "seconds between progress lines; 0 = none"),
    ("--seed", int, None, "random seed, for a repeatable fleet"),
    ("--registry", registry_file, None, "exactly the devices of a registry file, not --schools.."),
    (
        "--snapshots",
        float,
        0.0,
        "also run `campusgw simulate cameras` for the fleet's cameras, "
        "one JPEG snapshot per camera every this many seconds; 0 = none",
    ),
]


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the simulate options to p."""
    p.description = "Simulate schools' alarm buttons, cameras and gates publishing over MQTT."
    for flag, kind, default, text in _OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")
    p.add_argument(
        "--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS (default: %(default)s)"
    )
    p.add_argument(
        "--vendor-devices",
        action="store_true",
        help="the last school's gates (kv-g1..) send gate_kv text and its cameras (hik-c1..) "
        "Hikvision alarm JSON (default: off)",
    )


async def _report(fleet: Fleet, every: float) -> None:
    while every > 0:
        await asyncio.sleep(every)
        print(fleet.progress(), flush=True)


def _summary(fleet: Fleet, seconds: float) -> tuple[str, int]:
    published = sum(link.published for link in fleet.links.values())
    unacked = published - sum(link.acked for link in fleet.links.values())
    lines = [
        f"fleet: {len(fleet.links)} schools, {len(fleet.devices)} devices, {seconds:.1f} s",
        "sent: "
        + " ".join(f"{k}={v}" for k, v in sorted(fleet.stats.sent.items()))
        + f" total={published}",
        "presses: "
        + (" ".join(f"{k}={v}" for k, v in sorted(fleet.stats.presses.items())) or "none"),
        f"forced: {fleet.stats.events['forced']}  video_loss: {fleet.stats.events['video_loss']}"
        f"  low_battery: {fleet.stats.events['low_battery']}",
        f"unacknowledged: {unacked}" if unacked else "every message acknowledged by the broker",
    ]
    return "\n".join(lines), int(unacked > 0)


async def _main(args: argparse.Namespace) -> int:
    loop, stop, started = asyncio.get_running_loop(), asyncio.Event(), time.monotonic()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration > 0:
        loop.call_later(args.duration, stop.set)
    fleet = Fleet(args)
    cameras = _start_cameras(args) if args.snapshots > 0 else None
    links = fleet.links.values()
    tasks = [asyncio.create_task(c()) for k in links for c in (k.keep_connected, k.housekeeping)]
    tasks.append(asyncio.create_task(_report(fleet, args.progress)))
    try:
        if not await _connected(fleet, stop):
            print("fleet: stopped before every school reached the broker", flush=True)
            return 1
        fleet.announce("online")
        fleet.plan()
        await fleet.play(stop)
        fleet.announce("offline")
        await asyncio.gather(*(link.close(args.drain_timeout) for link in fleet.links.values()))
    finally:
        for task in tasks:
            task.cancel()
        if cameras is not None:
            _stop(cameras)
    text, code = _summary(fleet, time.monotonic() - started)
    print(text, flush=True)
    return code


def _start_cameras(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """The camera simulator for the same cameras (status stays with the fleet). The vendor
    school's cameras (hik-c1..) send alarms only, so they are left out."""
    command = [
        sys.executable, "-m", "gateway", "simulate", "cameras", "--host", args.host,
        "--port", str(args.port), "--topic-root", args.topic_root,
        "--interval", str(args.snapshots), "--status-interval", "0",
        "--progress", str(args.progress), "--duration", str(args.duration),
    ]  # fmt: skip
    if args.registry is not None:
        command += ["--registry", str(args.registry.path)]
    else:
        schools = args.schools - 1 if args.vendor_devices else args.schools
        command += ["--schools", str(schools), "--school-prefix", args.school_prefix,
                    "--cameras", str(args.cameras)]  # fmt: skip
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    child = subprocess.Popen(command)
    print(f"fleet: snapshots every {args.snapshots:g} s from `campusgw simulate cameras` "
          f"(pid {child.pid})", flush=True)  # fmt: skip
    return child


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _connected(fleet: Fleet, stop: asyncio.Event) -> bool:
    """Wait until every school is connected (True) or stop is set first (False)."""

    async def everyone() -> None:
        for link in fleet.links.values():
            await link.connected.wait()

    async def stopped() -> None:
        await stop.wait()

    waits = [asyncio.create_task(everyone()), asyncio.create_task(stopped())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    return not stop.is_set()


def run(args: argparse.Namespace) -> int:
    """Run the fleet until --duration, Ctrl-C or SIGTERM; exit 1 if messages stay unacknowledged."""
    return asyncio.run(_main(args))
