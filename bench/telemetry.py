"""Benchmark of telemetry at speed (issue 7): sustained MQTT -> InfluxDB rate and delay of the
gateway beside mosquitto_sub and mqtt2influxdb on the same load, the gateway's memory at 10,000
devices, and (--soak) a long run with an InfluxDB outage in the middle.

Starts its own mosquitto and influxd (docker/mosquitto.conf, simulators/servers.py) on free
loopback ports in a temp dir, fresh for every consumer and QoS, drives them with paced
publishers (bench/telemetry_load.py: child processes writing raw MQTT 3.1.1, about 3 us of CPU
per message), prints figures and stops every process it started, by PID. Never run as a test.
Always run it under the machine's bench lock, so that it never overlaps another benchmark:

    flock /tmp/bench.lock .venv/bin/python bench/telemetry.py            # steps + memory
    flock /tmp/bench.lock .venv/bin/python bench/telemetry.py --soak     # the 10-minute soak
    flock /tmp/bench.lock .venv/bin/python bench/telemetry.py --soak --soak-minutes 2
    flock /tmp/bench.lock .venv/bin/python bench/telemetry.py --qos 1 --consumers gateway \\
        --steps 10000,15000 --gateway-set influxdb.flush_interval_s=0.02

Phases (the first two by default, --phases picks; --soak runs the soak alone):

steps   For each --qos and each of --consumers, on fresh servers: the consumer starts, a first
        message must get through, every device reports once (warm-up), then for each rate
        of --steps (mqtt2influxdb: --peer-steps) --publishers processes publish button status
        messages from --devices devices (default 2,000: 15 msg/s each at 30,000 msg/s, far
        under the gateway's default limit of 100 msg/s per device, which stays on) for
        --step-duration s, then the bench waits up to --drain-max s for the rest to land.
        Per step: the achieved publish rate; the end-to-end rate (what landed per second from
        1 s after the start to the last publish); the backlog at the last publish; what had
        not landed after the drain; delay p50/p99/max; each process's CPU share.
        Landed means: points InfluxDB took over HTTP (its own counter, SHOW STATS httpd
        pointsWrittenOK) for the gateway and mqtt2influxdb; lines mosquitto_sub wrote.
        Delay: --probe-rate messages/s go to probe devices and carry their publish time (`ts`);
        a thread polls InfluxDB every 20 ms for new probe points and counts each as landed
        halfway between the poll that first saw it and the one before (+-10 ms); for
        mosquitto_sub it is its own receive time (`-F '%U %t %p'`) minus `ts`.
        Kept up: landed at >= 97 % of the publish rate over the window AND everything
        published had landed by the end of the drain (QoS 0 drops count as not kept up).
        Sustained = the highest step kept up; a consumer stops at its first step not kept up
        (--all-steps goes on). Gateway / mosquitto_sub and gateway / mqtt2influxdb ratios of
        the sustained rates (and of the most landed per second) end the QoS's section.
        mqtt2influxdb is 1.5.2 (its 2.x writes InfluxDB 3 only), installed once with
        paho-mqtt < 2 into bench/.peers/ (gitignored) by pip; it writes one point per HTTP
        request and subscribes at QoS 0 whatever the load's QoS.
memory  Fresh servers and gateway; --memory-devices devices (default 10,000) each reporting
        every --memory-interval s (default 10: 1,000 msg/s) for --memory-duration s (default
        90), QoS 1. The gateway's VmRSS each second, and VmHWM (/proc/PID/status).
soak    Fresh servers and gateway; --soak-rate msg/s (default 5,000) QoS 1 for --soak-minutes
        (default 10); influxd is stopped (SIGTERM by PID) at 1/3 and started again on the same
        data directory at 2/3; then the bench counts the soak's points in InfluxDB exactly
        (SELECT count) until they reach the count sent or stop growing for 60 s. Prints sent,
        acked, written, the spool's peak (points_pending, /api/stats), its drain after the
        restart, evicted points, the broker's "dropped" log lines, and PASS only when
        written == sent == acked and nothing was evicted.

The gateway runs with its defaults (batches of 5,000 points or every 0.2 s, the spool fsync'd
per batch before the PUBACK, backpressure past 100,000 points pending) except addresses and
paths; --gateway-set section.key=value (repeatable, TOML values) changes a setting, and the
report lists every change. Every step and phase prints each process's share of a core and
what other jobs on the machine used meanwhile (flagged above 15 % of a core: the figures are
skewed then); --quiet-wait S waits up to S s for a quiet machine before each step. Progress
goes to stderr, figures to stdout (--json: one JSON document). Percentiles are nearest rank.
The defaults take about 10 minutes (steps 8, memory 2); --soak about --soak-minutes + 3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import BenchError, machine_facts, note, wait_quiet
from probes import fsync_cost
from telemetry_consumers import (
    Consumer,
    Gateway,
    MosquittoSub,
    Mqtt2InfluxDB,
    Servers,
    install_peer,
    peer_versions,
)
from telemetry_report import text_report
from telemetry_run import Spec, ready, run_load, seq_after, step_note
from telemetry_soak import run_memory, run_soak

from simulators.servers import ServerError

CONSUMERS = ("mosquitto_sub", "gateway", "mqtt2influxdb")
PHASES = ("steps", "memory")
WARM_RATE = 2000.0


def make_consumer(name: str, servers: Servers, root: Path, qos: int, args: Any) -> Consumer:
    """The consumer called `name`."""
    if name == "gateway":
        return Gateway(servers, root, qos, args.gateway_set)
    if name == "mosquitto_sub":
        return MosquittoSub(servers, root, qos)
    return Mqtt2InfluxDB(servers, root, qos)


def run_consumer(name: str, qos: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One consumer's steps at one QoS on fresh servers; a failure ends its steps, not the run."""
    root.mkdir(parents=True)
    servers = Servers(root)
    consumer = make_consumer(name, servers, root, qos, args)
    out: dict[str, Any] = {"consumer": name, "qos": qos, "steps": [], "error": None}
    note(f"steps: QoS {qos} -> {name}")
    try:
        servers.start()
        consumer.start()
        ready(servers, consumer)
        seq = warm_up(servers, consumer, qos, args, root)
        for rate in args.peer_steps if name == "mqtt2influxdb" else args.steps:
            spec = Spec(rate, args.step_duration, qos, args.publishers, args.devices,
                        args.probe_rate, "tb", seq)  # fmt: skip
            busy = quiet(args, servers.pids() | consumer.pids())
            step = run_load(servers, consumer, spec, root, args.drain_max)
            out["steps"].append(step | {"busy_before_pct": busy})
            step_note(step, name)
            seq = seq_after(spec)
            if not step["kept_up"] and not args.all_steps:
                break
    except (BenchError, ServerError, OSError) as exc:
        out["error"] = str(exc)
        note(f"{name} QoS {qos} stopped: {exc}")
    finally:
        consumer.stop()
        servers.stop()
    return out


def warm_up(
    servers: Servers, consumer: Consumer, qos: int, args: argparse.Namespace, root: Path
) -> int:
    """Every device (and probe device) reports once, so no step pays for first sightings;
    returns the next seq to use."""
    duration = max(2.0, args.devices / WARM_RATE)
    spec = Spec(WARM_RATE, duration, qos, args.publishers, args.devices, args.probe_rate, "tb")
    run_load(servers, consumer, spec, root, args.drain_max)
    settle(consumer)
    return seq_after(spec)


def settle(consumer: Consumer, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
    """Wait until what the consumer landed has not changed for quiet_s."""
    last, since, deadline = consumer.landed(), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.2)
        now = consumer.landed()
        if now != last:
            last, since = now, time.monotonic()


def quiet(args: argparse.Namespace, pids: dict[str, int]) -> float:
    """% of a core other jobs used in the last second (waiting up to --quiet-wait for < 15)."""
    other = wait_quiet(args.quiet_wait, pids)
    if other >= 15:
        note(f"other jobs use {other:.0f} % of a core; going on (figures flagged)")
    return other


def run_all(args: argparse.Namespace, tmp: Path, summary: dict[str, Any]) -> None:
    """The phases asked for, in order."""
    summary["busy_before_pct"] = quiet(args, {})
    summary["fsync"] = fsync_cost(tmp / "fsync", 200)
    if args.soak:
        summary["soak"] = run_soak(args, tmp / "soak")
        return
    if "steps" in args.phases:
        if "mqtt2influxdb" in args.consumers:
            install_peer()
            summary["peer"] = peer_versions()
        summary["steps"] = [
            run_consumer(name, qos, args, tmp / f"q{qos}-{name}")
            for qos in args.qos
            for name in args.consumers
        ]
    if "memory" in args.phases:
        summary["memory"] = run_memory(args, tmp / "memory")


def csv_of(kind: type, choices: tuple[str, ...] = ()) -> Any:
    """An argparse type: a comma-separated list of `kind`, each one of `choices` if given."""

    def parse(text: str) -> list[Any]:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        bad = [x for x in items if choices and x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}; got {text!r}")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="bench/telemetry.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add = p.add_argument
    add("--phases", type=csv_of(str, PHASES), default=list(PHASES),
        help="steps,memory (default: both)")  # fmt: skip
    add("--qos", type=int, nargs="+", choices=(0, 1), default=[0, 1], help="default: 0 1")
    add("--consumers", type=csv_of(str, CONSUMERS), default=list(CONSUMERS),
        help=f"default: {','.join(CONSUMERS)}")  # fmt: skip
    add("--steps", type=csv_of(float), default=[5000.0, 10000.0, 15000.0, 20000.0, 30000.0],
        help="offered msg/s (default: 5000,10000,15000,20000,30000)")  # fmt: skip
    add("--peer-steps", type=csv_of(float), default=[250.0, 500.0, 1000.0, 2000.0, 5000.0],
        help="mqtt2influxdb's steps (default: 250,500,1000,2000,5000)")  # fmt: skip
    add("--step-duration", type=float, default=15.0, help="s per step (default: 15)")
    add("--drain-max", type=float, default=15.0, help="s to wait for the rest (default: 15)")
    add("--all-steps", action="store_true", help="go on after a step not kept up")
    add("--publishers", type=int, default=4, help="publisher processes (default: 4)")
    add("--devices", type=int, default=2000, help="devices in all (default: 2000)")
    add("--probe-rate", type=float, default=40.0, help="probe msg/s in all (default: 40)")
    add("--gateway-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="change a gateway setting (TOML value), e.g. spool.fsync=false")  # fmt: skip
    add("--memory-devices", type=int, default=10000, help="memory: devices (default: 10000)")
    add("--memory-interval", type=float, default=10.0, help="memory: s between reports (10)")
    add("--memory-duration", type=float, default=90.0, help="memory: s of load (default: 90)")
    add("--soak", action="store_true", help="run the soak (alone)")
    add("--soak-minutes", type=float, default=10.0, help="soak: minutes of load (default: 10)")
    add("--soak-rate", type=float, default=5000.0, help="soak: msg/s, QoS 1 (default: 5000)")
    add("--quiet-wait", type=float, default=0.0, metavar="S",
        help="before each step wait up to S s for other jobs to use < 15 %% of a core")  # fmt: skip
    add("--json", action="store_true", help="print one JSON document instead of text")
    add("--keep", action="store_true", help="keep the temp dir (configs, logs) and print it")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values no run can use."""
    for item in args.gateway_set:
        key = item.split("=", 1)[0]
        if "=" not in item or "." not in key:
            parser.error(f"--gateway-set wants SECTION.KEY=VALUE, got {item!r}")
    if min(args.steps + args.peer_steps) <= 0 or args.step_duration <= 2 * 1.0:
        parser.error("steps must be positive and --step-duration above 2 s")
    if args.publishers < 1 or args.devices < args.publishers:
        parser.error("--publishers must be >= 1 and --devices >= --publishers")
    if args.memory_duration < args.memory_interval or args.soak_minutes <= 0:
        parser.error("--memory-duration must cover one --memory-interval; --soak-minutes > 0")


def main(argv: list[str] | None = None) -> int:
    """Entry point; 1 when the servers could not be started."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    summary: dict[str, Any] = {"machine": machine_facts(), "args": vars(args)}
    tmp = Path(tempfile.mkdtemp(prefix="campusgw-telemetry-"))
    started = time.monotonic()
    try:
        run_all(args, tmp, summary)
    except (BenchError, ServerError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        note("interrupted; every process it started is stopped")
        return 130
    finally:
        if args.keep:
            note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    summary["elapsed_s"] = time.monotonic() - started
    summary["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary, indent=2) if args.json else "\n".join(text_report(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
