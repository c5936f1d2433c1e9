"""The v2 sink's answer mapping: refused points are dead-lettered, everything else is retried."""

from __future__ import annotations

import pytest

from gateway.config import InfluxSettings
from gateway.ports import PointsRejectedError
from gateway.storage.influx_v2 import InfluxV2Sink, write_failure

# Answers as InfluxDB 2.x and 3 give them (their API documentation's examples).
PARTIAL = 'partial write: field type conflict: input field "rssi" is type float ... dropped=1'


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (400, PARTIAL),
        (400, "unable to parse 'button_status,school=s1 seq=': missing field value"),
        (413, "request too large"),
        (422, "partial write: points beyond retention policy dropped=3"),
    ],
)
def test_refused_points_are_not_retried(status: int, answer: str) -> None:
    failure = write_failure(status, answer)
    assert isinstance(failure, PointsRejectedError)
    assert str(status) in str(failure) and answer in str(failure)


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (401, "unauthorized access"),
        (403, "insufficient permissions for write"),
        (404, 'bucket "campus" not found'),
        (408, "timeout"),
        (429, "too many requests"),
        (500, "internal error"),
        (503, "service unavailable"),
        (0, "SSL: certificate verify failed"),
    ],
)
def test_other_failures_keep_the_batch_for_a_retry(status: int, answer: str) -> None:
    failure = write_failure(status, answer)
    assert not isinstance(failure, PointsRejectedError)
    assert answer in str(failure)


def test_the_sink_needs_bucket_and_org() -> None:
    with pytest.raises(ValueError, match="bucket"):
        InfluxV2Sink(InfluxSettings())
