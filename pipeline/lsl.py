"""Live to the lab: predict.py's measurements as a Lab Streaming Layer (LSL) stream, which
LabRecorder saves beside EEG, physiology and stimulus markers on one clock.

A sample per frame, float32 channels: diameter_px (the ellipse's major axis), diameter_mm (with
--mm-per-px only), centre_x, centre_y (px), confidence (0-1) and blink (1: eye closed or pupil
lost; NaN in the pupil's channels then). The blink channel is decided causally, as the frame
comes: no pupil, a confidence below --min-confidence, or an area below --blink-share of the
median over the last REFERENCE_S of open frames (blinks.csv, written at the end, also looks
ahead). Each sample is stamped with its frame's capture time on LSL's clock: a camera's frame
when it was read; a file's frame at the stream's start plus its time in the recording, which
--realtime also waits for, replaying the file at its own pace.

The stream's name is --lsl's (default `tiny-pupil-seg`), its type `Pupillometry`, and its
source id names the host and the input, so a recorder that lost the stream finds it again when
predict.py restarts; its description gives each channel's unit and the model that measured.
pylsl is imported only here, when --lsl asks for it; its wheels bundle liblsl.
"""

from __future__ import annotations

import math
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from config import PupillometryConfig
from pipeline.streams import InputError
from pupillometry.series import REFERENCE_S

STREAM_NAME = "tiny-pupil-seg"
STREAM_TYPE = "Pupillometry"
INSTALL_HINT = "pip install pylsl (1.18.6 or later, whose wheels bundle liblsl)"
CHANNELS = {  # label: (unit, type), in the sample's order; diameter_mm only with a scale
    "diameter_px": ("pixels", "Diameter"),
    "diameter_mm": ("millimeters", "Diameter"),
    "centre_x": ("pixels", "PositionX"),
    "centre_y": ("pixels", "PositionY"),
    "confidence": ("normalized", "Confidence"),
    "blink": ("boolean", "Blink"),
}


def import_pylsl() -> Any:
    """pylsl, its log quietened to errors; InputError saying how to install it where it is missing
    or its liblsl cannot load."""
    try:
        import pylsl
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: pylsl without a liblsl it can load
        raise InputError(f"--lsl needs pylsl, which cannot be imported ({exc}): {INSTALL_HINT}") from None
    # liblsl logs every connection on stderr, and an error when a recorder's link drops
    pylsl.set_config_content("[log]\nlevel = -3\n")
    return pylsl


def source_id(source: str | Path, eye: str = "") -> str:
    """A stream's source id: this host and the input (a camera index, or a file's absolute path),
    the same each time predict.py streams it."""
    where = f"camera{source}" if str(source).isdigit() else str(Path(source).resolve())
    return f"{STREAM_NAME}@{socket.gethostname()}:{where}{f':{eye}' if eye else ''}"


class LiveBlink:
    """The blink channel's causal rule: not usable (no pupil, or below `min_confidence`), or an
    area below `blink_share` of the median area of the usable frames in the last REFERENCE_S."""

    def __init__(self, config: PupillometryConfig) -> None:
        self.config = config
        self.recent: deque[tuple[float, float]] = deque()  # (time_s, area) of usable frames

    def __call__(self, time_s: float, geometry: dict, confidence: float) -> bool:
        while self.recent and self.recent[0][0] < time_s - REFERENCE_S:
            self.recent.popleft()
        area = geometry["area_px"]
        usable = bool(geometry["found"]) and confidence >= self.config.min_confidence and math.isfinite(area)
        reference = float(np.median([a for _, a in self.recent])) if self.recent else math.nan
        if usable:
            self.recent.append((time_s, area))
        return not usable or area < self.config.blink_share * reference  # NaN reference: not a blink


class LslOutlet:
    """An LSL outlet of a frame's measurements (`push`), described by `model` (name: value pairs,
    e.g. the checkpoint and backend), at `rate` frames/s (None: irregular, a camera's)."""

    def __init__(
        self,
        name: str,
        source: str,
        *,
        config: PupillometryConfig,
        rate: float | None = None,
        model: dict[str, str] | None = None,
        realtime: bool = False,
    ) -> None:
        self.pylsl = import_pylsl()
        self.realtime, self.blink = realtime, LiveBlink(config)
        self.mm_per_px = config.mm_per_px
        labels = [c for c in CHANNELS if c != "diameter_mm" or self.mm_per_px is not None]
        info = self.pylsl.StreamInfo(
            name, STREAM_TYPE, len(labels), rate or self.pylsl.IRREGULAR_RATE, "float32", source
        )
        channels = info.desc().append_child("channels")
        for label in labels:
            unit, kind = CHANNELS[label]
            channel = channels.append_child("channel")
            for key, value in (("label", label), ("unit", unit), ("type", kind)):
                channel.append_child_value(key, value)
        described = info.desc().append_child("acquisition")
        described.append_child_value("manufacturer", STREAM_NAME)
        for key, value in (model or {}).items():
            described.append_child_value(key, str(value))
        settings = info.desc().append_child("pupillometry")
        for key in ("blink_share", "min_confidence", "mm_per_px"):
            settings.append_child_value(key, str(getattr(config, key)))
        self.labels, self.name, self.source_id = labels, name, source
        self.outlet = self.pylsl.StreamOutlet(info)
        self._origin: tuple[float, float] | None = None  # (LSL clock, recording time) at the start

    def begin(self, time_s: float = 0.0) -> None:
        """Time `time_s` of the recording is now on LSL's clock (a camera: when reading starts;
        else the first frame pushed)."""
        self._origin = (self.pylsl.local_clock(), time_s)

    def push(self, time_s: float, geometry: dict, confidence: float) -> float:
        """Send a frame's sample, stamped at its time on LSL's clock (with `realtime`, once that
        time has come); returns the stamp."""
        if self._origin is None:
            self.begin(time_s)
        clock, first = self._origin
        stamp = clock + (time_s - first)
        if self.realtime and (wait := stamp - self.pylsl.local_clock()) > 0:
            time.sleep(wait)
        blink = self.blink(time_s, geometry, confidence)
        values = {"confidence": confidence, "blink": float(blink)}
        if not blink:
            diameter = geometry["axis_major"]
            mm = diameter * self.mm_per_px if self.mm_per_px is not None else math.nan
            centre = {"centre_x": geometry["centre_x"], "centre_y": geometry["centre_y"]}
            values |= {"diameter_px": diameter, "diameter_mm": mm, **centre}
        self.outlet.push_sample([values.get(label, math.nan) for label in self.labels], stamp)
        return stamp
