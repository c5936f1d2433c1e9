"""The device registry: which schools exist and which devices each must have (issue 5).

Hierarchy prefecture > county > school > zone > device. The registry says what *should* exist;
the availability tracker says what is heard; coverage compares the two.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import ID_PATTERN, Kind

# pydantic's (Rust) regex: `$` is the end of the text, no trailing newline allowed.
Id = Annotated[str, Field(pattern=ID_PATTERN.pattern, description="[A-Za-z0-9_.-]{1,64}")]


class SchoolType(StrEnum):
    """School types the bureaus report on (GB/T 29315 covers kindergarten to high school)."""

    KINDERGARTEN = "kindergarten"
    PRIMARY = "primary"
    SECONDARY = "secondary"
    HIGH_SCHOOL = "high_school"
    UNIVERSITY = "university"


class Location(StrEnum):
    """Where a device is installed; coverage rules look for some of these."""

    GATEHOUSE = "gatehouse"
    DORMITORY_DUTY_ROOM = "dormitory_duty_room"
    CANTEEN = "canteen"
    PERIMETER = "perimeter"
    ENTRANCE = "entrance"
    CLASSROOM = "classroom"
    CORRIDOR = "corridor"
    PLAYGROUND = "playground"
    OFFICE = "office"
    OTHER = "other"


class School(BaseModel):
    """A school and where it sits in the administrative hierarchy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    name: str = Field(min_length=1, max_length=200)
    prefecture: str = Field(min_length=1, max_length=100, description="Prefecture (city) id.")
    county: str = Field(min_length=1, max_length=100, description="County (district) id.")
    type: SchoolType
    has_dormitory: bool = Field(False, description="Needs a dormitory duty room alarm button.")
    has_canteen: bool = Field(True, description="Needs a canteen ('bright kitchen') camera.")
    retention_days: int = Field(30, ge=1, le=3650, description="Video retention required.")


class Device(BaseModel):
    """A device that should exist at a school."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    school: Id
    kind: Kind
    id: Id
    zone: str = Field("main", min_length=1, max_length=100, description="Zone within the school.")
    location: Location = Location.OTHER
    power: Literal["mains", "battery"] = "mains"
    install_date: date | None = None
    linkage: str | None = Field(
        None, description="Linkage endpoint this device's alarms must reach (e.g. police)."
    )
    name: str | None = Field(None, max_length=200)

    @property
    def key(self) -> str:
        """`school/kind/device`, as in topics and the devices API."""
        return f"{self.school}/{self.kind}/{self.id}"


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A registered device as the running gateway holds it: a validated Device's fields in a
    slotted record. A pydantic model instance costs about 1.1 KB (its __dict__ and a set of the
    fields given); this about 150 B, and repeated texts (school ids, names) are shared: at
    100,000 devices the registry takes some 85 MB less."""

    school: str
    kind: Kind
    id: str
    zone: str
    location: Location
    power: Literal["mains", "battery"]
    install_date: date | None
    linkage: str | None
    name: str | None

    @classmethod
    def of(cls, device: Device) -> DeviceEntry:
        """The entry of a validated device."""
        intern = sys.intern
        return cls(
            intern(device.school), device.kind, device.id, intern(device.zone), device.location,
            device.power, device.install_date, device.linkage and intern(device.linkage),
            device.name and intern(device.name),
        )  # fmt: skip

    @property
    def key(self) -> str:
        """`school/kind/device`, as in topics and the devices API."""
        return f"{self.school}/{self.kind}/{self.id}"

    def model(self) -> Device:
        """The device as the API and the exports show it."""
        return Device.model_construct(
            school=self.school, kind=self.kind, id=self.id, zone=self.zone,
            location=self.location, power=self.power, install_date=self.install_date,
            linkage=self.linkage, name=self.name,
        )  # fmt: skip


@dataclass
class Registry:
    """An in-memory index of the registry, rebuilt whenever the stored registry changes."""

    schools: dict[str, School] = field(default_factory=dict)
    devices: dict[str, DeviceEntry] = field(default_factory=dict)
    by_school: dict[str, list[DeviceEntry]] = field(default_factory=dict)
    version: int = 0

    @classmethod
    def build(cls, schools: Iterable[School], devices: Iterable[Device], version: int) -> Registry:
        """Index schools and devices (validated already: every device's school exists)."""
        registry = cls(schools={s.id: s for s in schools}, version=version)
        for device in devices:
            entry = DeviceEntry.of(device)
            registry.devices[entry.key] = entry
            registry.by_school.setdefault(entry.school, []).append(entry)
        return registry

    def device_models(self) -> list[Device]:
        """Every device as a model (for exports), in registry order."""
        return [entry.model() for entry in self.devices.values()]

    def __contains__(self, device_key: object) -> bool:
        return device_key in self.devices
