"""The bench's text report: one section per phase per run, then the ranges over the runs."""

from __future__ import annotations

from typing import Any

IDLE_P99_TARGET_MS = 20.0
LOADED_P99_TARGET_MS = 100.0
ALARMS_PER_S_TARGET = 2000.0


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    """A number with its unit, or `n/a` when the run did not get that far."""
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def verdict(ok: bool | None, target: str) -> str:
    """`[target ...: met]`, or NOT met, or n/a."""
    word = "n/a" if ok is None else "met" if ok else "NOT met"
    return f"  [target {target}: {word}]"


def pcts(p: dict[str, Any]) -> str:
    """p50, p90, p99 and max of a percentiles dict, ms."""
    return (
        f"p50 {fmt(p['p50_ms'], ' ms')}, p90 {fmt(p['p90_ms'], ' ms')}, "
        f"p99 {fmt(p['p99_ms'], ' ms')}, max {fmt(p['max_ms'], ' ms')}"
    )


def text_report(summary: dict[str, Any]) -> list[str]:
    """The header, every run, and the ranges when there was more than one run."""
    m, runs = summary["machine"], summary["runs"]
    lines = [
        "campusgw pipeline benchmark",
        f"machine: {m['cpus']} CPUs, {m['platform']}, load average {m['load_average']}",
        f"python {m['python']}, paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}, "
        f"influxd {m['influxd']}, commit {m['commit']}; took {summary['elapsed_s']:.0f} s",
    ]
    for i, run in enumerate(runs):
        lines.append(f"--- run {i + 1} of {len(runs)}")
        lines += run_lines(run, summary["args"])
    if len(runs) > 1:
        lines += range_lines(runs)
    return lines


def run_lines(run: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """Each phase that ran, in order."""
    lines = [f"other jobs on this machine before the run: {run['busy_before_pct']:.0f} % of a core"]
    lines += fsync_lines(run) + throughput_lines(run.get("throughput"))
    if "idle" in run:
        head = f"alarm latency, idle: {args['presses']} presses at {args['press_rate']:g}/s, QoS 1"
        lines += latency_lines(head, run["idle"], IDLE_P99_TARGET_MS) + cpu_line(run["idle"])
    for loaded in run.get("loaded", []):
        lines += loaded_lines(loaded, args)
    if "vqd" in run:
        lines += vqd_lines(run["vqd"], run.get("idle"), args)
    if "rate" in run:
        lines += rate_lines(run["rate"])
    if "gateway" in run:
        keys = ("messages_in", "points_written", "points_pending", "write_errors",
                "alarms_total", "alarms_raised", "deliveries_ok", "delivery_failures",
                "store_errors", "dead_letters")  # fmt: skip
        shown = ", ".join(f"{k} {fmt(run['gateway'][k])}" for k in keys if k in run["gateway"])
        lines.append(f"gateway counters at the end: {shown}")
    return lines


def cpu_line(figures: dict[str, Any], during: str = "the phase") -> list[str]:
    """Each process's share of one core, biggest first, `other` last."""
    cpu = figures.get("cpu_pct")
    if not cpu:
        return []
    ours = sorted(((v, n) for n, v in cpu.items() if n != "other"), reverse=True)
    shown = ", ".join(f"{n} {v:.0f}" for v, n in ours)
    warn = "  (SHARED MACHINE BUSY: figures skewed)" if cpu.get("other", 0) > 15 else ""
    return [f"  CPU, % of one core during {during}: {shown}; other jobs {cpu['other']:.0f}{warn}"]


def fsync_lines(run: dict[str, Any]) -> list[str]:
    """The durable-commit floor."""
    if "fsync" not in run:
        return []
    f, c = run["fsync"], run["sqlite_commit"]
    return [
        f"durable commit cost on this disk ({f['samples']} samples each):",
        f"  4 KiB write + fsync: {pcts(f)}",
        f"  SQLite WAL synchronous=FULL one-row commit: {pcts(c)}",
    ]


def throughput_lines(t: dict[str, Any] | None) -> list[str]:
    """Burst throughput."""
    if t is None:
        return []
    return [
        f"throughput (burst): {fmt(t['messages'])} status messages, QoS {t['qos']}, "
        f"{t['publishers']} publishers, {t['devices']} devices",
        f"  publish rate (first publish -> last PUBACK): {fmt(t['publish_rate_msg_s'], ' msg/s')}",
        f"  end to end (first publish -> last point in InfluxDB): "
        f"{fmt(t['end_to_end_msg_s'], ' msg/s')} over {fmt(t['end_to_end_s'], ' s', 2)}",
        f"  points visible: {fmt(t['points_visible'])} of {fmt(t['messages'])}; "
        f"acked {fmt(t['acked'])}",
        *cpu_line(t),
    ]


def latency_lines(head: str, lat: dict[str, Any], target_ms: float) -> list[str]:
    """Latency of presses: counts, total with its verdict, and the two legs."""
    p99 = lat["p99_ms"]
    ok = None if p99 is None else p99 <= target_ms and lat["missing"] == 0
    return [
        head,
        f"  sent {lat['sent']}, received {lat['received']}, missing {lat['missing']}, "
        f"duplicates {lat['duplicates']}, unexpected {lat['unexpected']}",
        f"  press published -> police received: {pcts(lat)}"
        + verdict(ok, f"p99 <= {target_ms:g} ms"),
        f"    publish -> gateway ingest: {pcts(lat['to_gateway'])}",
        f"    gateway ingest -> police:  {pcts(lat['in_gateway'])}",
    ]


def loaded_lines(r: dict[str, Any], args: dict[str, Any]) -> list[str]:
    """Latency under a paced load, the load achieved and what the gateway did with it."""
    load, gw = r["load"], r["gateway"]
    acked = "" if load["qos"] == 0 else f", acked {fmt(load['acked'])}"
    head = (
        f"alarm latency under load: telemetry QoS {load['qos']}, target "
        f"{fmt(load['rate_target'], ' msg/s', 0)} for {load['duration_s']:g} s from "
        f"{load['publishers']} clients; presses at {args['press_rate']:g}/s, QoS 1"
    )
    return [
        head,
        f"  load achieved: {fmt(load['achieved_msg_s'], ' msg/s', 0)} (published "
        f"{fmt(load['published'])}{acked}, errors {load['errors']}, late ticks "
        f"{load['late_ticks']}, schedule behind at most {fmt(load['max_behind_ms'], ' ms')})",
        *latency_lines("", r["latency"], LOADED_P99_TARGET_MS)[1:],
        f"  gateway: messages in {fmt(gw['messages_in'])}, points written "
        f"{fmt(gw['points_written'])}, write rate {fmt(gw['write_rate_msg_s'], ' msg/s', 0)}, "
        f"points pending max {fmt(gw['points_pending_max'])} (at load end "
        f"{fmt(gw['points_pending_at_load_end'])}), settled {fmt(gw['drain_s'], ' s')} after "
        f"the load ended",
        *cpu_line(r, "the load"),
    ]


def vqd_lines(r: dict[str, Any], idle: dict[str, Any] | None, args: dict[str, Any]) -> list[str]:
    """Latency while the video checks are saturated, beside the idle figures of the same run."""
    pub, gw, cap = r["publish"], r["gateway"], r["capacity_s"]
    why = "--vqd-rate" if cap is None else f"{r['rate_factor']:g}x the {cap:.0f}/s calibrated"
    full = gw["intervals"] > 0 and gw["intervals_skipping"] == gw["intervals"]
    what = (
        "CONTROL, snapshots received but not checked (video_quality.enabled = false)"
        if r.get("checks_off")
        else "video quality diagnosis is saturated"
    )
    return [
        f"alarm latency while {what}: {pub['cameras']} cameras, "
        f"1080p JPEG q70 ({r['jpeg_kb']:.0f} KB average, {pub['frames_per_camera']} frames "
        f"each), {fmt(r['rate'], '/s', 0)} ({why}) for {pub['duration_s']:g} s, QoS 0; "
        f"presses at {args['press_rate']:g}/s, QoS 1",
        f"  snapshots: published {fmt(pub['published'])} ({fmt(pub['achieved_s'], '/s', 0)}, "
        f"late ticks {pub['late_ticks']}), received {fmt(gw['snapshots_in'])}, checked "
        f"{fmt(gw['snapshots_checked'])}, skipped {fmt(gw['snapshots_skipped'])}, video "
        f"troubles {gw['video_troubles']}, dead letters {gw['dead_letters_in']}",
        f"  checks: {fmt(gw['checked_s'], '/s', 0)} during the presses"
        + ("" if cap is None else f" = {ratio(gw['checked_s'], cap)} the calibrated capacity")
        + f"; snapshots skipped in {gw['intervals_skipping']} of {gw['intervals']} half-second "
        + ("samples: saturated throughout" if full else "samples: NOT saturated throughout"),
        *latency_lines("", r["latency"], IDLE_P99_TARGET_MS)[1:],
        *beside_idle(r["latency"], idle),
        *cpu_line(r, "the snapshots"),
    ]


def beside_idle(lat: dict[str, Any], idle: dict[str, Any] | None) -> list[str]:
    """The same run's idle latency and the ratios, percentile by percentile."""
    if idle is None:
        return ["  idle latency of this run: n/a (the idle phase did not run)"]
    keys = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
    ratios = ", ".join(f"{k[:-3]} {ratio(lat[k], idle[k])}" for k in keys)
    return [f"  idle, same run:                  {pcts(idle)}", f"  saturated / idle: {ratios}"]


def ratio(a: float | None, b: float | None) -> str:
    """a / b as `1.23x`, or n/a."""
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def rate_lines(r: dict[str, Any]) -> list[str]:
    """Alarm throughput with durable commits, and the count checks."""
    stored_ok = None if r["stored_per_s"] is None else r["stored_per_s"] >= ALARMS_PER_S_TARGET
    ok = (
        r["acked"] == r["expected"] == r["stored"] == r["unique_keys"] == r["unique_presses"]
        and r["duplicates_stored"] == 0
    )
    return [
        f"alarm rate: {fmt(r['alarms'])} presses (distinct device and seq), QoS 1, "
        f"{r['publishers']} clients, as fast as they go",
        f"  publish (first publish -> last PUBACK): {fmt(r['publish_msg_s'], ' msg/s', 0)}",
        f"  stored (-> /api/stats alarms_total +N, polled every 0.2 s): "
        f"{fmt(r['stored_per_s'], ' alarms/s', 0)} "
        f"over {fmt(r['stored_s'], ' s', 2)}" + verdict(stored_ok, ">= 2,000/s"),
        f"  delivered (-> police has N distinct keys): "
        f"{fmt(r['delivered_per_s'], ' alarms/s', 0)} over {fmt(r['delivered_s'], ' s', 2)}",
        f"  checks: sent {fmt(r['expected'])}, acked {fmt(r['acked'])}, stored "
        f"{fmt(r['stored'])}, distinct Idempotency-Keys delivered {fmt(r['unique_keys'])}, "
        f"presses delivered {fmt(r['unique_presses'])}, duplicates stored "
        f"{r['duplicates_stored']}, repeated POSTs {r['repeated_posts']}: "
        + ("OK" if ok else "MISMATCH"),
        f"  gateway ingest -> police while saturated: {pcts(r['in_gateway'])}",
        *cpu_line(r),
    ]


def headline(run: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(label, value, unit) of each headline figure of one run."""
    rows: list[tuple[str, Any, str]] = []
    if "fsync" in run:
        rows += [("fsync p50", run["fsync"]["p50_ms"], " ms"),
                 ("SQLite commit p50", run["sqlite_commit"]["p50_ms"], " ms")]  # fmt: skip
    if "throughput" in run:
        rows.append(("throughput end to end", run["throughput"]["end_to_end_msg_s"], " msg/s"))
    if "idle" in run:
        rows += [("idle latency p50", run["idle"]["p50_ms"], " ms"),
                 ("idle latency p99", run["idle"]["p99_ms"], " ms")]  # fmt: skip
    for r in run.get("loaded", []):
        q = f"QoS {r['qos']} load"
        rows += [(f"{q}: achieved rate", r["load"]["achieved_msg_s"], " msg/s"),
                 (f"{q}: latency p50", r["latency"]["p50_ms"], " ms"),
                 (f"{q}: latency p99", r["latency"]["p99_ms"], " ms")]  # fmt: skip
    if "vqd" in run:
        v, idle = run["vqd"], run.get("idle") or {}
        rows += [("vqd: checks/s", v["gateway"]["checked_s"], " /s"),
                 ("vqd: skipped", v["gateway"]["snapshots_skipped"], ""),
                 ("vqd: latency p50", v["latency"]["p50_ms"], " ms"),
                 ("vqd: latency p99", v["latency"]["p99_ms"], " ms"),
                 ("vqd: latency max", v["latency"]["max_ms"], " ms")]  # fmt: skip
        if idle.get("p99_ms") and v["latency"]["p99_ms"] is not None:
            rows.append(("vqd: p99 / idle p99", v["latency"]["p99_ms"] / idle["p99_ms"], "x"))
    if "rate" in run:
        rows += [("alarms stored", run["rate"]["stored_per_s"], " /s"),
                 ("alarms delivered", run["rate"]["delivered_per_s"], " /s")]  # fmt: skip
    return rows


def range_lines(runs: list[dict[str, Any]]) -> list[str]:
    """min - max of each headline figure over the runs (n/a runs are left out)."""
    table: dict[str, tuple[list[float], str]] = {}
    for run in runs:
        for label, value, unit in headline(run):
            values, _ = table.setdefault(label, ([], unit))
            if value is not None:
                values.append(value)
    lines = [f"--- ranges over {len(runs)} runs (min - max)"]
    for label, (values, unit) in table.items():
        digits = 0 if unit.endswith("/s") else 2
        span = f"{fmt(min(values), '', digits)} - {fmt(max(values), unit, digits)}"
        lines.append(f"  {label}: {span if values else 'n/a'} ({len(values)} runs)")
    return lines
