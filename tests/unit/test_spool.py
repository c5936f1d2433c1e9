"""The durable telemetry spool: order, acknowledgement, restart, torn records, bound."""

from pathlib import Path

from gateway.spool import HEADER, Spool


def points(n: int, start: int = 0) -> list[bytes]:
    return [b"m v=%di %d" % (i, i) for i in range(start, start + n)]


def test_read_ack_in_order_and_segments_roll_and_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    for k in range(10):
        spool.append(points(3, 3 * k))
    assert spool.pending_points == 30 and len(list(tmp_path.glob("*.seg"))) > 2
    seen = []
    while spool.pending_points:
        chunk = spool.read(7)
        seen += chunk.lines
        spool.ack(chunk)
    assert seen == points(30)
    assert spool.pending_bytes == 0 and len(list(tmp_path.glob("*.seg"))) == 1


def test_unacknowledged_points_survive_a_restart_acknowledged_ones_do_not(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=150)
    for k in range(6):
        spool.append(points(2, 2 * k))
    spool.ack(spool.read(5))  # three records: points 0-5
    spool.read(4)  # read, never acknowledged (the database write failed, or a crash)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=150)
    assert again.pending_points == 6
    assert again.read(100).lines == points(6, 6)


def test_a_torn_last_record_is_cut_off_and_appending_goes_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(points(2))
    spool.append(points(2, 2))
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # a crash in the middle of the second append
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.pending_points == 2 and again.truncated_bytes == len(data) // 2 - 5
    again.append(points(1, 9))
    assert again.read(100).lines == points(2) + points(1, 9)


def test_a_corrupt_record_ends_the_segment_at_the_last_good_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(points(2))
    spool.append(points(2, 2))
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the CRC of the second record no longer matches
    segment.write_bytes(bytes(data))
    assert Spool(tmp_path, max_bytes=1 << 20).read(100).lines == points(2)


def test_full_spool_evicts_oldest_whole_segments_and_counts(tmp_path: Path) -> None:
    record = HEADER.size + len(b"\n".join(points(4)))
    spool = Spool(tmp_path, max_bytes=record * 8, segment_bytes=record * 2)
    for k in range(12):
        assert spool.append(points(4, 4 * k)) % 4 == 0  # whole records
    assert spool.evicted_points > 0
    assert spool.pending_bytes <= record * 8
    assert spool.pending_points + spool.evicted_points == 48
    lines = []
    while spool.pending_points:
        chunk = spool.read(100)
        lines += chunk.lines
        spool.ack(chunk)
    assert lines == points(48)[spool.evicted_points :]  # the newest, in order


def test_acknowledging_an_old_chunk_again_changes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(points(3))
    chunk = spool.read(10)
    spool.ack(chunk)
    spool.append(points(2, 3))
    spool.ack(chunk)
    assert spool.pending_points == 2


def test_reading_on_after_an_unacknowledged_chunk_and_acking_both_in_order(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    for k in range(8):
        spool.append(points(3, 3 * k))
    first = spool.read(7)
    second = spool.read(7, after=first)  # while the first is still being written
    assert first.lines + second.lines == points(first.points + second.points)
    spool.ack(first)
    spool.ack(second)
    assert spool.pending_points == 24 - first.points - second.points
    assert spool.read(100).lines == points(spool.pending_points, first.points + second.points)
