"""Benchmark of the whole pipeline: telemetry throughput and button-press-to-police latency.

Starts its own mosquitto, influxd, police endpoint (bench/endpoint.py) and gateway
(`python -m gateway run`) as subprocesses on free loopback ports in a temp dir, drives them
over MQTT, prints figures and stops every process it started, by PID. Never run as a test.

(a) throughput: --messages button status messages, each with its own seq and ts, published as
    fast as paho takes them by --publishers clients; then InfluxDB is polled every 50 ms until
    it holds every point. Prints the publish rate (first publish -> last PUBACK) and the end-to-
    end rate (first publish -> last point counted by SELECT count("seq") FROM button_status).
(b) alarm latency: --presses police button presses, QoS 1, paced at --press-rate per second by
    one client. Latency is the police endpoint's time.time() when the gateway's POST arrives
    minus the bench's time.time() just before publishing; it is also split at the gateway's
    `received_at` (publish -> gateway ingest, gateway ingest -> police). Prints p50/p90/p99/max
    (nearest rank), sent vs received and duplicates (a press received more than once).
--with-load runs (b) while (a) runs; "sent while load ran" are the presses published before
the last telemetry point was visible. The gateway's broker queue is capped at 100000 messages
(docker/mosquitto.conf), so --messages above that can lose messages if the gateway lags.

    .venv/bin/python bench/pipeline.py                 # (a), then (b)
    .venv/bin/python bench/pipeline.py --with-load     # (b) while (a) floods the gateway
    .venv/bin/python bench/pipeline.py --json          # one JSON summary on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from harness import DB, BenchError, Publisher, Stack, get_json, machine_facts, note, poll_until

from simulators.servers import InfluxDB, InfluxError, log_tail

PRESS_SCHOOL, PRESS_DEVICES = "s0", 20

Key = tuple[str, int]  # (device, seq) of a button press


def split(total: int, parts: int) -> list[int]:
    """total as `parts` near-equal shares."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def telemetry(publisher: int, count: int, devices: int, first: int) -> list[tuple[str, bytes]]:
    """One publisher's status messages: its own school, `devices` buttons, ts distinct per
    message (so InfluxDB keeps every point), seq increasing by one per device."""
    base = datetime.now(UTC)
    out = []
    for i in range(count):
        device, seq = i % devices + 1, i // devices
        ts = base + timedelta(microseconds=first + i)
        body = {"seq": seq, "ts": ts, "battery": 80.0, "rssi": -60}
        topic = f"campus/s{publisher + 1}/button/b{device}/status"
        out.append((topic, orjson.dumps(body, option=orjson.OPT_UTC_Z)))
    return out


# --- (a) throughput --------------------------------------------------------------------------


def run_throughput(
    stack: Stack, args: argparse.Namespace, started: threading.Event | None = None
) -> dict[str, Any]:
    """Publish --messages status messages from --publishers clients; wait for all points."""
    shares = split(args.messages, args.publishers)
    devices = max(1, args.devices // args.publishers)
    plans = [telemetry(p, n, devices, sum(shares[:p])) for p, n in enumerate(shares)]
    pubs = [Publisher(stack.broker.port, f"bench-load-{p}") for p in range(args.publishers)]
    try:
        note(f"throughput: publishing {args.messages} messages from {args.publishers} clients")
        t0_wall, t0 = publish_plans(pubs, plans, args.qos, started)
        acked, _ = poll_until(lambda: sum(p.acked for p in pubs), args.messages, 0.005)
        publish_s = max(p.done_at for p in pubs) - t0 if acked >= args.messages else None
        note("throughput: published; waiting for every point to be visible in InfluxDB")
        visible, at = poll_until(lambda: count_points(stack.influx), args.messages)
    finally:
        for pub in pubs:
            pub.close()
    errors = sum(p.errors for p in pubs)
    return throughput_figures(args, acked, errors, publish_s, visible, t0_wall, at)


def publish_plans(
    pubs: list[Publisher],
    plans: list[list[tuple[str, bytes]]],
    qos: int,
    started: threading.Event | None,
) -> tuple[float, float]:
    """One thread per publisher hands its plan to paho; returns the start (wall, perf)."""
    for pub, plan in zip(pubs, plans, strict=True):
        pub.target = len(plan)
    threads = [
        threading.Thread(target=pub.publish_all, args=(plan, qos), name=f"publisher-{i}")
        for i, (pub, plan) in enumerate(zip(pubs, plans, strict=True))
    ]
    t0_wall, t0 = time.time(), time.perf_counter()
    if started is not None:
        started.set()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return t0_wall, t0


def count_points(influx: InfluxDB) -> int:
    """Status points the gateway wrote so far (0 while InfluxDB does not answer)."""
    try:
        return influx.count_points(DB, "button_status")
    except (OSError, InfluxError):
        return 0


def throughput_figures(
    args: argparse.Namespace,
    acked: int,
    errors: int,
    publish_s: float | None,
    visible: int,
    t0_wall: float,
    visible_at: float | None,
) -> dict[str, Any]:
    """Rates from the raw times; None where the run did not get that far."""
    end_to_end_s = None if visible_at is None else visible_at - t0_wall
    return {
        "messages": args.messages,
        "publishers": args.publishers,
        "devices": args.devices,
        "qos": args.qos,
        "acked": acked,
        "publish_errors": errors,
        "publish_s": publish_s,
        "publish_rate_msg_s": args.messages / publish_s if publish_s else None,
        "points_visible": visible,
        "end_to_end_s": end_to_end_s,
        "end_to_end_msg_s": args.messages / end_to_end_s if end_to_end_s else None,
        "started_at": t0_wall,
        "ended_at": visible_at or time.time(),
    }


# --- (b) alarm latency -----------------------------------------------------------------------


def send_presses(pub: Publisher, count: int, rate: float) -> dict[Key, float]:
    """Publish `count` police presses at `rate` per second; the wall-clock send time of each."""
    sent: dict[Key, float] = {}
    pub.target = count
    start = time.perf_counter()
    for i in range(count):
        device, seq = f"p{i % PRESS_DEVICES + 1}", i // PRESS_DEVICES
        while (delay := start + i / rate - time.perf_counter()) > 0:
            pub.pump(delay)  # reads PUBACKs while waiting for the next press
        body = {"seq": seq, "ts": datetime.now(UTC), "event": "press", "category": "police"}
        payload = orjson.dumps(body, option=orjson.OPT_UTC_Z)
        sent[(device, seq)] = time.time()
        pub.publish(f"campus/{PRESS_SCHOOL}/button/{device}/event", payload, qos=1)
    return sent


def run_presses(stack: Stack, args: argparse.Namespace) -> tuple[dict[Key, float], list[Any]]:
    """Send the presses, wait until the police endpoint received them all (or stalled)."""
    note(f"latency: {args.presses} presses at {args.press_rate}/s")
    pub = Publisher(stack.broker.port, "bench-press", threaded=False)
    try:
        sent = send_presses(pub, args.presses, args.press_rate)
        poll_until(lambda: pub.pump(0.01), len(sent), 0)
    finally:
        pub.close()
    note("latency: all sent; waiting for the police endpoint to receive them")
    poll_until(lambda: police_unique(stack), len(sent))
    records: list[Any] = get_json(stack.police("/received"))["alarms"]
    return sent, records


def police_unique(stack: Stack) -> int:
    """Distinct alarms the police endpoint received so far (without fetching them)."""
    try:
        return int(get_json(stack.police("/count"))["unique_keys"])
    except (OSError, ValueError, KeyError):
        return 0


def first_arrivals(
    sent: dict[Key, float], records: list[Any]
) -> tuple[dict[Key, dict[str, Any]], int, int]:
    """The first record of each press sent, and the counts of later (duplicate) and
    unexpected records."""
    first: dict[Key, dict[str, Any]] = {}
    duplicates = unexpected = 0
    for record in records:
        alarm = record["alarm"]
        key = (alarm.get("device"), alarm.get("seq"))
        if alarm.get("school") != PRESS_SCHOOL or key not in sent:
            unexpected += 1
        elif key in first:
            duplicates += 1
        else:
            first[key] = record
    return first, duplicates, unexpected


def latency_figures(
    sent: dict[Key, float], records: list[Any], load_until: float | None = None
) -> dict[str, Any]:
    """Send -> police arrival per press, split at the gateway's `received_at` (its wall clock
    when it began handling the MQTT batch holding the press)."""
    first, duplicates, unexpected = first_arrivals(sent, records)
    total = {k: (r["at"] - sent[k]) * 1000 for k, r in first.items()}
    ingest = {k: (wall(r["alarm"]["received_at"]) - sent[k]) * 1000 for k, r in first.items()}
    figures: dict[str, Any] = {"sent": len(sent), "received": len(first)}
    figures |= {"missing": len(sent) - len(first), "duplicates": duplicates}
    figures |= {"unexpected": unexpected, **percentiles(list(total.values()))}
    figures["to_gateway"] = percentiles(list(ingest.values()))
    figures["in_gateway"] = percentiles([total[k] - ingest[k] for k in total])
    if load_until is not None:
        loaded = [v for k, v in total.items() if sent[k] <= load_until]
        figures["under_load"] = {"received": len(loaded), **percentiles(loaded)}
    return figures


def wall(iso: str) -> float:
    """An RFC 3339 time as time.time() seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max, in the values' unit; None when empty."""
    ordered = sorted(values)

    def rank(q: float) -> float | None:
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None

    return {"p50_ms": rank(0.50), "p90_ms": rank(0.90), "p99_ms": rank(0.99), "max_ms": rank(1)}


# --- running and reporting -------------------------------------------------------------------


def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """(a) then (b), or (b) during (a) with --with-load."""
    if not args.with_load:
        throughput = run_throughput(stack, args)
        return {"throughput": throughput, "latency": latency_figures(*run_presses(stack, args))}
    result: dict[str, Any] = {}
    started = threading.Event()

    def load() -> None:
        try:
            result["throughput"] = run_throughput(stack, args, started)
        except BaseException as exc:
            result["error"] = exc
            started.set()

    thread = threading.Thread(target=load, name="telemetry-load")
    thread.start()
    try:
        started.wait()
        sent, records = run_presses(stack, args)
    finally:
        thread.join()
    if "error" in result:
        raise result["error"]
    until = result["throughput"]["ended_at"]
    return {"throughput": result["throughput"], "latency": latency_figures(sent, records, until)}


def gateway_facts(stack: Stack) -> dict[str, Any]:
    """The gateway's own counters after the run, and whether it is still alive."""
    code = stack.gateway_exit()
    if code is not None:
        tail = log_tail(stack.root / "gateway.log", 40)
        return {"alive": False, "exit_code": code, "log_tail": tail}
    try:
        return {"alive": True, "stats": get_json(stack.api("/api/stats"))}
    except (OSError, ValueError) as exc:
        return {"alive": True, "stats_error": str(exc)}


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    """A number with its unit, or `n/a` when the run did not get that far."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def text_report(summary: dict[str, Any]) -> list[str]:
    """The header and one line per figure."""
    m, t, lat = summary["machine"], summary["throughput"], summary["latency"]
    load = " (alarm presses running alongside)" if summary["with_load"] else ""
    lines = [
        "campusgw pipeline benchmark",
        f"machine: {m['cpus']} CPUs, {m['platform']}, load average {m['load_average']}",
        f"python {m['python']}, paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}, "
        f"influxd {m['influxd']}, commit {m['commit']}",
        f"throughput{load}: {t['messages']} status messages, QoS {t['qos']}, "
        f"{t['publishers']} publishers, {t['devices']} devices",
        f"  publish rate (first publish -> last PUBACK): {fmt(t['publish_rate_msg_s'], ' msg/s')}",
        f"  end to end (first publish -> last point in InfluxDB): "
        f"{fmt(t['end_to_end_msg_s'], ' msg/s')} over {fmt(t['end_to_end_s'], ' s', 2)}",
        f"  points visible: {t['points_visible']} of {t['messages']}; acked {t['acked']}",
    ]
    return lines + latency_lines(lat, summary) + gateway_lines(summary["gateway"])


def latency_lines(lat: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Latency figures, ms: all presses, their two legs, and the under-load subset if any."""
    load = ", under telemetry load" if summary["with_load"] else ""
    lines = [
        f"alarm latency (press published -> police endpoint received){load}: "
        f"{summary['presses']} presses at {summary['press_rate']}/s, QoS 1",
        f"  sent {lat['sent']}, received {lat['received']}, missing {lat['missing']}, "
        f"duplicates {lat['duplicates']}, unexpected {lat['unexpected']}",
    ]
    rows = [
        ("latency", lat),
        ("  publish -> gateway ingest", lat["to_gateway"]),
        ("  gateway ingest -> police", lat["in_gateway"]),
    ]
    if "under_load" in lat:
        loaded = lat["under_load"]
        rows.append((f"latency of the {loaded['received']} sent while load ran", loaded))
    for name, p in rows:
        lines.append(
            f"  {name}: p50 {fmt(p['p50_ms'], ' ms')}, p90 {fmt(p['p90_ms'], ' ms')}, "
            f"p99 {fmt(p['p99_ms'], ' ms')}, max {fmt(p['max_ms'], ' ms')}"
        )
    return lines


def gateway_lines(gw: dict[str, Any]) -> list[str]:
    """The gateway's counters, or how it died."""
    if not gw["alive"]:
        return [f"gateway DIED with exit code {gw['exit_code']}; log tail:", gw["log_tail"]]
    stats = gw.get("stats", {})
    keys = ("messages_in", "points_written", "write_errors", "alarms_raised", "delivery_failures")
    shown = ", ".join(f"{k} {stats[k]}" for k in keys if k in stats)
    return [f"gateway counters: {shown or gw.get('stats_error', 'none')}"]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="bench/pipeline.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--messages", type=int, default=20000, help="status messages in (a) (default: 20000)")
    add("--publishers", type=int, default=4, help="MQTT clients publishing them (default: 4)")
    add("--devices", type=int, default=200, help="devices they are spread over (default: 200)")
    add("--qos", type=int, choices=(0, 1, 2), default=1, help="QoS of (a) (default: 1)")
    add("--presses", type=int, default=500, help="button presses in (b) (default: 500)")
    add("--press-rate", type=float, default=50.0, help="presses per second (default: 50)")
    add("--with-load", action="store_true", help="run (b) while (a) publishes, not after it")
    add("--json", action="store_true", help="print one JSON summary instead of text")
    add("--keep", action="store_true", help="keep the temp dir (configs, logs) and print it")
    return p


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Start the stack in root, measure, stop everything whatever happens."""
    summary: dict[str, Any] = {"machine": machine_facts(), "with_load": args.with_load}
    summary |= {"presses": args.presses, "press_rate": args.press_rate}
    stack = Stack(root)
    try:
        stack.start()
        summary |= measure(stack, args)
        summary["gateway"] = gateway_facts(stack)
    finally:
        stack.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 1 when a process could not be started or reached."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.messages, args.publishers, args.devices, args.presses, args.press_rate) <= 0:
        parser.error("counts and rates must be positive")
    if args.publishers > min(args.messages, args.devices):
        parser.error("--publishers must not exceed --messages nor --devices")
    tmp = tempfile.mkdtemp(prefix="campusgw-bench-")
    try:
        summary = run(args, Path(tmp))
    except BenchError as exc:
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
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(text_report(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
