"""The whole stack on one machine (`campusgw demo`, `make demo`): broker, InfluxDB, endpoints,
gateway and a fleet of schools, each a child process stopped in reverse order on Ctrl-C.

State persists in VAR/demo (broker queue, InfluxDB, gateway store, linkage records), every
child's output goes to VAR/demo/logs/NAME.log. Children run in their own process groups, so a
Ctrl-C reaches only the demo, which then stops the fleet first and the broker last; they also
get SIGTERM from Linux if the demo itself dies (servers.spawn), so nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from simulators.servers import (
    InfluxDB,
    Mosquitto,
    ServerError,
    log_tail,
    port_in_use,
    spawn,
    stop_process,
)

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "campusgw.example.toml"
STATS_EVERY_S = 5.0


class DemoError(Exception):
    """A child could not start or died; the message says which and shows its log."""


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def set_toml_key(text: str, section: str, key: str, value: str) -> str:
    """Set `key = value` (a TOML literal) in [section] of a TOML text, adding what is missing."""
    lines = text.splitlines()
    header = f"[{section}]"
    starts = [i for i, line in enumerate(lines) if line.split("#")[0].strip() == header]
    if not starts:
        return text.rstrip("\n") + f"\n\n{header}\n{key} = {value}\n"
    start = starts[0]
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines)
    )
    for i in range(start + 1, end):
        if lines[i].split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}  # set by campusgw demo"
            break
    else:
        lines.insert(start + 1, f"{key} = {value}  # set by campusgw demo")
    return "\n".join(lines) + "\n"


def demo_config(args: argparse.Namespace, state: Path) -> str:
    """campusgw.example.toml with the demo's ports and store path."""
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    settings = [
        ("mqtt", "port", str(args.mqtt_port)),
        ("influxdb", "url", json.dumps(f"http://127.0.0.1:{args.influx_port}")),
        ("store", "path", json.dumps(str(state / "gateway.db"))),
        ("store", "registry_path", json.dumps(str(state / "registry.db"))),
        ("api", "port", str(args.api_port)),
        (
            "linkage.endpoints.police",
            "url",
            json.dumps(f"http://127.0.0.1:{args.police_port}/alarms"),
        ),
        (
            "linkage.endpoints.police",
            "test_url",
            json.dumps(f"http://127.0.0.1:{args.police_port}/tests"),
        ),
        ("linkage.endpoints.fire", "url", json.dumps(f"http://127.0.0.1:{args.fire_port}/alarms")),
    ]
    for section, key, value in settings:
        text = set_toml_key(text, section, key, value)
    return text


def _ports(args: argparse.Namespace) -> list[tuple[int, str, str]]:
    return [
        (args.mqtt_port, "MQTT", "--mqtt-port"),
        (args.influx_port, "InfluxDB", "--influx-port"),
        (args.api_port, "gateway API", "--api-port"),
        (args.police_port, "police endpoint", "--police-port"),
        (args.fire_port, "fire endpoint", "--fire-port"),
        (args.cameras_port, "camera simulator HTTP", "--cameras-port"),
    ]


def port_problem(args: argparse.Namespace) -> str | None:
    """Why the demo cannot have its ports (taken, or given twice), or None."""
    seen: dict[int, str] = {}
    for port, what, flag in _ports(args):
        if port in seen:
            return f"port {port} is given for both {seen[port]} and {what}; change {flag}"
        seen[port] = what
        if port_in_use("127.0.0.1", port):
            return (
                f"port {port} ({what}) is in use; choose another with {flag} or stop what holds it"
            )
    return None


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status), json.loads(resp.read() or b"null")


class Demo:
    """The children of one demo run, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = (args.var / "demo").resolve()
        self.logs = self.state / "logs"
        self.mosquitto, self.influx = Mosquitto(), InfluxDB()
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        proc = spawn([sys.executable, "-m", "gateway", *argv], self.logs / f"{name}.log")
        self.children.append((name, proc))
        return proc

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        """Poll url until it answers 200; DemoError if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if _get_json(url, 1.0)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise DemoError(f"{name} did not answer {url} within {timeout:.0f} s{self._tail(name)}")

    def _tail(self, name: str) -> str:
        log = self.logs / f"{name}.log"
        return f"; last lines of {log}:\n{log_tail(log)}"

    def start(self) -> None:
        """Start every child and wait for each to be ready."""
        a, s = self.args, self.state
        self.mosquitto.start(s / "mosquitto", a.mqtt_port, self.logs / "mosquitto.log")
        self.influx.start(s / "influxdb", a.influx_port, self.logs / "influxd.log")
        endpoints = ["--endpoint", f"police:{a.police_port}", "--endpoint", f"fire:{a.fire_port}"]
        self._spawn(
            "linkage", "linkage-sim", *endpoints, "--record", str(s / "linkage"), "--verbose"
        )
        for port in (a.police_port, a.fire_port):
            self._wait_http("linkage", f"http://127.0.0.1:{port}/healthz", 20.0)
        config = s / "campusgw.toml"
        config.write_text(demo_config(a, s), encoding="utf-8")
        registry = self._registry()
        self._spawn("gateway", "run", "--config", str(config))
        self._wait_http("gateway", f"http://127.0.0.1:{a.api_port}/healthz", a.gateway_timeout)
        knobs = {
            "--port": a.mqtt_port,
            "--registry": registry,
            "--status-interval": a.status_interval,
            "--press-every": a.press_every,
            "--forced-every": a.forced_every,
            "--drain-timeout": 10,
        }
        options = [text for flag, value in knobs.items() for text in (flag, str(value))]
        self._spawn("fleet", "simulate", *options)
        # Snapshots for video quality diagnosis; the fleet already sends the cameras' status.
        self._spawn(
            "cameras", "simulate", "cameras", "--port", str(a.mqtt_port), "--registry",
            str(registry), "--interval", "10", "--status-interval", "0",
            "--width", "1280", "--height", "720", "--http-port", str(a.cameras_port),
        )  # fmt: skip
        # One end-to-end test alarm per school, so coverage shows schools networked with police.
        self._run_once("test-alarms", "--api", f"http://127.0.0.1:{a.api_port}", "--wait", "0")

    def _registry(self) -> Path:
        """A sample registry of --schools schools, generated once and imported."""
        path: Path = self.state / "registry.yaml"
        if not path.exists():
            self._run_once("simulate", "registry", "--schools", str(self.args.schools),
                           "--counties", "2", "--out", str(path))  # fmt: skip
        self._run_once("registry", "import", str(path), "--store",
                       str(self.state / "registry.db"))  # fmt: skip
        return path

    def _run_once(self, *argv: str) -> None:
        log = self.logs / "setup.log"
        with log.open("ab") as out:
            done = subprocess.run([sys.executable, "-m", "gateway", *argv], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            raise DemoError(f"campusgw {' '.join(argv)} failed{self._tail('setup')}")

    def check_children(self) -> None:
        """DemoError naming the first child that has exited, with its log tail."""
        for name, server in (("mosquitto", self.mosquitto), ("influxd", self.influx)):
            if server.proc is not None and server.proc.poll() is not None:
                raise DemoError(
                    f"{name} exited with code {server.proc.returncode}{self._tail(name)}"
                )
        for name, proc in self.children:
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with code {proc.returncode}{self._tail(name)}")

    def stop(self) -> None:
        """Stop the children in reverse order: SIGTERM, then SIGKILL after a timeout."""
        for name, proc in reversed(self.children):
            code = proc.poll()
            if code is None:
                code = stop_process(proc, 15.0)
            print(f"stopped {name} (exit {code})", flush=True)
        self.children.clear()
        for name, server in (("influxd", self.influx), ("mosquitto", self.mosquitto)):
            if server.proc is not None:
                server.stop(15.0)
                print(f"stopped {name}", flush=True)

    def banner(self) -> str:
        """Where to look while the demo runs."""
        a, s = self.args, self.state
        api = f"http://127.0.0.1:{a.api_port}"
        return "\n".join(
            [
                "campus security gateway demo is running:",
                f"  API        {api}  (docs: {api}/docs, console: {api}/console/)",
                f"  coverage   {api}/api/coverage.txt?level=school  (campusgw coverage)",
                f"  MQTT       127.0.0.1:{a.mqtt_port}  "
                f"(mosquitto_sub -p {a.mqtt_port} -t 'campus/#' -v)",
                f"  InfluxDB   {self.influx.url}  database campus",
                f"  linkage    http://127.0.0.1:{a.police_port}/received (police), "
                f"http://127.0.0.1:{a.fire_port}/received (fire); records in {s / 'linkage'}",
                f"  config     {s / 'campusgw.toml'}",
                f"  cameras    {api}/api/cameras; inject a fault: curl -X POST "
                f'127.0.0.1:{a.cameras_port}/faults -d \'{{"camera": "s0001/c1", '
                f'"fault": "blur", "for_s": 120}}\'',
                f"  registry   {s / 'registry.yaml'}  (campusgw registry show --store "
                f"{s / 'registry.db'})",
                f"  logs       {self.logs}/"
                "{mosquitto,influxd,linkage,gateway,fleet,cameras,setup}.log",
                "Ctrl-C stops everything.",
            ]
        )

    def stats_line(self) -> str:
        """`12:00:05 in=1234 points=1200 alarms open=3 forwarded=3 dead=0` from GET /api/stats."""
        clock = time.strftime("%H:%M:%S")
        try:
            _, stats = _get_json(f"http://127.0.0.1:{self.args.api_port}/api/stats")
        except (OSError, ValueError) as exc:
            return f"{clock} /api/stats unavailable: {exc}"
        keys = ["messages_in", "points_written", "alarms_open", "alarms_forwarded", "dead_letters",
                "devices_online", "devices_registered"]  # fmt: skip
        v = {k: stats.get(k, "?") if isinstance(stats, dict) else "?" for k in keys}
        return (
            f"{clock} in={v['messages_in']} points={v['points_written']} alarms "
            f"open={v['alarms_open']} forwarded={v['alarms_forwarded']} dead={v['dead_letters']} "
            f"online={v['devices_online']}/{v['devices_registered']}"
        )

    def watch(self) -> None:
        """Print a stats line every 5 s until --duration passes; DemoError when a child dies."""
        deadline = time.monotonic() + self.args.duration if self.args.duration > 0 else None
        next_stats = time.monotonic() + STATS_EVERY_S
        while deadline is None or time.monotonic() < deadline:
            self.check_children()
            if time.monotonic() >= next_stats:
                print(self.stats_line(), flush=True)
                next_stats += STATS_EVERY_S
            time.sleep(0.2)


_OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--var", Path, Path("var"), "state and logs go to VAR/demo"),
    ("--mqtt-port", int, 1883, "port of the MQTT broker"),
    ("--influx-port", int, 8086, "port of the InfluxDB HTTP API"),
    ("--api-port", int, 8000, "port of the gateway's HTTP API"),
    ("--police-port", int, 8110, "port of the police endpoint"),
    ("--fire-port", int, 8119, "port of the fire endpoint"),
    ("--cameras-port", int, 8120, "HTTP port of the camera simulator (snapshots, faults)"),
    ("--schools", int, 3, "schools in the sample registry the fleet simulates"),
    ("--status-interval", float, 5.0, "seconds between two status messages of one device"),
    ("--press-every", float, 20.0, "mean seconds between button presses, fleet-wide"),
    ("--forced-every", float, 45.0, "mean seconds between forced gates, fleet-wide"),
    ("--gateway-timeout", float, 60.0, "seconds to wait for the gateway's /healthz"),
    ("--duration", float, 0.0, "stop after this many seconds; 0 = until Ctrl-C or SIGTERM"),
]


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the demo options to p."""
    p.description = "Run broker, InfluxDB, police/fire endpoints, the gateway and a fleet locally."
    for flag, kind, default, text in _OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    """Run the demo: 0 after Ctrl-C/SIGTERM/--duration, 1 if a child fails, 2 if a port is taken."""
    problem = port_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    demo = Demo(args)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        demo.start()
        print(demo.banner(), flush=True)
        demo.watch()
    except _Stop as stop:
        print(f"{stop}: stopping", flush=True)
    except (DemoError, ServerError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # let the orderly stop finish
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
