"""The driver interface: pure functions from (channel, payload bytes) to a canonical model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.models import Body, Channel, Kind


class DecodeError(ValueError):
    """A payload a driver cannot turn into a canonical model; the message says why."""


Decode = Callable[[Channel, bytes], Body]


@dataclass(frozen=True, slots=True)
class Driver:
    """A named decoder for one device family (and, for vendor variants, one vendor format).

    `decode` must be pure (no I/O, no clock) and must raise only DecodeError, whatever the bytes.
    """

    name: str
    kind: Kind
    description: str
    decode: Decode
