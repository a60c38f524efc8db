"""Pupil Core recordings in and Pupil Player's exports out.

A Pupil Core recording folder (Pupil Capture's layout) holds an eye video per eye camera,
`eye0.mp4` / `eye1.mp4` (or .mjpeg / .mkv), and beside each `eye0_timestamps.npy`: float64
seconds of Pupil time, one per frame, in order; `info.player.json` gives the recording's start on
that clock. Pupil Player pairs decoded frame i with timestamp i; here a video whose frame count
differs from its timestamps' is refused rather than truncated, since the pairing would be
guesswork.

Pupil Player's raw data exporter writes `pupil_positions.csv` (one row per eye frame and
detector, both eyes in one file) and its blink detector `blinks.csv`; `write_pupil_positions` and
`write_player_blinks` write the same columns, so an analysis script written for a Player export
runs on ours unchanged (pupil-labs/pupil, pupil_src/shared_modules/raw_data_exporter.py and
blink_detection.py). Only the 2D columns are filled: the 3D ones (pye3d's eye model) are empty,
as on a Player export's 2D rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.folders import write_csv
from pipeline.streams import InputError, video_frames
from pupillometry.series import MIN_BLINK_S

EYE_VIDEO_SUFFIXES = (".mp4", ".mjpeg", ".mkv")  # in the order Pupil Player looks for them
PLAYER_EXPORT = "pupil_player"  # the output folder of the two Player exports, both eyes in each
METHOD = "2d tiny-pupil-seg"  # the `method` column: a 2D detector ("2d" in it, as Player's "2d c++")
PUPIL_POSITIONS_COLUMNS = (
    "pupil_timestamp", "world_index", "eye_id", "confidence", "norm_pos_x", "norm_pos_y", "diameter",
    "method", "ellipse_center_x", "ellipse_center_y", "ellipse_axis_a", "ellipse_axis_b", "ellipse_angle",
    "diameter_3d", "model_confidence", "model_id", "sphere_center_x", "sphere_center_y", "sphere_center_z",
    "sphere_radius", "circle_3d_center_x", "circle_3d_center_y", "circle_3d_center_z", "circle_3d_normal_x",
    "circle_3d_normal_y", "circle_3d_normal_z", "circle_3d_radius", "theta", "phi",
    "projected_sphere_center_x", "projected_sphere_center_y", "projected_sphere_axis_a",
    "projected_sphere_axis_b", "projected_sphere_angle",
)  # fmt: skip
PLAYER_BLINK_COLUMNS = (
    "id", "start_timestamp", "duration", "end_timestamp", "start_frame_index", "index", "end_frame_index",
    "confidence", "filter_response", "base_data",
)  # fmt: skip


@dataclass(frozen=True)
class EyeVideo:
    """One eye camera's video and its frames' timestamps (Pupil time, s); `columns`: the (first,
    end) pixel columns of the frame that show this eye, where a video holds two side by side."""

    eye_id: int
    video: Path
    timestamps: np.ndarray  # (n,) float64, increasing
    columns: tuple[int, int] | None = None

    @property
    def rate(self) -> float:
        """Frames per second from the median gap between timestamps."""
        return 1.0 / float(np.median(np.diff(self.timestamps))) if len(self.timestamps) > 1 else math.nan


@dataclass(frozen=True)
class PupilCoreRecording:
    """A Pupil Core recording folder's eye videos, its start (Pupil time, s) and its world
    camera's timestamps (for `world_index`; None without a world video)."""

    folder: Path
    eyes: tuple[EyeVideo, ...]
    start: float
    world_timestamps: np.ndarray | None
    kind: str = "Pupil Core"  # or "Neon" (`pipeline.neon`)

    def describe(self) -> str:
        """One line: the eyes, their frames, time span and rate."""
        parts = []
        for eye in self.eyes:
            span = float(eye.timestamps[-1] - eye.timestamps[0])
            parts.append(
                f"eye{eye.eye_id} {len(eye.timestamps):,} frames over {span:.1f} s ({eye.rate:.1f} frames/s)"
            )
        return f"{self.kind} recording {self.folder}: {'; '.join(parts)}"


def _timestamps(path: Path, video: Path) -> np.ndarray:
    """The timestamps in `path`, checked against `video`'s frame count; InputError naming either."""
    try:
        stamps = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array of timestamps ({exc})") from None
    if stamps.ndim != 1 or stamps.dtype.kind not in "fiu" or len(stamps) == 0:
        raise InputError(
            f"{path}: expected a 1-D array of timestamps in seconds, got {stamps.dtype} {stamps.shape}"
        )
    stamps = stamps.astype(np.float64)
    if not np.isfinite(stamps).all() or (len(stamps) > 1 and not (np.diff(stamps) > 0).all()):
        raise InputError(f"{path}: timestamps must be finite and increasing")
    frames, _ = video_frames(video)
    if frames != len(stamps):
        raise InputError(
            f"{video} holds {frames:,} frames but {path.name} has {len(stamps):,} timestamps: which "
            "frame is when cannot be told"
        )
    return stamps


def find_recording(folder: Path) -> PupilCoreRecording | None:
    """The Pupil Core recording in `folder`, None when it holds no eye video with timestamps;
    InputError for an eye video without its timestamps, or with timestamps that do not match."""
    eyes = []
    for eye_id in (0, 1):
        video = next(
            (
                folder / f"eye{eye_id}{s}"
                for s in EYE_VIDEO_SUFFIXES
                if (folder / f"eye{eye_id}{s}").is_file()
            ),
            None,
        )
        stamps = folder / f"eye{eye_id}_timestamps.npy"
        if video is None:
            continue
        if not stamps.is_file():
            raise InputError(f"{video}: no {stamps.name} beside it, so its frames have no times")
        eyes.append(EyeVideo(eye_id, video, _timestamps(stamps, video)))
    if not eyes:
        return None
    start = min(float(eye.timestamps[0]) for eye in eyes)
    info = folder / "info.player.json"
    if info.is_file():
        try:
            start = float(json.loads(info.read_text())["start_time_synced_s"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{info}: not a Pupil recording's info file ({exc})") from None
    world = folder / "world_timestamps.npy"
    world_timestamps = np.load(world, allow_pickle=False).astype(np.float64) if world.is_file() else None
    return PupilCoreRecording(folder, tuple(eyes), start, world_timestamps)


def _nearest(sorted_times: np.ndarray | None, times: np.ndarray) -> list[int | None]:
    """Index of the nearest of `sorted_times` to each of `times` (Player's find_closest)."""
    if sorted_times is None or len(sorted_times) == 0:
        return [None] * len(times)
    right = np.clip(np.searchsorted(sorted_times, times), 1, max(1, len(sorted_times) - 1))
    left = right - 1
    nearer_left = np.abs(times - sorted_times[left]) <= np.abs(
        sorted_times[np.minimum(right, len(sorted_times) - 1)] - times
    )
    return [int(i) for i in np.where(nearer_left, left, np.minimum(right, len(sorted_times) - 1))]


def player_rows(
    eye: EyeVideo, rows: Sequence[dict[str, Any]], size: tuple[int, int], world: np.ndarray | None
) -> list[dict[str, Any]]:
    """pupil_positions.csv's rows for one eye from pupil.csv's (`size` (H, W) of its frames). A
    frame without a pupil is written as Player's 2D detector writes one: confidence 0, centre and
    axes 0."""
    h, w = size
    out = []
    for row, stamp, world_index in zip(rows, eye.timestamps, _nearest(world, eye.timestamps), strict=True):
        found = bool(row["pupil_found"]) and math.isfinite(row["centre_x"])
        cx, cy = (row["centre_x"], row["centre_y"]) if found else (0.0, 0.0)
        minor, major = (row["axis_minor"], row["axis_major"]) if found else (0.0, 0.0)
        # ours: the major axis' direction; Player's: its first (minor) axis', both clockwise from +x
        angle = (row["angle"] + 90.0) % 180.0 if found else -90.0
        out.append(
            dict.fromkeys(PUPIL_POSITIONS_COLUMNS, math.nan)
            | {
                "pupil_timestamp": float(stamp),
                "world_index": "" if world_index is None else world_index,
                "eye_id": eye.eye_id,
                "confidence": float(row["confidence"]) if found else 0.0,
                "norm_pos_x": cx / w,
                "norm_pos_y": 1.0 - cy / h,
                "diameter": major,
                "method": METHOD,
                "ellipse_center_x": cx,
                "ellipse_center_y": cy,
                "ellipse_axis_a": minor,
                "ellipse_axis_b": major,
                "ellipse_angle": angle,
                "model_id": "",
            }  # fmt: skip
        )
    return out


def write_pupil_positions(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Both eyes' `player_rows` as Player's pupil_positions.csv, in time order."""
    write_csv(path, PUPIL_POSITIONS_COLUMNS, sorted(rows, key=lambda r: (r["pupil_timestamp"], r["eye_id"])))
    return path


def binocular_blinks(
    events: dict[int, list[dict[str, Any]]], min_duration: float
) -> list[tuple[float, float]]:
    """(start, end) in Pupil time of the blinks: one eye's, or with two eyes the stretches where
    both are in a blink (Player's detector runs on both eyes' confidence at once) of at least
    `min_duration` seconds. `events`: per eye id, blinks.csv's events in Pupil time."""
    spans = [[(e["start_s"], e["end_s"]) for e in eye_events] for eye_events in events.values()]
    if len(spans) == 1:
        return spans[0]
    both = []
    for a0, a1 in spans[0]:
        for b0, b1 in spans[1]:
            start, end = max(a0, b0), min(a1, b1)
            if end - start >= min_duration - 1e-9:
                both.append((start, end))
    return sorted(both)


def write_player_blinks(
    path: Path,
    blinks: list[tuple[float, float]],
    recording: PupilCoreRecording,
    confidence: dict[int, np.ndarray],
) -> Path:
    """Player's blinks.csv: per blink its start, duration and end (Pupil time, s), the world
    frames it starts and ends in (searchsorted on the world timestamps, as Player; the first
    eye's frames without a world video), `confidence` 1 minus the mean pupil confidence over it,
    `filter_response` empty (Player's is its filter's output, which this detector has not), and
    `base_data` the eye frames' timestamps."""
    reference = (
        recording.world_timestamps if recording.world_timestamps is not None else recording.eyes[0].timestamps
    )
    rows = []
    for number, (start, end) in enumerate(blinks, start=1):
        first, last = np.searchsorted(reference, [start, end])
        last = min(int(last), len(reference) - 1)
        stamps, scores = [], []
        for eye in recording.eyes:
            times = eye.timestamps[: len(confidence[eye.eye_id])]
            inside = (times >= start) & (times < end)
            stamps.append(times[inside])
            scores.append(confidence[eye.eye_id][inside])
        stamps, scores = np.sort(np.concatenate(stamps)), np.concatenate(scores)
        rows.append(
            {
                "id": number,
                "start_timestamp": start,
                "duration": end - start,
                "end_timestamp": end,
                "start_frame_index": int(first),
                "index": int((int(first) + last) // 2),
                "end_frame_index": last,
                "confidence": float(1.0 - scores.mean()) if scores.size else math.nan,
                "filter_response": "",
                "base_data": " ".join(f"{t}" for t in stamps),
            }  # fmt: skip
        )
    write_csv(path, PLAYER_BLINK_COLUMNS, rows)
    return path


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Our own CSV's rows, numbers as floats (empty: NaN)."""

    def value(text: str) -> Any:
        try:
            return float(text) if text else math.nan
        except ValueError:
            return text

    with open(path, newline="") as f:
        return [{key: value(text) for key, text in row.items()} for row in csv.DictReader(f)]


def write_player_exports(recording: PupilCoreRecording, output: Path, eyes: Sequence[str]) -> list[Path]:
    """Pupil Player's pupil_positions.csv and blinks.csv in output/PLAYER_EXPORT, from the eyes'
    pupil.csv and blinks.csv in output/<eye> (`eyes`: those predicted, eye0 and / or eye1; an eye
    stopped early gives its rows so far)."""
    folder = output / PLAYER_EXPORT
    folder.mkdir(parents=True, exist_ok=True)
    rows, events, confidence = [], {}, {}
    for eye in recording.eyes:
        name = f"eye{eye.eye_id}"
        if name not in eyes:
            continue
        capture = cv2.VideoCapture(str(eye.video))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
        capture.release()
        if eye.columns is not None:
            size = (size[0], eye.columns[1] - eye.columns[0])
        ours = _read_csv(output / name / "pupil.csv")
        shown = EyeVideo(eye.eye_id, eye.video, eye.timestamps[: len(ours)], eye.columns)
        rows += player_rows(shown, ours, size, recording.world_timestamps)
        confidence[eye.eye_id] = np.array([r["confidence"] for r in ours])
        blinks = output / name / "blinks.csv"
        events[eye.eye_id] = [
            {"start_s": e["start_s"] + recording.start, "end_s": e["end_s"] + recording.start}
            for e in (_read_csv(blinks) if blinks.is_file() else [])
        ]
    blinks = binocular_blinks(events, MIN_BLINK_S) if events else []
    shown_eyes = tuple(e for e in recording.eyes if e.eye_id in confidence)
    shown = dataclasses.replace(recording, eyes=shown_eyes)
    return [
        write_pupil_positions(folder / "pupil_positions.csv", rows),
        write_player_blinks(folder / "blinks.csv", blinks, shown, confidence),
    ]
