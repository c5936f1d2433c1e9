"""Benchmark of the whole pipeline: durable-commit cost, telemetry throughput, alarm latency idle
and under a paced telemetry load, and alarms per second with durable commits.

Starts its own mosquitto, influxd, police endpoint (bench/endpoint.py, answers 200) and gateway
(`python -m gateway run`) as subprocesses on free loopback ports in a temp dir, drives them over
MQTT, prints figures and stops every process it started, by PID. Never run as a test. Phases,
in this order (--phases picks some; the gateway settles between them):

fsync       4 KiB write+fsync, and one SQLite WAL synchronous=FULL commit, p50/p99, timed in
            the store's directory: the floor under every alarm commit.
throughput  --messages status messages published as fast as paho takes them by --publishers
            clients; then InfluxDB is polled until it holds every point. Publish rate (first
            publish -> last PUBACK) and end-to-end rate (-> last point counted in InfluxDB).
idle        --presses police presses, QoS 1, paced at --press-rate by one client. Latency is
            the police endpoint's time.time() at the POST's arrival minus the bench's
            time.time() just before publishing, split at the gateway's `received_at`.
load        for each --load-qos: bench/load.py (a child process) publishes --load-rate status
            msg/s for --load-duration s from --load-publishers clients, paced per 10 ms tick;
            presses at --press-rate run from 1 s after it starts to 1 s before it ends.
            Prints the achieved load rate, latency, the gateway's counters (messages in, points
            written, write rate, points pending, drain time) and each process's CPU share.
vqd         bench/snapshots.py (a child process) publishes 1080p JPEG snapshots (quality 70,
            --vqd-frames distinct frames per camera, cycled) from --vqd-cameras cameras, QoS 0,
            for --vqd-duration s at --vqd-rate/s, by default at twice the rate the gateway's
            video-quality pool (default workers) checked in a 6 s calibration before, so that
            the pool stays saturated. Presses as in `load`. Prints snapshots published,
            received, checked and skipped, checks/s against the calibrated capacity, whether
            snapshots were skipped in every half-second sample (saturated throughout), each
            process's CPU share and the latency beside the idle phase's of the same run.
            --vqd-off: a control, the gateway receives the snapshots but checks none.
rate        --alarms presses (distinct device and seq) from --alarm-publishers clients, QoS 1,
            as fast as they go: time until /api/stats shows them all stored, and until the
            police endpoint has them all (distinct Idempotency-Keys); then checks the counts.

Every phase also prints each process's share of a core and what other jobs on this machine
used meanwhile: on a shared 2-core machine another job skews latency badly, so those lines are
flagged. Percentiles are nearest rank. --runs N repeats everything on a fresh stack and ends
with the range (min - max) of each headline figure. The default takes about 2 minutes.

    .venv/bin/python bench/pipeline.py                        # every phase, once
    .venv/bin/python bench/pipeline.py --runs 3               # three runs and their ranges
    .venv/bin/python bench/pipeline.py --phases idle,load --load-qos 1 --load-duration 60
    .venv/bin/python bench/pipeline.py --json                 # one JSON summary on stdout
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from alarmrate import run_rate
from harness import (
    DB,
    BenchError,
    CpuWindow,
    Publisher,
    Stack,
    machine_facts,
    note,
    poll_until,
    publish_plans,
    split,
    wait_quiet,
)
from latency import latency_figures, run_presses
from loaded import run_loaded, settle
from probes import fsync_cost, sqlite_commit_cost
from report import text_report
from vqdloaded import run_vqd

from simulators.servers import InfluxDB, InfluxError, log_tail

PHASES = ("fsync", "throughput", "idle", "load", "vqd", "rate")


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


def run_throughput(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Publish --messages status messages from --publishers clients; wait for all points."""
    shares = split(args.messages, args.publishers)
    devices = max(1, args.devices // args.publishers)
    plans = [telemetry(p, n, devices, sum(shares[:p])) for p, n in enumerate(shares)]
    pubs = [Publisher(stack.broker.port, f"bench-tp-{p}") for p in range(args.publishers)]
    points0 = count_points(stack.influx)
    try:
        note(f"throughput: publishing {args.messages} messages from {args.publishers} clients")
        t0_wall, t0 = publish_plans(pubs, plans, args.qos)
        acked, _ = poll_until(lambda: sum(p.acked for p in pubs), args.messages, 0.005)
        publish_s = max(p.done_at for p in pubs) - t0 if acked >= args.messages else None
        note("throughput: published; waiting for every point to be visible in InfluxDB")
        visible, at = poll_until(lambda: count_points(stack.influx) - points0, args.messages)
    finally:
        for pub in pubs:
            pub.close()
    end_to_end_s = None if at is None else at - t0_wall
    return {
        "messages": args.messages, "publishers": args.publishers, "devices": args.devices,
        "qos": args.qos, "acked": acked, "publish_errors": sum(p.errors for p in pubs),
        "publish_rate_msg_s": args.messages / publish_s if publish_s else None,
        "points_visible": visible, "end_to_end_s": end_to_end_s,
        "end_to_end_msg_s": args.messages / end_to_end_s if end_to_end_s else None,
    }  # fmt: skip


def count_points(influx: InfluxDB) -> int:
    """Status points the gateway wrote so far (0 while InfluxDB does not answer)."""
    try:
        return influx.count_points(DB, "button_status")
    except (OSError, InfluxError):
        return 0


def run_phases(stack: Stack, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The stack's phases in order, each after the gateway settled from the one before."""
    if "throughput" in args.phases:
        out["throughput"] = with_cpu(stack, args, lambda: run_throughput(stack, args))
    if "idle" in args.phases:
        out["idle"] = with_cpu(stack, args, lambda: idle_latency(stack, args))
    if "load" in args.phases:
        out["loaded"] = []
        for qos in args.load_qos:
            quiet(stack, args)
            out["loaded"].append(run_loaded(stack, args, qos))
    if "vqd" in args.phases:
        quiet(stack, args)
        out["vqd"] = run_vqd(stack, args)
    if "rate" in args.phases:
        out["rate"] = with_cpu(stack, args, lambda: run_rate(stack, args))


def quiet(stack: Stack, args: argparse.Namespace) -> None:
    """With --quiet-wait, wait for other jobs on this machine to calm down before a phase."""
    if args.quiet_wait > 0:
        other = wait_quiet(args.quiet_wait, stack.pids())
        if other >= 15:
            note(f"other jobs still use {other:.0f} % of a core; going on")


def with_cpu(
    stack: Stack, args: argparse.Namespace, phase: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run a phase, add each process's CPU share during it, let the gateway settle."""
    quiet(stack, args)
    window = CpuWindow(stack)
    figures = phase() | {"cpu_pct": window.shares()}
    settle(stack)
    return figures


def idle_latency(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Presses with nothing else going on."""
    return latency_figures(*run_presses(stack, "idle", args.presses, args.press_rate))


def run_once(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One run on a fresh stack in root; every process is stopped whatever happens."""
    out: dict[str, Any] = {"busy_before_pct": wait_quiet(args.quiet_wait, {})}
    if out["busy_before_pct"] > 15:
        note(f"this machine is busy: {out['busy_before_pct']:.0f} % of a core before the run")
    if "fsync" in args.phases:
        note("fsync: timing write+fsync and SQLite commits next to the store")
        out["fsync"] = fsync_cost(root / "gateway", args.fsync_samples)
        out["sqlite_commit"] = sqlite_commit_cost(root / "gateway", args.fsync_samples)
    if set(args.phases) == {"fsync"}:
        return out
    stack = Stack(root, video_settings(args))
    try:
        stack.start()
        try:
            run_phases(stack, args, out)
        except BenchError as exc:
            if stack.gateway_exit() is not None:
                tail = log_tail(root / "gateway.log", 40)
                raise BenchError(f"{exc}\ngateway DIED ({stack.gateway_exit()}):\n{tail}") from exc
            raise
        out["gateway"] = stack.stats()
    finally:
        stack.stop()
    return out


def video_settings(args: argparse.Namespace) -> dict[str, bool | int | str]:
    """The gateway's [video_quality] settings that --vqd-workers, --vqd-worker-nice,
    --vqd-worker-kind and --vqd-off change."""
    video: dict[str, bool | int | str] = {"enabled": not args.vqd_off}
    if args.vqd_worker_nice is not None:
        video["worker_nice"] = args.vqd_worker_nice
    if args.vqd_worker_kind is not None:
        video["worker_kind"] = args.vqd_worker_kind
    if args.vqd_workers is not None:
        video["workers"] = args.vqd_workers
    return video


def phase_list(text: str) -> list[str]:
    """--phases: a comma-separated subset of PHASES."""
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"choose from {','.join(PHASES)}; got {text!r}")
    return phases


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="bench/pipeline.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--phases", type=phase_list, default=list(PHASES),
        help=f"comma-separated phases to run (default: {','.join(PHASES)})")  # fmt: skip
    add("--runs", type=int, default=1, help="repeat on a fresh stack; print ranges (default: 1)")
    add("--fsync-samples", type=int, default=200, help="fsync and commit samples (default: 200)")
    add("--messages", type=int, default=20000, help="throughput: messages (default: 20000)")
    add("--publishers", type=int, default=4, help="throughput: MQTT clients (default: 4)")
    add("--devices", type=int, default=200, help="throughput: devices (default: 200)")
    add("--qos", type=int, choices=(0, 1, 2), default=1, help="throughput: QoS (default: 1)")
    add("--presses", type=int, default=500, help="idle: presses (default: 500)")
    add("--press-rate", type=float, default=50.0, help="idle, load: presses/s (default: 50)")
    add("--load-rate", type=float, default=10000.0, help="load: status msg/s (default: 10000)")
    add("--load-duration", type=float, default=20.0, help="load: seconds (default: 20)")
    add("--load-qos", type=int, nargs="+", choices=(0, 1), default=[0, 1],
        help="load: QoS of the load, one load phase each (default: 0 1)")  # fmt: skip
    add("--load-publishers", type=int, default=4, help="load: MQTT clients (default: 4)")
    add("--load-devices", type=int, default=1000, help="load: devices (default: 1000)")
    add("--vqd-cameras", type=int, default=16, help="vqd: cameras (default: 16)")
    add("--vqd-frames", type=int, default=12, help="vqd: distinct frames per camera (default: 12)")
    add("--vqd-rate", type=float, default=None,
        help="vqd: snapshots/s, all cameras (default: twice the calibrated capacity)")  # fmt: skip
    add("--vqd-duration", type=float, default=20.0, help="vqd: seconds (default: 20)")
    add("--vqd-worker-nice", type=int, choices=range(20), default=None, metavar="N",
        help="the gateway's video_quality.worker_nice (default: the gateway's)")  # fmt: skip
    add("--vqd-workers", type=int, default=None, metavar="N",
        help="the gateway's video_quality.workers (default: the gateway's)")  # fmt: skip
    add("--vqd-worker-kind", choices=("process", "thread"), default=None,
        help="the gateway's video_quality.worker_kind (default: the gateway's)")  # fmt: skip
    add("--vqd-off", action="store_true",
        help="vqd: a control: the gateway receives the snapshots but does not check them "
        "(video_quality.enabled = false; needs --vqd-rate)")  # fmt: skip
    add("--alarms", type=int, default=20000, help="rate: presses (default: 20000)")
    add("--alarm-publishers", type=int, default=4, help="rate: MQTT clients (default: 4)")
    add("--alarm-devices", type=int, default=2000, help="rate: devices (default: 2000)")
    add("--quiet-wait", type=float, default=0.0, metavar="S",
        help="before each run and phase wait up to S s for this machine's other jobs to use "
        "< 15 %% of a core (default: 0: measure 1 s before the run and go on)")  # fmt: skip
    add("--json", action="store_true", help="print one JSON summary instead of text")
    add("--keep", action="store_true", help="keep the temp dir (configs, logs) and print it")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject values no run can use."""
    counts = ("runs", "fsync_samples", "messages", "publishers", "devices", "presses",
              "press_rate", "load_rate", "load_publishers", "load_devices", "alarms",
              "alarm_publishers", "alarm_devices", "vqd_cameras", "vqd_frames")  # fmt: skip
    bad = [f"--{c.replace('_', '-')}" for c in counts if getattr(args, c) <= 0]
    if bad:
        parser.error(f"{', '.join(bad)} must be positive")
    if args.publishers > min(args.messages, args.devices):
        parser.error("--publishers must not exceed --messages nor --devices")
    if args.load_duration <= 2.5:
        parser.error("--load-duration must exceed 2.5 s (presses skip its first and last 1 s)")
    if args.vqd_duration <= 2.5:
        parser.error("--vqd-duration must exceed 2.5 s (presses skip its first and last 1 s)")
    if args.vqd_rate is not None and args.vqd_rate <= 0:
        parser.error("--vqd-rate must be positive")
    if args.vqd_off and args.vqd_rate is None:
        parser.error("--vqd-off needs --vqd-rate: with no checks there is no capacity to measure")
    if args.alarm_publishers > min(args.alarms, args.alarm_devices):
        parser.error("--alarm-publishers must not exceed --alarms nor --alarm-devices")


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 1 when a process could not be started or reached."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    summary: dict[str, Any] = {"machine": machine_facts(), "args": vars(args), "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="campusgw-bench-"))
    started = time.monotonic()
    try:
        for i in range(args.runs):
            note(f"run {i + 1} of {args.runs}")
            summary["runs"].append(run_once(args, tmp / f"run{i + 1}"))
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
    summary["elapsed_s"] = time.monotonic() - started
    print(json.dumps(summary, indent=2) if args.json else "\n".join(text_report(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
