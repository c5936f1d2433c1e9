"""Per-device rate limit on telemetry, so one flooding device cannot starve the others.

Counted in fixed one-second windows: a device may send `max_per_second` messages per window;
the rest of that window is dropped before decoding, counted per device and reported
(`rate_limited` in /api/stats, GET /api/flooding by device, a warning per device at most once a
minute, the metric campusgw_rate_limited_total). Events (alarm presses, forced gates...) and
availability (last wills) are never limited.
Memory grows with the devices heard in the current second only, plus the flooding ones.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
FLOODING_KEPT = 10_000  # flooding devices remembered; more are summed under "others"


class RateLimit:
    """Decides per message whether a device is over its limit in the current window."""

    def __init__(self, max_per_second: int, warn_every_s: float = 60.0) -> None:
        self._max = max_per_second
        self._warn_every_s = warn_every_s
        self._window = -1
        self._counts: dict[str, int] = {}
        self.excess: dict[str, int] = {}  # device -> messages dropped, since start
        self.others = 0  # dropped from devices past FLOODING_KEPT
        self.total = 0
        self._warned: dict[str, float] = {}

    def allow(self, device: str, now: float) -> bool:
        """Count one message of `device` (any stable key) at monotonic time `now`."""
        window = int(now)
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts.get(device, 0) + 1
        self._counts[device] = count
        if count <= self._max:
            return True
        self.total += 1
        if device in self.excess or len(self.excess) < FLOODING_KEPT:
            self.excess[device] = self.excess.get(device, 0) + 1
        else:
            self.others += 1
        if now - self._warned.get(device, float("-inf")) >= self._warn_every_s:
            self._warned[device] = now
            log.warning("%s sends more than %d messages/s: the excess is dropped and counted "
                        "(%d so far)", device, self._max, self.excess.get(device, 0))  # fmt: skip
        return False

    def refund(self, allowed: list[str], denied: list[str], now: float) -> None:
        """Take back what `allow` counted for a batch that was not handled after all (its
        commit failed and it will come again): the retry is counted once, not on top."""
        if int(now) == self._window:
            for device in (*allowed, *denied):
                count = self._counts.get(device, 0) - 1
                if count > 0:
                    self._counts[device] = count
                else:
                    self._counts.pop(device, None)
        for device in denied:
            self.total -= 1
            excess = self.excess.get(device)
            if excess is None:
                self.others -= 1
            elif excess > 1:
                self.excess[device] = excess - 1
            else:
                del self.excess[device]

    def report(self, top: int = 10) -> dict[str, int]:
        """The devices that lost the most messages to the limit, most first."""
        worst = sorted(self.excess.items(), key=lambda item: -item[1])[:top]
        return dict(worst)
