"""The registry as files: read YAML and CSV, reporting every bad row by line; write both.

YAML is one document `{schools: [...], devices: [...]}`; CSV is a schools file (header with `name`
and `county`) and a devices file (header with `kind`), columns named after the model fields. In
both, values are read as text and converted by the models, so an id like `0012` or a name like
`no` never turns into a number or a boolean. Any problem refuses the whole import.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
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
_NO_KEY = object()


class RegistryImportError(Exception):
    """Files that cannot be imported; `.problems` lists every one as (file, line, message)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        """One problem a line: `devices.csv:14: kind: Input should be ...` (`file: ...` when the
        problem concerns the whole file)."""
        return "\n".join(f"{f}:{n}: {m}" if n else f"{f}: {m}" for f, n, m in self.problems)


@dataclass(frozen=True, slots=True)
class _Row:
    """One record as read from a file, before validation."""

    file: str
    line: int
    model: Model
    data: dict[str, Any]
    field_lines: dict[Any, int] | None = None  # YAML: the line of each field


# --- load --------------------------------------------------------------------------------------


def load(
    paths: Sequence[Path], known_schools: Collection[str] = (), progress: Progress | None = None
) -> tuple[list[School], list[Device]]:
    """Read and validate registry files (any mix of YAML and CSV; a folder means its files).

    Devices may name `known_schools` (the stored registry, when merging). Raises
    RegistryImportError listing every problem of every file; returns nothing partial."""
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
    seen: dict[str, tuple[School | Device, _Row]] = {}  # school id or device key: first row
    # Schools that exist or were tried: a device of a bad school row is not reported again.
    schools_named = {str(r.data.get("id")) for r in rows if r.model is School} | set(known)
    for n, row in enumerate(rows, 1):
        if progress and n % PROGRESS_EVERY == 0:
            progress(f"validated {n} of {len(rows)} rows")
        try:
            record = row.model.model_validate(row.data)
        except ValidationError as exc:
            problems += [_problem(row, err) for err in exc.errors()]
            continue
        key = f"school id {record.id!r}" if isinstance(record, School) else f"device {record.key}"
        if key in seen:
            first = seen[key][1]
            problems.append(
                (row.file, row.line, f"duplicate {key} (first at {first.file}:{first.line})")
            )
        else:
            seen[key] = (record, row)
    schools = [r for r, _ in seen.values() if isinstance(r, School)]
    devices = [(r, row) for r, row in seen.values() if isinstance(r, Device)]
    nor = " nor in the registry" if known else ""
    for device, row in devices:
        if device.school not in schools_named:
            message = f"school: unknown school {device.school!r}: not in the files{nor}"
            problems.append((row.file, row.line, message))
    return schools, [d for d, _ in devices]


def _problem(row: _Row, err: ErrorDetails) -> Problem:
    """`kind: Input should be 'button', 'camera' or 'gate' (got 'camra')` (YAML: field's line)."""
    loc = err["loc"]
    line = row.field_lines.get(loc[0], row.line) if row.field_lines and loc else row.line
    text = f"{err['msg']} (got {err['input']!r:.80})"  # a long value cut to 80 characters
    if err["type"] in ("extra_forbidden", "missing"):
        text = "unknown field" if err["type"] == "extra_forbidden" else "required, missing"
    return row.file, line, f"{'.'.join(str(part) for part in loc) or '(row)'}: {text}"


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
    """Text of a field: None empty, booleans true/false; str() of dates and StrEnums fits."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value).lower()
    return str(value)


def write_csv(directory: Path, schools: Sequence[School], devices: Sequence[Device]) -> list[Path]:
    """Write schools.csv and devices.csv into directory; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {directory / "schools.csv": dump_csv(schools, School),
             directory / "devices.csv": dump_csv(devices, Device)}  # fmt: skip
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


# --- YAML --------------------------------------------------------------------------------------


def _read_yaml(file: str, text: str, problems: list[Problem]) -> list[_Row]:
    try:
        doc = _YamlBuilder(text).build()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append((file, mark.line + 1 if mark else 0, f"not valid YAML: {exc.problem}"))
        return []
    except yaml.YAMLError as exc:
        problems.append((file, 0, f"not valid YAML: {exc}"))
        return []
    except ValueError as exc:  # from _YamlBuilder: (line, message)
        problems.append((file, exc.args[0], f"not valid YAML: {exc.args[1]}"))
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
            data = {k: v for k, v in item.items() if v is not None}
            rows.append(_Row(file, line, model, data, item.lines))
        else:
            problems.append((file, line, f"{key}: expected a mapping of fields, got {item!r}"))
    return rows


class _Map(dict[Any, Any]):
    lines: dict[Any, int]  # the line of each key


class _Seq(list[Any]):
    lines: list[int]  # the line of each item


class _YamlBuilder:
    """Builds a document from libyaml's parser events, several times faster than PyYAML's
    composer and constructor. Scalars stay text (only plain nulls become None)."""

    def __init__(self, text: str) -> None:
        self._parser = getattr(yaml, "CBaseLoader", yaml.BaseLoader)(text)
        self._documents = _Seq()  # the root of every document, so the stack is never empty
        self._documents.lines = []
        self._stack: list[list[Any]] = [[self._documents, _NO_KEY]]  # container, pending key
        self._anchors: dict[str, Any] = {}

    def build(self) -> Any:
        """The single document of the text (None when empty)."""
        get, scalar, stack, put = self._parser.get_event, ev.ScalarEvent, self._stack, self._put
        while (event := get()) is not None:
            line = event.start_mark.line + 1
            if type(event) is scalar and event.anchor is None:  # the hot path
                null = event.implicit[0] and event.value in _NULLS
                put(stack[-1], None if null else event.value, line)
            else:
                self._event(event, line)
        if len(self._documents) > 1:
            raise ValueError(self._documents.lines[1], "a second document; one is expected")
        return self._documents[0] if self._documents else None

    def _event(self, event: ev.Event, line: int) -> None:
        if isinstance(event, ev.CollectionEndEvent):
            self._stack.pop()
        elif isinstance(event, ev.AliasEvent):
            if event.anchor not in self._anchors:
                raise ValueError(line, f"unknown alias *{event.anchor}")
            self._put(self._stack[-1], self._anchors[event.anchor], line)
        elif isinstance(event, ev.NodeEvent):
            value: Any = None
            if isinstance(event, ev.ScalarEvent):
                value = None if event.implicit[0] and event.value in _NULLS else event.value
            elif isinstance(event, ev.CollectionStartEvent):
                value = _Map() if isinstance(event, ev.MappingStartEvent) else _Seq()
                value.lines = {} if isinstance(value, _Map) else []
            if event.anchor is not None:
                self._anchors[event.anchor] = value
            self._put(self._stack[-1], value, line)
            if isinstance(event, ev.CollectionStartEvent):
                self._stack.append([value, _NO_KEY])

    @staticmethod
    def _put(top: list[Any], value: Any, line: int) -> None:
        container, key = top
        if type(container) is _Seq:
            container.append(value)
            container.lines.append(line)
        elif key is not _NO_KEY:
            container[key] = value
            container.lines[key] = line
            top[1] = _NO_KEY
        elif isinstance(value, str | None):
            top[1] = value
        else:
            raise ValueError(line, "only text keys are supported")


def dump_yaml(schools: Iterable[School], devices: Iterable[Device]) -> str:
    """The registry as one YAML document, one line per school and per device (None omitted)."""
    out = io.StringIO()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    yaml.emit(_yaml_events(schools, devices), out, Dumper=dumper, allow_unicode=True, width=1 << 16)
    return out.getvalue()


def _yaml_events(schools: Iterable[School], devices: Iterable[Device]) -> Iterator[ev.Event]:
    # Events straight to libyaml's emitter: about 7x faster than yaml.dump's representer.
    plain = _plain_check()
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


def _plain_check() -> Callable[[str, object], bool]:
    """Whether a value may be written unquoted: a text that a YAML 1.1 reader would take for a
    number, boolean, date or null is quoted, so other tools (simulators) read the same."""
    resolver, seen = Resolver(), dict[str, bool]()

    def plain(text: str, value: object) -> bool:
        if not isinstance(value, str) or isinstance(value, Enum):
            return True
        if text not in seen:
            tag = resolver.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
            seen[text] = tag == _STR_TAG
        return seen[text]

    return plain
