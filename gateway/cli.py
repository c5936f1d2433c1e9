"""`campusgw`: the gateway, its simulators and its tools, one subcommand each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import importlib
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.config import ConfigError, Settings, load_settings
from gateway.registry import Registry

DESCRIPTION = """\
Campus security gateway: device messages from MQTT to InfluxDB, alarms to police/fire.

Start here: `make demo` runs the whole system on this machine; `campusgw run --config FILE`
runs the gateway alone (see campusgw.example.toml).
"""

# Subcommands that live in simulators/ (which never import the gateway): module per command.
SIMULATOR_COMMANDS = {
    "simulate": ("simulators.fleet", "run a fleet of school devices publishing over MQTT"),
    "linkage-sim": ("simulators.linkage", "police/fire HTTP endpoints that record alarms"),
    "dc09-sim": ("simulators.dc09", "an SIA DC-09 alarm receiver with fault modes"),
    "demo": ("simulators.demo", "bring up broker, database, gateway and simulators"),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="campusgw", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the gateway", description="Run the gateway.")
    run.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    check = sub.add_parser("check-config", help="validate a config file and print the result")
    check.add_argument("--config", type=Path, help="TOML config file")
    schemas = sub.add_parser("schemas", help="write the device JSON Schemas (docs/schemas/)")
    schemas.add_argument("--out", type=Path, default=Path("docs/schemas"), help="output folder")
    sub.add_parser("drivers", help="list the device drivers (built-in and plugins)")
    audit = sub.add_parser(
        "audit", help="check the alarm audit log", description="Walk the hash-chained audit "
        "log in the alarm store; exit 1 when a row was changed or deleted.",
    )  # fmt: skip
    audit.add_argument("action", choices=["verify"], help="verify: check every row's hash")
    audit.add_argument("--config", type=Path, help="TOML config file (its store.path is used)")
    audit.add_argument("--store", type=Path, help="the SQLite alarm store, instead of --config")
    _registry_parser(sub)
    _storage_parser(sub)
    _api_parsers(sub)
    for name, (module, text) in SIMULATOR_COMMANDS.items():
        child = sub.add_parser(name, help=text, description=text)
        importlib.import_module(module).build_parser(child)
    sub.choices["simulate"].epilog = (
        "Also: `campusgw simulate registry --help` generates a sample registry; "
        "`campusgw simulate cameras --help` runs cameras sending JPEG snapshots with video faults."
    )
    return parser


def _api_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api_help = "gateway API base URL (default: %(default)s)"
    cov = sub.add_parser(
        "coverage", help="print the coverage rates of a running gateway",
        description="The bureaus' coverage rates (docs/coverage.md) from a running gateway.",
    )  # fmt: skip
    cov.add_argument(
        "--level", choices=["school", "county", "prefecture", "all"], default="county",
        help="one row per unit of this level (default: county)",
    )  # fmt: skip
    cov.add_argument("--csv", action="store_true", help="CSV instead of a table")
    cov.add_argument("--api", default="http://127.0.0.1:8000", help=api_help)
    tests = sub.add_parser(
        "test-alarms", help="raise end-to-end test alarms from schools' gatehouse buttons",
        description="Each school's gatehouse button raises a test alarm that goes to the test "
        "channel of its linkage endpoints (never a real 110/119 call); a confirmed test makes "
        "the school count as networked with the police. Run it from cron on a schedule.",
    )  # fmt: skip
    tests.add_argument(
        "--school", action="append", default=[],
        help="a school id (repeatable; default: every registered school)",
    )  # fmt: skip
    tests.add_argument("--operator", default=getpass.getuser(), help="who runs the test")
    tests.add_argument(
        "--wait", type=float, default=30, metavar="S",
        help="wait this long for confirmations (default: %(default)s; 0: don't)",
    )  # fmt: skip
    tests.add_argument("--api", default="http://127.0.0.1:8000", help=api_help)
    tests.add_argument(
        "--every", type=float, default=0, metavar="HOURS",
        help="repeat every HOURS until stopped, a schedule without cron (default: once)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"] and argv[1:2] and argv[1] in _SIMULATE_SUBCOMMANDS:
        return _simulate_sub(argv[1], argv[2:])
    args = build_parser().parse_args(argv)
    if args.command in SIMULATOR_COMMANDS:
        code: int = importlib.import_module(SIMULATOR_COMMANDS[args.command][0]).run(args)
        return code
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"campusgw: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    _setup_logging(settings)
    from gateway import runtime  # heavy imports only for the command that needs them

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runtime.run(settings))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(settings.model_dump_json(indent=2))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from gateway import schemas

    for path in schemas.write(args.out):
        print(path)
    return 0


def _drivers(args: argparse.Namespace) -> int:
    import drivers

    drivers.load_plugins()
    for name, driver in sorted(drivers.REGISTRY.items()):
        print(f"{name:16} {driver.kind:7} {driver.description}")
    return 0


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _audit(args: argparse.Namespace) -> int:
    from gateway.storage.sqlite import SqliteAlarmStore

    path = args.store or load_settings(args.config).store.path
    if not path.exists():
        raise ConfigError(f"store.path: {path} does not exist")

    async def verify() -> tuple[list[str], tuple[int, str]]:
        async with SqliteAlarmStore(path) as store:
            return await store.verify_audit()

    problems, (rows, head) = asyncio.run(verify())
    for problem in problems:
        print(f"BROKEN {problem}")
    state = f"{len(problems)} problem(s)" if problems else "intact"
    print(f"audit log {state}: {rows} rows in {path}, head {head}")
    return 1 if problems else 0


def _storage_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.storage.influx_init import duration

    storage = sub.add_parser(
        "storage", help="set up the telemetry database: retention and 5-minute downsampling",
        description="init, v1 API: create the database, the retention policies raw (default) "
        "and downsampled, and a continuous query per measurement keeping 5-minute means; "
        "idempotent (docs/storage.md). v2 API: print what to set up on the server.",
    )  # fmt: skip
    storage.add_argument("action", choices=["init"], help="init: create what is missing")
    storage.add_argument("--config", type=Path, help="TOML config file (its [influxdb])")
    keep = "keep %s this long, e.g. 90d, 12w, INF (default: influxdb.%s)"
    storage.add_argument("--retention", type=duration, metavar="DURATION",
                         help=keep % ("raw points", "retention"))  # fmt: skip
    storage.add_argument("--downsample-retention", type=duration, metavar="DURATION",
                         help=keep % ("5-minute means", "downsample_retention"))  # fmt: skip
    storage.add_argument("--dry-run", action="store_true", help="print the InfluxQL only")


def _storage(args: argparse.Namespace) -> int:
    from gateway.storage import influx_init

    influx = load_settings(args.config).influxdb
    retention = args.retention or influx.retention
    downsample = args.downsample_retention or influx.downsample_retention
    return influx_init.run(influx, retention, downsample, args.dry_run, print)


# --- registry (issue 5): import, export, show ----------------------------------------------------


def _registry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser(
        "registry", help="import, export or show the registry of schools and devices",
        description="The registry: which schools exist and which devices each must have "
        "(docs/registry.md). It is kept in the SQLite file store.registry_path.",
    )  # fmt: skip
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = actions.add_parser(
        "import", help="replace the registry with the files' content (or --merge it in)",
        description="Validate the files (all or nothing: any bad row refuses the import and "
        "every problem is listed with file and line), then replace the stored registry.",
    )  # fmt: skip
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE",
                     help="a registry .yaml, schools.csv and devices.csv, or a folder")  # fmt: skip
    imp.add_argument("--merge", action="store_true",
                     help="add and update; keep what the files do not name")  # fmt: skip
    imp.add_argument("--dry-run", action="store_true", help="validate only; change nothing")
    exp = actions.add_parser("export", help="write the registry as YAML or CSV")
    exp.add_argument("--format", choices=("yaml", "csv"), default="yaml",
                     help="yaml: one file; csv: schools.csv, devices.csv")  # fmt: skip
    exp.add_argument("--out", type=Path, metavar="DIR_OR_FILE",
                     help="yaml: file or folder (default: stdout); csv: folder")  # fmt: skip
    show = actions.add_parser("show", help="count schools and devices per prefecture and county")
    for action in (imp, exp, show):
        where = action.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, help="TOML config file (for store.registry_path)")
        where.add_argument("--store", type=Path, help="the registry's SQLite file, not --config")


def _registry(args: argparse.Namespace) -> int:
    from gateway.storage.registry_store import RegistryStore

    path: Path = args.store or load_settings(args.config).store.registry_path
    if args.action == "import":
        return _registry_import(args, path)
    if not path.exists():
        raise ConfigError(f"store.registry_path: {path} does not exist")
    with RegistryStore(path) as store:
        registry = store.load()
    if args.action == "export":
        return _registry_export(args, registry)
    return _registry_show(registry, path)


def _registry_import(args: argparse.Namespace, path: Path) -> int:
    import time

    from gateway import registry_io
    from gateway.storage.registry_store import RegistryStore, RegistryStoreError

    started, known = time.monotonic(), set[str]()
    if args.merge and path.exists():
        with RegistryStore(path) as store:
            known = store.school_ids()
    try:
        schools, devices = registry_io.load(args.files, known, lambda m: print(m, flush=True))
    except registry_io.RegistryImportError as exc:
        print(f"{exc}\n{len(exc.problems)} problem(s): nothing imported", file=sys.stderr)
        return 1
    read_s, what = time.monotonic() - started, f"{len(schools)} schools, {len(devices)} devices"
    if args.dry_run:
        print(f"valid: {what} ({read_s:.1f} s); dry run, nothing changed")
        return 0
    try:
        with RegistryStore(path) as store:
            (store.merge if args.merge else store.replace)(schools, devices)
            version = store.version()
    except RegistryStoreError as exc:
        print(f"campusgw: {exc}: nothing imported", file=sys.stderr)
        return 1
    total = time.monotonic() - started
    verb, store_s = "merged" if args.merge else "imported", total - read_s
    print(f"{verb} {what} into {path} in {total:.1f} s (files read and checked in {read_s:.1f} s, "
          f"stored in {store_s:.1f} s); registry version {version}")  # fmt: skip
    return 0


def _registry_export(args: argparse.Namespace, registry: Registry) -> int:
    from gateway import registry_io

    schools, devices = list(registry.schools.values()), registry.device_models()
    if args.format == "csv":
        if args.out is None:
            raise ConfigError("registry export --format csv needs --out FOLDER")
        for written in registry_io.write_csv(args.out, schools, devices):
            print(written)
        return 0
    text = registry_io.dump_yaml(schools, devices)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = args.out / "registry.yaml" if args.out.is_dir() else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"{out}: {len(schools)} schools, {len(devices)} devices")
    return 0


def _registry_show(registry: Registry, path: Path) -> int:
    from collections import Counter

    counts: dict[tuple[str, str], Counter[str]] = {}
    for school in registry.schools.values():
        row = counts.setdefault((school.prefecture, school.county), Counter())
        row["schools"] += 1
        row.update(str(device.kind) for device in registry.by_school.get(school.id, []))
    total = sum(counts.values(), Counter[str]())
    print(f"registry version {registry.version} in {path}: {total['schools']} schools, "
          f"{len(registry.devices)} devices")  # fmt: skip
    columns = ("schools", "button", "camera", "gate")
    print(f"{'prefecture':<12} {'county':<12}" + "".join(f"{c:>9}" for c in columns))
    for (prefecture, county), row in sorted(counts.items()):
        print(f"{prefecture:<12} {county:<12}" + "".join(f"{row[c]:>9}" for c in columns))
    print(f"{'total':<25}" + "".join(f"{total[c]:>9}" for c in columns))
    return 0


# `campusgw simulate NAME`: simulators with their own options next to the fleet's
_SIMULATE_SUBCOMMANDS = {"registry": "simulators.registry_gen", "cameras": "simulators.cameras"}


def _simulate_sub(name: str, argv: list[str]) -> int:
    module = importlib.import_module(_SIMULATE_SUBCOMMANDS[name])
    parser = argparse.ArgumentParser(prog=f"campusgw simulate {name}")
    module.build_parser(parser)
    code: int = module.run(parser.parse_args(argv))
    return code


def _http(method: str, url: str, body: object | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url} answered {exc.code}: {exc.read().decode()[:500]}") from None
    except urllib.error.URLError as exc:
        raise ConfigError(f"cannot reach the gateway at {url}: {exc.reason} (--api)") from None


def _coverage(args: argparse.Namespace) -> int:
    kind = "csv" if args.csv else "txt"
    print(_http("GET", f"{args.api}/api/coverage.{kind}?level={args.level}").decode(), end="")
    return 0


def _test_alarms(args: argparse.Namespace) -> int:
    if args.every <= 0:
        return _test_alarms_once(args)
    while True:
        started = time.monotonic()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} test alarms", flush=True)
        try:
            _test_alarms_once(args)
        except ConfigError as exc:  # the gateway may be restarting: say so, try next round
            print(f"campusgw: {exc}", file=sys.stderr, flush=True)
        time.sleep(max(0.0, args.every * 3600 - (time.monotonic() - started)))


def _test_alarms_once(args: argparse.Namespace) -> int:
    body = {"schools": args.school, "operator": args.operator}
    result = json.loads(_http("POST", f"{args.api}/api/test-alarms", body))
    for school, why in sorted(result["skipped"].items()):
        print(f"{school:12} SKIPPED  {why}")
    pending = dict(result["raised"])
    deadline = time.monotonic() + args.wait
    while pending:
        for school, alarm_id in sorted(pending.items()):
            alarm = json.loads(_http("GET", f"{args.api}/api/alarms/{alarm_id}"))
            states = {d["endpoint"]: d["status"] for d in alarm["deliveries"]}
            if all(state == "delivered" for state in states.values()) or (
                time.monotonic() >= deadline
            ):
                ok = all(state == "delivered" for state in states.values())
                print(f"{school:12} {'OK' if ok else 'PENDING':8} {alarm_id} {states}")
                del pending[school]
        if pending:
            time.sleep(0.5)
    return 0 if not result["skipped"] else 1


_COMMANDS = {
    "run": _run,
    "check-config": _check_config,
    "schemas": _schemas,
    "drivers": _drivers,
    "audit": _audit,
    "coverage": _coverage,
    "test-alarms": _test_alarms,
    "registry": _registry,
    "storage": _storage,
}
