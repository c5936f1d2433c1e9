"""A realistic sample registry for one prefecture (`campusgw simulate registry`).

Schools spread unevenly over the counties, in the mix a bureau reports on (kindergartens ~40%,
primary ~35%, secondary and high schools ~25%, a few universities); dormitories for most
secondary and high schools, canteens for most schools. Each school gets the devices GB/T 29315
asks for: a one-click alarm button in the gatehouse (and in each dormitory duty room), cameras at
the gate, along the perimeter, in the canteen kitchen and in corridors, and gate sensors at the
entrances (some on battery), with install dates and linkage to the police. `--missing-share`
leaves a required device out of that share of schools, so coverage is below 100% in the demo.

The output is the registry file format of docs/registry.md (YAML, or schools.csv + devices.csv),
which `campusgw registry import` reads; `read_devices` reads it back for the fleet
(`campusgw simulate --registry FILE`). Like every simulator this never imports the gateway, so
the field lists below mirror gateway/registry.py (a unit test checks the files import cleanly).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from simulators.devices import Device

SCHOOL_FIELDS = ("id", "name", "prefecture", "county", "type", "has_dormitory", "has_canteen",
                 "retention_days")  # fmt: skip
DEVICE_FIELDS = ("school", "kind", "id", "zone", "location", "power", "install_date", "linkage",
                 "name")  # fmt: skip

# type: share of schools, dormitory share, canteen share, corridor cameras, name ending
TYPES: dict[str, tuple[float, float, float, tuple[int, int], str]] = {
    "kindergarten": (0.40, 0.00, 0.85, (2, 6), "幼儿园"),
    "primary": (0.35, 0.08, 0.90, (4, 12), "小学"),
    "secondary": (0.14, 0.75, 0.95, (6, 16), "中学"),
    "high_school": (0.10, 0.90, 0.98, (8, 18), "高级中学"),
    "university": (0.01, 1.00, 1.00, (12, 30), "学院"),
}
COUNTY_NAMES = ("城关区", "东湖区", "西山区", "南河县", "北岭县", "青山县", "白水县", "临江县",
                "平阳县", "长安区", "新城区", "高新区")  # fmt: skip
GATE_NAMES = ("南门", "北门", "东门")
DIGITS = "零一二三四五六七八九"
FIRST_INSTALL, LAST_INSTALL = date(2016, 3, 1), date(2025, 12, 31)
Record = dict[str, Any]


def chinese_number(n: int) -> str:
    """1 -> 一, 12 -> 十二, 40 -> 四十, 99 -> 九十九 (larger numbers in digits)."""
    tens, ones = divmod(n, 10)
    if n < 10:
        return DIGITS[n]
    if n < 100:
        return f"{DIGITS[tens] if tens > 1 else ''}十{DIGITS[ones] if ones else ''}"
    return str(n)


def generate(
    prefecture: str, counties: int, schools: int, missing_share: float, vendor_schools: int,
    rng: random.Random,
) -> tuple[list[Record], list[Record], list[str]]:  # fmt: skip
    """Schools, devices, and the ids of the schools left short of a required device."""
    county_ids = [f"c-{n:02d}" for n in range(1, counties + 1)]
    weights = [rng.uniform(0.5, 1.5) for _ in county_ids]  # urban counties have more schools
    numbers: Counter[tuple[str, str]] = Counter()
    school_list: list[Record] = []
    devices: list[Record] = []
    for n in range(1, schools + 1):
        county = rng.choices(county_ids, weights)[0]
        kind = rng.choices(list(TYPES), [t[0] for t in TYPES.values()])[0]
        numbers[county, kind] += 1
        school = _school(f"s{n:04d}", prefecture, county, kind, numbers[county, kind], rng)
        school_list.append(school)
        devices += _devices(school, rng, vendor=n > schools - vendor_schools)
    kept, short = _leave_out(school_list, devices, missing_share, rng)
    return school_list, kept, short


def _school(
    school_id: str, prefecture: str, county: str, kind: str, number: int, rng: random.Random
) -> Record:
    _, dormitory, canteen, _, ending = TYPES[kind]
    county_name = COUNTY_NAMES[(int(county[2:]) - 1) % len(COUNTY_NAMES)]
    label = "实验" if number == 1 and kind != "university" else f"第{chinese_number(number)}"
    return {
        "id": school_id, "name": f"{county_name}{label}{ending}", "prefecture": prefecture,
        "county": county, "type": kind, "has_dormitory": rng.random() < dormitory,
        "has_canteen": rng.random() < canteen, "retention_days": 90 if kind == "university" else 30,
    }  # fmt: skip


def _devices(school: Record, rng: random.Random, vendor: bool) -> list[Record]:
    """A school's buttons b1.., cameras c1.. (hik-c1..) and gates g1.. (kv-g1..)."""
    installed = FIRST_INSTALL + timedelta(days=rng.randrange((LAST_INSTALL - FIRST_INSTALL).days))
    found: list[Record] = []
    counts: Counter[str] = Counter()

    def add(kind: str, location: str, name: str, zone: str = "main", **extra: Any) -> None:
        counts[kind] += 1
        prefix = {
            "button": "b",
            "camera": "hik-c" if vendor else "c",
            "gate": "kv-g" if vendor else "g",
        }[kind]
        later = installed + timedelta(days=rng.randrange(730)) if rng.random() < 0.1 else installed
        found.append({
            "school": school["id"], "kind": kind, "id": f"{prefix}{counts[kind]}",
            "zone": zone, "location": location, "power": "mains",
            "install_date": min(later, LAST_INSTALL), "name": name, **extra,
        })  # fmt: skip

    add("button", "gatehouse", "门卫室一键报警", linkage="police")
    dormitories = rng.randint(1, 3) if school["type"] in ("high_school", "university") else 1
    for n in range(1, dormitories + 1) if school["has_dormitory"] else ():
        add("button", "dormitory_duty_room", f"{n}号宿舍楼值班室一键报警", f"dorm{n}",
            linkage="police")  # fmt: skip
    add("camera", "gatehouse", "校门口摄像机", linkage="police")
    for n in range(1, rng.randint(2, 6) + 1):
        add("camera", "perimeter", f"周界摄像机{n}")
    if school["has_canteen"]:
        add("camera", "canteen", "食堂后厨明厨亮灶摄像机", "canteen")
    for n in range(1, rng.randint(*TYPES[school["type"]][3]) + 1):
        add("camera", "corridor", f"教学楼走廊摄像机{n}")
    for name in GATE_NAMES[: rng.randint(1, 3)]:
        add("gate", "entrance", f"{name}门磁", power="battery" if rng.random() < 0.3 else "mains")
    return found


def _leave_out(
    schools: list[Record], devices: list[Record], share: float, rng: random.Random
) -> tuple[list[Record], list[str]]:
    """Take one required device (gatehouse button, gatehouse camera, dormitory duty room
    buttons, canteen camera) away from round(share * schools) schools; return the devices left
    and the ids of those schools."""
    required = {("button", "gatehouse"), ("camera", "gatehouse"),
                ("button", "dormitory_duty_room"), ("camera", "canteen")}  # fmt: skip
    present: dict[str, set[tuple[str, str]]] = {}
    for d in devices:
        if (d["kind"], d["location"]) in required:
            present.setdefault(d["school"], set()).add((d["kind"], d["location"]))
    chosen = sorted(s["id"] for s in rng.sample(schools, round(share * len(schools))))
    gone = {school: rng.choice(sorted(present[school])) for school in chosen}
    return [d for d in devices if gone.get(d["school"]) != (d["kind"], d["location"])], chosen


# --- files -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def write_csv(folder: Path, schools: list[Record], devices: list[Record]) -> list[Path]:
    """schools.csv and devices.csv in folder, the columns in the registry's field order."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fields, records in (("schools", SCHOOL_FIELDS, schools),
                                  ("devices", DEVICE_FIELDS, devices)):  # fmt: skip
        path = folder / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(fields)
            writer.writerows([_text(r.get(f)) for f in fields] for r in records)
        written.append(path)
    return written


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Writes shared values (a school's install date) again rather than as anchors/aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(schools: list[Record], devices: list[Record]) -> str:
    """The registry as one YAML document, one line per school and per device."""
    doc = {
        "schools": [{f: s[f] for f in SCHOOL_FIELDS} for s in schools],
        "devices": [{f: d[f] for f in DEVICE_FIELDS if d.get(f) is not None} for d in devices],
    }
    return yaml.dump(doc, Dumper=_Dumper, default_flow_style=None, sort_keys=False,
                     allow_unicode=True, width=1 << 16)  # fmt: skip


# --- reading, for `campusgw simulate --registry FILE` ---------------------------------------------

Row = tuple[str, str, str]  # school, kind, id


class RegistryFileError(Exception):
    """A registry file whose devices cannot be read; the message says why."""


def read_devices(path: Path) -> list[Row]:
    """(school, kind, id) of the devices of a YAML registry, a devices CSV or a folder with one."""
    path = path / "devices.csv" if path.is_dir() else path
    try:
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                records: Any = list(csv.DictReader(f))
        else:  # every scalar as text, so an id like 0012 stays "0012"
            loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
            records = doc.get("devices") or []
        rows = [(r["school"].strip(), r["kind"].strip(), r["id"].strip()) for r in records]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryFileError(f"cannot read the devices of {path}: {exc!r}") from exc
    for school, kind, device in rows:
        if kind not in ("button", "camera", "gate"):
            raise RegistryFileError(f"{path}: device {school}/{kind}/{device}: unknown kind")
    return rows


class RegistryRows(list[Row]):
    """The devices of a registry file, and the file they came from."""

    def __init__(self, rows: list[Row], path: Path) -> None:
        super().__init__(rows)
        self.path = path


def registry_file(text: str) -> RegistryRows:
    """The argparse type of --registry: the file's devices, or a usage error saying why not."""
    try:
        return RegistryRows(read_devices(Path(text)), Path(text))
    except RegistryFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def registry_fleet(rows: list[Row], rng: random.Random) -> list[Device]:
    """Simulated devices for the rows; gates named kv-* and cameras named hik-* speak the vendor
    formats (as the example config's driver routes expect)."""
    schools = {school: n for n, school in enumerate(dict.fromkeys(r[0] for r in rows), 1)}
    rssi = {school: rng.randint(-75, -50) for school in schools}  # the school's radio conditions
    devices = []
    for n, (school, kind, name) in enumerate(rows):
        vendor = (kind, name[:3]) == ("gate", "kv-") or (kind, name[:4]) == ("camera", "hik-")
        index = schools[school]
        ip = f"10.{index // 256 % 256}.{index % 256}.{n % 254 + 1}"
        battery = round(rng.uniform(25.0, 100.0), 1)
        devices.append(Device(school, kind, name, vendor, ip, battery=battery, rssi=rssi[school]))
    return devices


# --- command line ------------------------------------------------------------------------------


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the generator's options to p."""
    p.description = "Generate a realistic sample registry (schools and devices) for one prefecture."
    p.add_argument("--prefecture", default="p-01", help="prefecture id (default: %(default)s)")
    p.add_argument("--counties", type=int, default=6, help="counties (default: %(default)s)")
    p.add_argument("--schools", type=int, default=300, help="schools (default: %(default)s)")
    p.add_argument("--missing-share", type=float, default=0.05,
                   help="share of schools missing a required device (default: 0.05)")  # fmt: skip
    p.add_argument("--vendor-schools", type=int, default=1,
                   help="the last N schools' gates are kv-g1.. and cameras hik-c1.., the ids the "
                   "example config routes to vendor drivers (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable registry")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, metavar="FILE.yaml",
                     help="write YAML here (default: standard output)")  # fmt: skip
    out.add_argument("--csv", type=Path, metavar="DIR", help="write DIR/schools.csv, devices.csv")


def run(args: argparse.Namespace) -> int:
    """Generate and write the registry; print a summary (to stderr when YAML goes to stdout)."""
    if args.counties < 1 or args.schools < 0 or not 0 <= args.missing_share <= 1:
        print("registry: need --counties >= 1, --schools >= 0, 0 <= --missing-share <= 1")
        return 2
    rng = random.Random(args.seed)
    schools, devices, short = generate(args.prefecture, args.counties, args.schools,
                                       args.missing_share, args.vendor_schools, rng)  # fmt: skip
    where, to_stdout = "standard output", args.csv is None and args.out is None
    if args.csv is not None:
        where = ", ".join(str(p) for p in write_csv(args.csv, schools, devices))
    elif args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(dump_yaml(schools, devices), encoding="utf-8")
        where = str(args.out)
    else:
        sys.stdout.write(dump_yaml(schools, devices))
    types = Counter(s["type"] for s in schools)
    kinds = Counter(d["kind"] for d in devices)
    print(f"registry {args.prefecture}: {args.counties} counties, {len(schools)} schools "
          f"({', '.join(f'{t} {types[t]}' for t in TYPES)}), {len(devices)} devices "
          f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); {len(short)} schools "
          f"missing a required device -> {where}",
          file=sys.stderr if to_stdout else sys.stdout)  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="registry_gen")
    build_parser(parser)
    sys.exit(run(parser.parse_args()))
