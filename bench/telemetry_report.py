"""The text report of bench/telemetry.py: a table per consumer and QoS, verdicts, memory, soak."""

from __future__ import annotations

from typing import Any

from report import cpu_line, fmt, ratio, verdict

TARGETS = {0: 30_000.0, 1: 15_000.0}  # sustained msg/s, issue 7
P99_TARGET_MS = 50.0
PEER_RATIO_TARGET = 3.0
MEMORY_TARGET_MB = 150.0


def text_report(summary: dict[str, Any]) -> list[str]:
    """Header, each phase that ran, verdicts."""
    m, a = summary["machine"], summary["args"]
    lines = [
        "campusgw telemetry benchmark",
        f"machine: {m['cpus']} CPUs, {m['platform']}, load average {m['load_average']} "
        f"(at the start), {summary.get('load_after', 'n/a')} (at the end)",
        f"python {m['python']}, mosquitto {m['mosquitto']}, influxd {m['influxd']}, "
        f"commit {m['commit']}; peer: {summary.get('peer', 'n/a')}; took "
        f"{summary['elapsed_s']:.0f} s",
        f"other jobs on this machine before the run: {summary['busy_before_pct']:.0f} % of a core",
    ]
    if "fsync" in summary:
        f = summary["fsync"]
        lines.append(f"4 KiB write + fsync in the run's directory (the spool's disk): p50 "
                     f"{fmt(f['p50_ms'], ' ms', 2)}, p99 {fmt(f['p99_ms'], ' ms', 2)}")  # fmt: skip
    if a.get("gateway_set"):
        lines.append(f"gateway settings changed from the defaults: {', '.join(a['gateway_set'])}")
    for run in summary.get("steps", []):
        lines += consumer_lines(run, a)
    for qos in a["qos"] if summary.get("steps") else []:
        lines += verdict_lines(summary["steps"], qos)
    if "memory" in summary:
        lines += memory_lines(summary["memory"])
    if "soak" in summary:
        lines += soak_lines(summary["soak"])
    return lines


def consumer_lines(run: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """One consumer's steps at one QoS."""
    sub = (
        " (subscribes at QoS 0 whatever the load's QoS)"
        if run["consumer"] == "mqtt2influxdb"
        else ""
    )
    lines = [
        f"--- QoS {run['qos']} load -> {run['consumer']}{sub}: {args['publishers']} publishers, "
        f"{args['devices']:,} devices, {args['step_duration']:g} s per step",
        "  offered   published  end to end  backlog at end  not landed  "
        "delay p50 / p99 / max (probes)     kept up",
    ]
    for s in run["steps"]:
        lines += step_lines(s, run["consumer"])
    if run.get("error"):
        lines.append(f"  STOPPED: {run['error'].splitlines()[0]}")
    sus, cap = sustained(run), capacity(run)
    lines.append(
        f"  sustained (highest step kept up): {fmt(sus, ' msg/s', 0)}; most landed per second "
        f"in any step: {fmt(cap, ' msg/s', 0)}"
    )
    return lines


def step_lines(s: dict[str, Any], consumer: str) -> list[str]:
    """A step's row, its CPU line and (the gateway) its counters."""
    p, d = s["publish"], s["delay"]
    drain = "" if s["drain_s"] is None else f", all landed {s['drain_s']:.1f} s after"
    row = (
        f"  {s['rate']:>7,.0f}  {fmt(p['achieved_msg_s'], '', 0):>9}  "
        f"{fmt(s['end_to_end_msg_s'], '', 0):>10}  {s['backlog_at_end']:>14,}  "
        f"{s['lost_or_late']:>10,}  {fmt(d['p50_ms'], '', 0):>5} / {fmt(d['p99_ms'], '', 0):>5} / "
        f"{fmt(d['max_ms'], ' ms', 0):>8} ({d['probes']}/{d['probes_sent']})  "
        f"{'yes' if s['kept_up'] else 'NO'}"
    )
    extra = [f"    publishers: late ticks {p['late_ticks']}, behind at most "
             f"{p['max_behind_ms']:.0f} ms" + (f", acked {p['acked']:,}" if s["qos"] else "")
             + drain]  # fmt: skip
    c = s["consumer"]
    if c:
        extra.append(
            f"    gateway: messages in {c['messages_in']:,}, points written {c['points_written']:,}"
            f", pending max {fmt(c['points_pending_max'])}, holds {c['telemetry_holds']}, "
            f"rate limited {c['rate_limited']}, evicted {c['points_evicted']}, write errors "
            f"{c['write_errors']}, dead letters {c['dead_letters_in']}"
        )
    return [row, *extra, *cpu_line(s, "the step")]


def sustained(run: dict[str, Any]) -> float | None:
    """The offered rate of the highest step kept up (its achieved rate is in its row)."""
    full = [s for s in run["steps"] if (s["publish"]["achieved_msg_s"] or 0) >= 0.98 * s["rate"]]
    kept = [s["rate"] for s in full if s["kept_up"]]
    return max(kept, default=None)


def capacity(run: dict[str, Any]) -> float | None:
    """The most landed per second in any step's window."""
    rates = [s["end_to_end_msg_s"] for s in run["steps"] if s["end_to_end_msg_s"] is not None]
    return max(rates, default=None)


def all_kept_up(run: dict[str, Any]) -> bool:
    """True when the consumer kept up with every step (its sustained rate is a lower bound)."""
    return bool(run["steps"]) and all(s["kept_up"] for s in run["steps"]) and not run["error"]


def verdict_lines(runs: list[dict[str, Any]], qos: int) -> list[str]:
    """The issue's targets at one QoS, and the ratios to the peers."""
    by = {r["consumer"]: r for r in runs if r["qos"] == qos}
    gw = by.get("gateway")
    if gw is None:
        return []
    sus = sustained(gw)
    below = [s["delay"]["p99_ms"] for s in gw["steps"] if s["kept_up"] and s["rate"] < (sus or 0)]
    below = [p for p in below if p is not None]
    lines = [
        f"--- QoS {qos} verdicts",
        f"  gateway sustained: {fmt(sus, ' msg/s', 0)}"
        + (" (kept up with every step: at least this)" if all_kept_up(gw) else "")
        + verdict(None if sus is None else sus >= TARGETS[qos], f">= {TARGETS[qos]:,.0f} msg/s"),
        "  gateway p99 delay at the steps below saturation: "
        + (", ".join(f"{p:.0f}" for p in below) + " ms" if below else "n/a")
        + verdict(None if not below else max(below) <= P99_TARGET_MS, f"<= {P99_TARGET_MS:g} ms"),
    ]
    for peer in ("mosquitto_sub", "mqtt2influxdb"):
        if peer in by:
            lines.append(peer_line(gw, by[peer], peer))
    return lines


def peer_line(gw: dict[str, Any], peer: dict[str, Any], name: str) -> str:
    """gateway / peer, sustained and capacity, with what each figure is bound by."""
    bound = " (kept up with every step: a lower bound)" if all_kept_up(peer) else ""
    line = (
        f"  {name}: sustained {fmt(sustained(peer), ' msg/s', 0)}{bound}, most landed/s "
        f"{fmt(capacity(peer), '', 0)}; gateway / {name}: sustained "
        f"{ratio(sustained(gw), sustained(peer))}, most landed/s "
        f"{ratio(capacity(gw), capacity(peer))}"
    )
    if name == "mqtt2influxdb":
        s, p = sustained(gw), sustained(peer)
        ok = None if s is None or not p else s / p >= PEER_RATIO_TARGET
        line += verdict(ok, f">= {PEER_RATIO_TARGET:g}x")
    return line


def memory_lines(m: dict[str, Any]) -> list[str]:
    """The gateway's memory with the fleet reporting."""
    mb = {k: None if m[k] is None else m[k] / 1024 for k in
          ("rss_idle_kb", "rss_end_kb", "rss_max_kb", "hwm_kb")}  # fmt: skip
    worst = max((v for k, v in mb.items() if k in ("rss_max_kb", "hwm_kb") and v), default=None)
    p = m["publish"]
    return [
        f"--- memory: {m['devices']:,} devices each reporting every {m['interval_s']:g} s "
        f"({m['rate']:,.0f} msg/s, QoS 1) for {m['duration_s']:g} s",
        f"  published {p['published']:,} ({fmt(p['achieved_msg_s'], ' msg/s', 0)}), gateway "
        f"devices {fmt(m['gateway_devices'])}, points written {fmt(m['points_written'])}, "
        f"rate limited {fmt(m['rate_limited'])}",
        f"  gateway VmRSS: {fmt(mb['rss_idle_kb'], ' MB')} before the load, "
        f"{fmt(mb['rss_max_kb'], ' MB')} at most during it, {fmt(mb['rss_end_kb'], ' MB')} at "
        f"the end; VmHWM {fmt(mb['hwm_kb'], ' MB')}"
        + verdict(None if worst is None else worst < MEMORY_TARGET_MB, "< 150 MB"),
        *cpu_line(m, "the load"),
    ]


def soak_lines(s: dict[str, Any]) -> list[str]:
    """The soak's counts and the verdict."""
    p = s["publish"]
    drops = s["broker_drop_lines"]
    return [
        f"--- soak: {s['rate']:,.0f} msg/s QoS 1 for {s['minutes']:g} min, InfluxDB stopped "
        f"for {s['outage_s']:.0f} s in the middle",
        f"  sent {p['published']:,} ({fmt(p['achieved_msg_s'], ' msg/s', 0)}), acked by the "
        f"broker {p['acked']:,}, points in InfluxDB (exact count) {s['written']:,} "
        f"({s['counted_after_s']:.0f} s after the load ended)",
        f"  spool peak {s['spool_peak']:,} points; at the restart {fmt(s['pending_at_restart'])} "
        f"pending; drained (< 1 s of load pending) {fmt(s['drain_s'], ' s')} after the restart, "
        f"writing {fmt(s['drain_points_s'], ' points/s', 0)} meanwhile",
        f"  evicted {s['evicted']}, batches held (backpressure) {s['holds']:,}, write errors "
        f"{s['write_errors']:,}, rate limited {s['rate_limited']}, messages in "
        f"{s['messages_in']:,}",
        *([f"  broker log: {line}" for line in drops] or ["  broker log: no dropped messages"]),
        f"  points written = points sent: {'PASS' if s['passed'] else 'FAIL'}"
        + f" ({s['written'] - p['published']:+,})",
        *cpu_line(s, "the soak"),
    ]
