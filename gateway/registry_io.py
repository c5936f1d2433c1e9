"""The registry as files: read YAML and CSV, reporting every bad row by line; write both.

YAML is one document `{schools: [...], devices: [...]}`; CSV is a schools file (header with `name`
and `county`) and a devices file (header with `kind`), columns named after the model fields. In
both, values are read as text and converted by the models (as pydantic does for CSV), so an id
like `0012` or a name like `no` never turns into a number or a boolean. An import is all or
nothing: any problem refuses the whole of it. docs/registry.md describes the formats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml import events as ev
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from gateway.registry import Device, School

Problem = tuple[str, int, str]  # (file, line, message); line 0: the file as a whole
Model = type[School] | type[Device]
Progress = Callable[[str], None]
SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}
PROGRESS_EVERY = 20_000
_NULLS = {"", "~", "null", "Null", "NULL"}
_STR_TAG = "tag:yaml.org,2002:str"


class RegistryImportError(Exception):
    """Files that cannot be imported; `.problems` lists every one as (file, line, message)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(format_problem(p) for p in self.problems)


def format_problem(problem: Problem) -> str:
    """`devices.csv:14: kind: Input should be ...` (no line number for a whole-file problem)."""
    file, line, message = problem
    return f"{file}:{line}: {message}" if line else f"{file}: {message}"


@dataclass(frozen=True, slots=True)
class _Row:
    """One record as read from a file, before validation."""

    file: str
    line: int
    model: Model
    data: dict[str, Any]


# --- load --------------------------------------------------------------------------------------


def load(
    paths: Sequence[Path], known_schools: Collection[str] = (), progress: Progress | None = None
) -> tuple[list[School], list[Device]]:
    """Read and validate registry files (any mix of YAML and CSV; a folder means its files).

    Devices may name schools of `known_schools` (the stored registry, when merging). Raises
    RegistryImportError listing every problem of every file; returns nothing partial.
    """
    problems: list[Problem] = []
    rows: list[_Row] = []
    files = _expand(paths, problems)
    for path in files:
        found = _read(path, problems)
        if progress and len(found) >= PROGRESS_EVERY:
            progress(f"read {path}: {len(found)} rows")
        rows += found
    schools, devices = _validate(rows, known_schools, problems, progress)
    if problems:
        order = {str(path): n for n, path in enumerate(files)}
        problems.sort(key=lambda p: (order.get(p[0], -1), p[1]))
        raise RegistryImportError(problems)
    return schools, devices


def _expand(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    """Files to read: folders are replaced by their registry files, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        elif not path.exists():
            problems.append((str(path), 0, "no such file"))
        else:
            files.append(path)
    return files


def _read(path: Path, problems: list[Problem]) -> list[_Row]:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        problems.append((str(path), 0, "unknown file type: use .yaml, .yml or .csv"))
        return []
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        problems.append((str(path), 0, f"cannot read: {exc.strerror or exc}"))
        return []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append((str(path), line, f"not UTF-8 text ({exc.reason})"))
        return []
    reader = _read_csv if fmt == "csv" else _read_yaml
    return reader(str(path), text, problems)


def _validate(
    rows: list[_Row], known: Collection[str], problems: list[Problem], progress: Progress | None
) -> tuple[list[School], list[Device]]:
    """Validate each row, then check ids are unique and every device's school exists."""
    schools: dict[str, tuple[School, _Row]] = {}
    devices: dict[str, tuple[Device, _Row]] = {}
    tried_schools = {str(r.data.get("id")) for r in rows if r.model is School}
    for n, row in enumerate(rows, 1):
        if progress and n % PROGRESS_EVERY == 0:
            progress(f"validated {n} of {len(rows)} rows")
        try:
            record = row.model.model_validate(row.data)
        except ValidationError as exc:
            problems += [(row.file, row.line, _message(err)) for err in exc.errors()]
            continue
        if isinstance(record, School):
            _add(schools, record.id, (record, row), f"duplicate school id {record.id!r}", problems)
        else:
            _add(devices, record.key, (record, row), f"duplicate device {record.key}", problems)
    nor = " nor in the registry" if known else ""
    for device, row in devices.values():
        if device.school not in tried_schools and device.school not in known:
            message = f"school: unknown school {device.school!r}: not in the files{nor}"
            problems.append((row.file, row.line, message))
    return [s for s, _ in schools.values()], [d for d, _ in devices.values()]


def _add(
    seen: dict[str, Any], key: str, item: tuple[Any, _Row], what: str, problems: list[Problem]
) -> None:
    row: _Row = item[1]
    first = seen.get(key)
    if first is None:
        seen[key] = item
    else:
        problems.append((row.file, row.line, f"{what} (first at {first[1].file}:{first[1].line})"))


def _message(err: ErrorDetails) -> str:
    """`kind: Input should be 'button', 'camera' or 'gate' (got 'camra')`."""
    field = ".".join(str(part) for part in err["loc"]) or "(row)"
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown field"
    if err["type"] == "missing":
        return f"{field}: required, missing"
    return f"{field}: {err['msg']} (got {err['input']!r})"


# --- CSV ---------------------------------------------------------------------------------------


def _read_csv(file: str, text: str, problems: list[Problem]) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        problems.append((file, 0, "empty file: no header"))
        return []
    columns = [name.strip() for name in header]
    model = _csv_model(file, columns, problems)
    if model is None:
        return []
    rows, line = [], reader.line_num
    for cells in reader:
        start, line = line + 1, reader.line_num
        if not cells:
            continue
        if len(cells) != len(columns):
            message = f"{len(cells)} values, the header has {len(columns)} columns"
            problems.append((file, start, message))
            continue
        data = {c: v.strip() for c, v in zip(columns, cells, strict=True) if v.strip()}
        rows.append(_Row(file, start, model, data))
    return rows


def _csv_model(file: str, columns: list[str], problems: list[Problem]) -> Model | None:
    """Which file this is (schools or devices) by its header; None when the header is bad."""
    model: Model
    if "kind" in columns:
        model = Device
    elif "name" in columns and "county" in columns:
        model = School
    else:
        problems.append((file, 1, "header is neither a schools file (columns name, county, ...) "
                         "nor a devices file (columns kind, ...)"))  # fmt: skip
        return None
    what, fields = model.__name__.lower(), model.model_fields
    before = len(problems)
    for n, column in enumerate(columns):
        if column not in fields:
            problems.append((file, 1, f"unknown column {column!r} in a {what} file "
                             f"(columns: {', '.join(fields)})"))  # fmt: skip
        elif column in columns[:n]:
            problems.append((file, 1, f"column {column!r} appears twice"))
    for name, info in fields.items():
        if info.is_required() and name not in columns:
            problems.append((file, 1, f"missing required column {name!r} in a {what} file"))
    return model if len(problems) == before else None


def dump_csv(records: Sequence[School] | Sequence[Device], model: Model | None = None) -> str:
    """A schools or devices CSV file (model needed only when records is empty)."""
    model = model or type(records[0])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(model.model_fields)
    writer.writerows([_cell(getattr(r, f)) for f in model.model_fields] for r in records)
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_csv(directory: Path, schools: Sequence[School], devices: Sequence[Device]) -> list[Path]:
    """Write schools.csv and devices.csv into directory; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, records, model in (("schools", schools, School), ("devices", devices, Device)):
        path = directory / f"{name}.csv"
        path.write_text(dump_csv(records, model), encoding="utf-8")
        written.append(path)
    return written


# --- YAML --------------------------------------------------------------------------------------


def _read_yaml(file: str, text: str, problems: list[Problem]) -> list[_Row]:
    try:
        doc = _YamlBuilder(text).build()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append((file, mark.line + 1 if mark else 0, f"not valid YAML: {exc.problem}"))
        return []
    except (yaml.YAMLError, ValueError) as exc:
        problems.append((file, 0, f"not valid YAML: {exc}"))
        return []
    if doc is None:
        return []
    if not isinstance(doc, _Map):
        problems.append((file, 1, "expected a mapping with the lists schools: and devices:"))
        return []
    rows: list[_Row] = []
    for key in doc:
        if key not in ("schools", "devices"):
            problems.append((file, doc.lines[key], f"unknown key {key!r}: schools or devices"))
    for key, model in (("schools", School), ("devices", Device)):
        rows += _yaml_rows(file, doc, key, model, problems)
    return rows


def _yaml_rows(file: str, doc: _Map, key: str, model: Model, problems: list[Problem]) -> list[_Row]:
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, _Seq):
        problems.append((file, doc.lines[key], f"{key}: expected a list"))
        return []
    rows = []
    for item, line in zip(items, items.lines, strict=True):
        if isinstance(item, _Map):
            rows.append(_Row(file, line, model, {k: v for k, v in item.items() if v is not None}))
        else:
            problems.append((file, line, f"{key}: expected a mapping of fields, got {item!r}"))
    return rows


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[Any, int]


class _Seq(list[Any]):
    """A YAML sequence that remembers the line of each item."""

    lines: list[int]


class _YamlBuilder:
    """Builds a document from libyaml's parser events, several times faster than PyYAML's
    composer and constructor. Scalars stay text (only plain nulls become None)."""

    def __init__(self, text: str) -> None:
        self._parser = getattr(yaml, "CBaseLoader", yaml.BaseLoader)(text)
        self._stack: list[tuple[_Map | _Seq, list[Any]]] = []  # container, pending key
        self._anchors: dict[str, Any] = {}
        self._root: Any = None
        self._documents = 0

    def build(self) -> Any:
        """The single document of the text (None when empty)."""
        while self._parser.check_event():
            self._event(self._parser.get_event())
        return self._root

    def _event(self, event: ev.Event) -> None:
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, ev.DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                raise ValueError(f"line {line}: a second document; one is expected")
        elif isinstance(event, ev.MappingStartEvent | ev.SequenceStartEvent):
            node: _Map | _Seq = _Map() if isinstance(event, ev.MappingStartEvent) else _Seq()
            node.lines = {} if isinstance(node, _Map) else []
            self._add(node, line, event.anchor)
            self._stack.append((node, []))
        elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
            self._stack.pop()
        elif isinstance(event, ev.ScalarEvent):
            plain_null = event.implicit[0] and event.value in _NULLS
            self._add(None if plain_null else event.value, line, event.anchor)
        elif isinstance(event, ev.AliasEvent):
            if event.anchor not in self._anchors:
                raise ValueError(f"line {line}: unknown alias *{event.anchor}")
            self._add(self._anchors[event.anchor], line, None)

    def _add(self, value: Any, line: int, anchor: str | None) -> None:
        if anchor is not None:
            self._anchors[anchor] = value
        if not self._stack:
            self._root = value
            return
        container, pending = self._stack[-1]
        if isinstance(container, _Seq):
            container.append(value)
            container.lines.append(line)
        elif not pending:
            if not isinstance(value, str | None):
                raise ValueError(f"line {line}: only text keys are supported")
            pending.append(value)
        else:
            key = pending.pop()
            container[key] = value
            container.lines[key] = line


def dump_yaml(schools: Iterable[School], devices: Iterable[Device]) -> str:
    """The registry as one YAML document, one line per school and per device (None omitted)."""
    out = io.StringIO()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    yaml.emit(_yaml_events(schools, devices), out, Dumper=dumper, allow_unicode=True, width=1 << 16)
    return out.getvalue()


def _yaml_events(schools: Iterable[School], devices: Iterable[Device]) -> Iterator[ev.Event]:
    # Events straight to libyaml's emitter: about 7x faster than yaml.dump's representer.
    plain = _PlainCheck()
    yield from (ev.StreamStartEvent(), ev.DocumentStartEvent())
    yield ev.MappingStartEvent(None, None, True, flow_style=False)
    for key, records in (("schools", schools), ("devices", devices)):
        yield ev.ScalarEvent(None, None, (True, True), key)
        yield ev.SequenceStartEvent(None, None, True, flow_style=False)
        for record in records:
            yield ev.MappingStartEvent(None, None, True, flow_style=True)
            for name, value in record:
                if value is not None:
                    text = _cell(value)
                    yield ev.ScalarEvent(None, None, (True, True), name)
                    yield ev.ScalarEvent(None, None, (plain(text, value), True), text)
            yield ev.MappingEndEvent()
        yield ev.SequenceEndEvent()
    yield from (ev.MappingEndEvent(), ev.DocumentEndEvent(), ev.StreamEndEvent())


class _PlainCheck:
    """Whether a value may be written unquoted: a text that a YAML 1.1 reader would take for a
    number, boolean, date or null is quoted, so other tools (simulators) read the same."""

    def __init__(self) -> None:
        self._resolver = Resolver()
        self._seen: dict[str, bool] = {}

    def __call__(self, text: str, value: object) -> bool:
        if not isinstance(value, str) or isinstance(value, Enum):
            return True
        known = self._seen.get(text)
        if known is None:
            tag = self._resolver.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
            known = self._seen[text] = tag == _STR_TAG
        return known
