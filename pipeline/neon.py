"""Neon recordings in (Pupil Labs' Neon, its native recording folder as the Companion app writes
it), as a recording of two eyes that predict.py runs like a Pupil Core one.

Neon's two eye cameras share one video, `Neon Sensor Module v1 ps1.mp4`: 384x192 frames, one
camera's 192x192 image in each half. Beside it, `Neon Sensor Module v1 ps1.time` holds a
little-endian int64 per frame, nanoseconds since the Unix epoch, and `info.json` the recording's
`start_time` on that clock. The frame's left half becomes eye0 and its right half eye1, each run
as a Pupil Core eye camera's video, so Pupil Player's exports and the scripts written for them
read both alike. A .time file may hold a few more stamps than the video has frames
(its last frames not encoded): they are dropped, as pupil-labs-neon-recording drops them; fewer
stamps than frames is refused. A recording in several parts (ps2, ...) is refused with a line
saying so. This reads the layout with OpenCV and numpy: pupil-labs-neon-recording would bring
PyAV, pandas and protobuf for two files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.pupil_core import EyeVideo, PupilCoreRecording, find_recording
from pipeline.streams import InputError, video_frames

EYE_VIDEO = "Neon Sensor Module v1"  # + " ps1.mp4" / " ps1.time"
SCENE_VIDEO = "Neon Scene Camera v1"  # its .time gives the world_index of Player's export
HALVES = ((0, "left"), (1, "right"))  # eye id and the half of the frame it is


def _stamps(path: Path) -> np.ndarray:
    """A .time file's stamps in seconds; InputError naming it when it is not one."""
    try:
        raw = np.fromfile(path, dtype="<i8")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None
    if path.stat().st_size % 8 or len(raw) == 0:
        raise InputError(f"{path}: not a Neon .time file (a whole number of int64 nanosecond stamps)")
    if not (np.diff(raw) > 0).all():
        raise InputError(f"{path}: timestamps must be increasing")
    return raw.astype(np.float64) / 1e9


def find_neon_recording(folder: Path) -> PupilCoreRecording | None:
    """The Neon recording in `folder`, None when it holds no Neon eye video; InputError for one
    without its .time file or info.json, in several parts, or with fewer stamps than frames."""
    video = folder / f"{EYE_VIDEO} ps1.mp4"
    if not video.is_file():
        return None
    if (folder / f"{EYE_VIDEO} ps2.mp4").is_file():
        raise InputError(
            f"{folder}: a Neon recording in several parts (ps1, ps2, ...); only one part is read"
        )
    times = video.with_suffix(".time")
    if not times.is_file():
        raise InputError(f"{video}: no {times.name} beside it, so its frames have no times")
    stamps = _stamps(times)
    frames, width = video_frames(video)
    if frames == 0:
        raise InputError(f"{video}: no frame could be decoded")
    if frames > len(stamps):
        raise InputError(
            f"{video} holds {frames:,} frames but {times.name} has {len(stamps):,} stamps: which frame "
            "is when cannot be told"
        )
    stamps, half = stamps[:frames], width // 2
    info = folder / "info.json"
    try:
        start = float(json.loads(info.read_text())["start_time"]) / 1e9
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{info}: not a Neon recording's info file ({exc})") from None
    scene = folder / f"{SCENE_VIDEO} ps1.time"
    world = _stamps(scene) if scene.is_file() else None
    columns = {"left": (0, half), "right": (half, width)}
    eyes = tuple(EyeVideo(eye_id, video, stamps, columns[side]) for eye_id, side in HALVES)
    return PupilCoreRecording(folder, eyes, start, world, kind="Neon")


def find_eye_recording(folder: Path) -> PupilCoreRecording | None:
    """The Pupil Core or Neon recording in `folder`; None when it is neither."""
    return find_recording(folder) or find_neon_recording(folder)
