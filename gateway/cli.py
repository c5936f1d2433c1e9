"""`campusgw`: the gateway, its simulators and its tools, one subcommand each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import sys
from pathlib import Path

from gateway.config import ConfigError, Settings, load_settings

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
    for name, (module, text) in SIMULATOR_COMMANDS.items():
        child = sub.add_parser(name, help=text, description=text)
        importlib.import_module(module).build_parser(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
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


_COMMANDS = {
    "run": _run,
    "check-config": _check_config,
    "schemas": _schemas,
    "drivers": _drivers,
    "audit": _audit,
}
