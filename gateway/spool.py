"""The durable telemetry spool: append-only segment files between MQTT and the time-series DB.

Ingest appends each batch's points as one record (and fsyncs it) before the batch is
acknowledged to the broker; the telemetry writer reads records in order, writes them to the
database and then moves the cursor past them. A crash loses nothing acknowledged: on start the
spool is scanned, a torn last record (a crash mid-append) is cut off, and reading resumes at the
cursor. A record written to the database just before a crash may be written again after it;
InfluxDB keeps one point per series and timestamp, so that repeats nothing.

The spool is bounded (`max_bytes`): when a new record would pass the bound, whole segments are
evicted oldest first, with a counter and a warning. Only telemetry passes through here; alarms are
in the alarm store and never evicted.

Files, in `directory`: `000000000001.seg`, ... (records), `cursor` ("SEGMENT OFFSET", replaced
atomically). A record is a 12-byte header (payload length, CRC-32 of the payload, point count,
little-endian uint32 each) and the payload: the points' line protocol joined by newlines.
Blocking file I/O: call from a worker thread; one lock makes the methods safe to mix.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
HEADER = struct.Struct("<III")


class SpoolError(Exception):
    """The spool cannot be used (directory not writable, ...)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records read from the cursor on: their points and where reading stopped."""

    lines: list[bytes]
    points: int  # as the records' headers count them
    end: tuple[int, int]  # (segment, offset) just past the last record read


@dataclass(slots=True)
class _Segment:
    number: int
    size: int  # bytes of whole records
    points: int


class Spool:
    """Append records, read them in order, acknowledge what the database took."""

    def __init__(
        self, directory: Path, max_bytes: int, segment_bytes: int = 16 << 20, fsync: bool = True
    ) -> None:
        self._dir = directory
        self._max_bytes = max_bytes
        self._segment_bytes = min(segment_bytes, max(max_bytes // 4, HEADER.size))
        self._fsync = fsync
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._cursor = (0, 0)
        self._cursor_points = 0  # points of the cursor's segment before the cursor
        self._out: int | None = None  # fd of the last segment, open for appending
        self.evicted_points = 0
        self.truncated_bytes = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._recover()
        except OSError as exc:
            raise SpoolError(f"telemetry spool {directory}: {exc}") from exc

    # --- state -----------------------------------------------------------------------------

    @property
    def pending_points(self) -> int:
        """Points appended and not yet acknowledged."""
        return sum(s.points for s in self._segments) - self._cursor_points

    @property
    def pending_bytes(self) -> int:
        """Bytes of records not yet acknowledged."""
        if not self._segments:
            return 0
        return sum(s.size for s in self._segments) - self._cursor[1]

    # --- writing ---------------------------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> int:
        """Write the points as one durable record; returns how many old points were evicted
        to stay within max_bytes (0 normally)."""
        if not lines:
            return 0
        payload = b"\n".join(lines)
        record = HEADER.pack(len(payload), zlib.crc32(payload), len(lines)) + payload
        with self._lock:
            evicted = self._make_room(len(record))
            last = self._segments[-1]
            if last.size and last.size + len(record) > self._segment_bytes:
                self._roll()
                last = self._segments[-1]
            assert self._out is not None
            os.write(self._out, record)
            if self._fsync:
                os.fsync(self._out)
            last.size += len(record)
            last.points += len(lines)
            return evicted

    def _make_room(self, size: int) -> int:
        evicted = 0
        while len(self._segments) > 1 and self.pending_bytes + size > self._max_bytes:
            oldest = self._segments.pop(0)
            lost = oldest.points - self._cursor_points
            evicted += lost
            self._path(oldest.number).unlink(missing_ok=True)
            self._set_cursor(self._segments[0].number, 0, 0)
        if evicted:
            self.evicted_points += evicted
            log.warning("telemetry spool full (%d bytes): evicted %d oldest points (%d so far)",
                        self._max_bytes, evicted, self.evicted_points)  # fmt: skip
        return evicted

    def _roll(self) -> None:
        if self._out is not None:
            os.close(self._out)
        number = self._segments[-1].number + 1 if self._segments else 1
        self._segments.append(_Segment(number, 0, 0))
        self._out = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self._fsync:
            _fsync_dir(self._dir)

    # --- reading ---------------------------------------------------------------------------

    def read(self, max_points: int, after: Chunk | None = None) -> Chunk:
        """Whole records from the cursor on (or from where `after`, a chunk read but not yet
        acknowledged, ends), until about max_points (at least one record)."""
        with self._lock:
            lines: list[bytes] = []
            points = 0
            segment, offset = self._cursor if after is None else max(after.end, self._cursor)
            for seg in self._segments:
                if seg.number < segment:
                    continue
                start = offset if seg.number == segment else 0
                if start >= seg.size:
                    continue
                with self._path(seg.number).open("rb") as f:
                    f.seek(start)
                    data = f.read(seg.size - start)
                pos = 0
                while pos < len(data) and (not points or points < max_points):
                    length, _crc, count = HEADER.unpack_from(data, pos)
                    body = data[pos + HEADER.size : pos + HEADER.size + length]
                    lines += body.split(b"\n")
                    points += count
                    pos += HEADER.size + length
                segment, offset = seg.number, start + pos
                if points >= max_points:
                    break
            return Chunk(lines, points, (segment, offset))

    def ack(self, chunk: Chunk) -> None:
        """The database has the chunk's points: move the cursor past them, drop used segments."""
        with self._lock:
            segment, offset = chunk.end
            if (segment, offset) <= self._cursor:
                return
            points = chunk.points
            while self._segments and self._segments[0].number < segment:
                done = self._segments.pop(0)
                points -= done.points - self._cursor_points
                self._cursor_points = 0
                self._path(done.number).unlink(missing_ok=True)
            self._set_cursor(segment, offset, self._cursor_points + points)

    def _set_cursor(self, segment: int, offset: int, points: int) -> None:
        self._cursor, self._cursor_points = (segment, offset), points
        tmp = self._dir / "cursor.tmp"
        tmp.write_text(f"{segment} {offset} {points}\n")
        tmp.replace(self._dir / "cursor")

    # --- start-up --------------------------------------------------------------------------

    def _recover(self) -> None:
        numbers = sorted(int(p.stem) for p in self._dir.glob("*.seg") if p.stem.isdigit())
        segment, offset, points = self._read_cursor()
        for number in numbers:
            if number < segment:  # consumed before a crash, not yet deleted
                self._path(number).unlink(missing_ok=True)
                continue
            self._segments.append(self._scan(number))
        if not self._segments:
            self._roll()
            self._set_cursor(self._segments[0].number, 0, 0)
            return
        first = self._segments[0]
        if first.number != segment or offset > first.size:
            segment, offset, points = first.number, 0, 0
        self._cursor, self._cursor_points = (segment, offset), points
        last = self._segments[-1]
        self._out = os.open(self._path(last.number), os.O_WRONLY | os.O_APPEND)
        if self.pending_points:
            log.info("telemetry spool: %d points from before the restart to write",
                     self.pending_points)  # fmt: skip

    def _scan(self, number: int) -> _Segment:
        """Count the segment's whole, intact records; cut off a torn or corrupt tail."""
        path = self._path(number)
        data = path.read_bytes()
        pos = points = 0
        while pos + HEADER.size <= len(data):
            length, crc, count = HEADER.unpack_from(data, pos)
            body = data[pos + HEADER.size : pos + HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            pos += HEADER.size + length
            points += count
        if pos < len(data):
            self.truncated_bytes += len(data) - pos
            log.warning("telemetry spool %s: cut off %d bytes of a torn or corrupt record",
                        path.name, len(data) - pos)  # fmt: skip
            with path.open("r+b") as f:
                f.truncate(pos)
        return _Segment(number, pos, points)

    def _read_cursor(self) -> tuple[int, int, int]:
        try:
            segment, offset, points = (self._dir / "cursor").read_text().split()
            return int(segment), int(offset), int(points)
        except (OSError, ValueError):
            return 0, 0, 0

    def _path(self, number: int) -> Path:
        return self._dir / f"{number:012d}.seg"

    def close(self) -> None:
        """Close the open segment."""
        with self._lock:
            if self._out is not None:
                os.close(self._out)
                self._out = None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
