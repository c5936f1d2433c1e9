"""Settings sections about the fleet: availability, coverage and video quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AvailabilitySettings(_Section):
    """When a silent device counts as offline (zigbee2mqtt and GB/T 28181 figures)."""

    mains_timeout_s: float = Field(600, gt=0, description="Mains-powered devices: 10 min.")
    battery_timeout_s: float = Field(90_000, gt=0, description="Battery devices: 25 h.")
    camera_timeout_s: float = Field(
        180, gt=0, description="Cameras: 3 missed 60 s heartbeats (GB/T 28181)."
    )
    gate_timeout_s: float = Field(600, gt=0, description="Gate sensors on mains.")
    startup_grace_s: float = Field(
        120,
        ge=0,
        description="After the gateway starts, nothing is declared offline by silence for this "
        "long (on top of the device's own timeout), so a restart does not flood troubles.",
    )
    check_interval_s: float = Field(5, gt=0, description="How often silence is checked.")
    trouble_cooldown_s: float = Field(
        3600,
        ge=0,
        description="A device that went offline (trouble raised) raises no new offline trouble "
        "until this long after that trouble: a flapping device gives one trouble, not hundreds.",
    )
    publish: bool = Field(
        True,
        description="Publish retained online/offline for devices that have no last will of "
        "their own (never published to their availability topic).",
    )


class CoverageSettings(_Section):
    """How the coverage rates are counted (docs/coverage.md)."""

    test_alarm_max_age_days: float = Field(
        30,
        gt=0,
        description="'Networked with the police' needs a successful end-to-end test "
        "alarm within this many days.",
    )
    gate_open_hours: list[
        Annotated[
            str,
            Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"),
        ]
    ] = Field(
        default_factory=lambda: ["06:30-08:30", "11:30-13:30", "16:00-18:30"],
        description="Local times a gate may stand open (closed-campus management); open "
        "outside them is a shortfall.",
    )
    utc_offset_hours: float = Field(8, ge=-12, le=14, description="Schools' local time zone.")
    refresh_s: float = Field(
        5,
        gt=0,
        description="Rates are recomputed this often (and when the registry changes); "
        "the API serves the last result.",
    )


class CameraSource(_Section):
    """A camera whose frames the gateway fetches itself (instead of MQTT snapshots)."""

    device: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}/camera/[A-Za-z0-9_.-]{1,64}$",
                        description="school/camera/device")  # fmt: skip
    url: str = Field(
        min_length=1,
        description="http(s):// snapshot URL (JPEG), or rtsp:// / a file path read with "
        "cv2.VideoCapture.",
    )
    interval_s: float = Field(10, gt=0, description="Seconds between two frames.")


# The checks that take a fixed threshold (drivers/camera/quality_rules.CHECKS, but signal_loss,
# whose threshold is signal_loss_s); repeated here because config must not import drivers.
THRESHOLD_CHECKS = (
    "black", "frozen", "blur", "occlusion", "too_dark", "too_bright", "low_contrast", "noise",
    "colour_cast", "scene_change",
)  # fmt: skip


class VideoQualitySettings(_Section):
    """Video quality diagnosis (docs/video-quality.md)."""

    enabled: bool = Field(True, description="Run the checks on snapshots.")
    workers: int = Field(2, ge=1, le=64, description="Workers decoding and checking frames.")
    worker_kind: Literal["process", "thread"] = Field(
        "process",
        description="process: the workers are processes of their own (about 77 MB resident "
        "each; the checks never hold the gateway's GIL); thread: threads of the gateway (less "
        "memory, alarm latency p99 17-21 ms against 12-17 while the checks run flat out).",
    )
    worker_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="The workers run this much nicer than the rest of the gateway (capped at "
        "19): checking frames yields the CPUs to the event loop, which carries the alarms. "
        "0: same priority.",
    )
    worker_sched_idle: bool = Field(
        True,
        description="Worker processes run under SCHED_IDLE (Linux): a CPU only when nothing "
        "else wants it, so an alarm's wake-up never waits behind a check. Not for threads: "
        "a descheduled thread holding the GIL would stall the event loop.",
    )
    decode_reduction: Literal[1, 2, 4, 8] = Field(
        4, description="Decode JPEGs at 1/N size (cv2.IMREAD_REDUCED_*): enough for the checks."
    )
    baseline_frames: int = Field(
        10, ge=1, description="Healthy frames a camera's baseline is learnt from."
    )
    hits_to_raise: int = Field(3, ge=1, description="Consecutive hits before a trouble (N).")
    healthy_to_clear: int = Field(3, ge=1, description="Healthy frames that clear it (M).")
    cooldown_s: float = Field(600, ge=0, description="No new trouble of a kind this long after.")
    signal_loss_s: float = Field(
        60, gt=0, description="No frame from a camera that sends them for this long: signal loss."
    )
    stream_timeout_s: float = Field(
        5, gt=0,
        description="RTSP/file sources: longest wait to open the stream and to read a frame "
        "(OpenCV's own defaults are 30 s each).",
    )  # fmt: skip
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Fixed thresholds per check name, overriding the learnt baseline.",
    )

    @field_validator("thresholds")
    @classmethod
    def _known_checks(cls, thresholds: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(thresholds) - set(THRESHOLD_CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {', '.join(THRESHOLD_CHECKS)}")
        return thresholds

    max_snapshot_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger: dead letter.")
    evidence_dir: Path = Field(
        Path("var/evidence"), description="Evidence frames of camera troubles are kept here."
    )
    sources: list[CameraSource] = Field(
        default_factory=list, description="Cameras polled over HTTP/RTSP/files."
    )
