"""Per-frame pupil measurements -> a time series: blinks and lost frames, a One Euro filter on the
centre and the diameter, the diameter interpolated across blinks, and millimetres.

Blink frames. A frame is a blink frame (eye closed or pupil lost) when no pupil is found, when its
confidence is below `min_confidence`, or when the pupil's area is below `blink_share` of the
open eye's: the median area of the usable frames within REFERENCE_S around it. A closing lid
hides the pupil from the top, so the area falls with the share of the pupil still showing while
the fitted ellipse can still look whole; the reference moves with dilation, which is slow
against a blink. Runs of blink frames at most MERGE_GAP_S apart are one run, and a run that lasts
MIN_BLINK_S or more is a blink event; a shorter one is frames lost, not a blink (the quickest
blinks take about 100 ms). Every rule is in seconds of the frames' own times, evenly spaced or
not (a Pupil Core camera's gaps vary from 5 to 30 ms): a frame lasts until the next one starts.

Smoothing. The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose
cutoff rises with the signal's speed: steady fixations are smoothed hard, saccades and the light
reflex pass with little lag, and it needs two parameters rather than the motion model and noise
covariances a Kalman filter would. It runs on values in units of the recording's median pupil
diameter, so its settings do not depend on the camera's resolution. For files, where the whole
recording is known, the forward and the time-reversed passes are averaged: the lag of one is the
lead of the other, so the result does not lag. Blink frames are not filtered; their diameter is a
separate, interpolated column, linear in time between the filtered values either side of the blink
and of BLINK_PAD_S around it, where a lid still covers part of the pupil and biases its diameter
(as pupillometry's blink reconstruction does: S. Mathôt, "Pupillometry: psychology, physiology,
and function", J. Cognition 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from config import PupillometryConfig

REFERENCE_S = 1.0  # the open eye's pupil area: median over this window (s), centred on the frame
MERGE_GAP_S = 0.07  # blink runs at most this far apart (s) are one blink: 2 frames at 30 frames/s
BLINK_PAD_S = 0.05  # either side of a blink the lids still cover part of the pupil (Mathôt, 2018)
MIN_BLINK_S = 0.05  # a shorter run of blink frames is frames lost, not a blink: 1 frame at 30 frames/s
DERIVATIVE_CUTOFF_HZ = 1.0  # One Euro's filter on the speed, as the paper recommends
MEASURED = ("centre_x", "centre_y", "axis_major", "area_px")  # what the time series needs of a frame
FILTERED = ("centre_x_filtered", "centre_y_filtered", "diameter_filtered_px")  # with config.smooth
BLINK_COLUMNS = ("start_frame", "end_frame", "start_s", "end_s", "duration_s")  # blinks.csv: `blink_events`


def running_median(values: np.ndarray, times: np.ndarray, half_s: float) -> np.ndarray:
    """Median of the finite values whose time is within `half_s` seconds of each (NaN where none);
    `times` increasing, evenly spaced or not (a camera's real frame times)."""
    eps = 1e-9  # a frame exactly half_s away is in
    first = np.searchsorted(times, times - half_s - eps, side="left")
    stop = np.searchsorted(times, times + half_s + eps, side="right")
    width = int((stop - first).max(initial=1))
    padded = np.concatenate([values.astype(float), [np.nan]])  # index len(values): outside the window
    medians = np.full(values.shape, np.nan)
    for start in range(0, len(values), 4096):  # in chunks: a (n, width) window of 1e6 frames is too big
        rows = slice(start, start + 4096)
        index = first[rows, None] + np.arange(width)[None, :]
        index[index >= stop[rows, None]] = len(values)
        window = padded[index]
        finite = np.isfinite(window).any(axis=1)
        chunk = np.full(len(window), np.nan)
        chunk[finite] = np.nanmedian(window[finite], axis=1)
        medians[rows] = chunk
    return medians


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def frame_ends(times: np.ndarray, fps: float) -> np.ndarray:
    """When each frame's time ends: the next frame's time; the last frame's, 1 / `fps` after it."""
    return np.append(times[1:], times[-1] + 1 / fps) if len(times) else times


def blink_frames(
    area: np.ndarray, usable: np.ndarray, times: np.ndarray, *, fps: float, config: PupillometryConfig
) -> np.ndarray:
    """(n,) bool: frames that are not usable or whose pupil area is below `config.blink_share`
    of the open eye's nearby; runs of open frames lasting at most MERGE_GAP_S between blink
    frames joined into the blink. Every rule is in seconds of `times` (`fps`: the last frame's
    length)."""
    reference = running_median(np.where(usable, area, np.nan), times, REFERENCE_S / 2)
    with np.errstate(invalid="ignore"):
        blink = ~usable | ~(area >= config.blink_share * reference)  # NaN reference: nothing open near
    ends = frame_ends(times, fps)
    for first, last in runs(~blink):
        if first > 0 and last < len(blink) - 1 and ends[last] - times[first] <= MERGE_GAP_S + 1e-9:
            blink[first : last + 1] = True
    return blink


def blink_events(blink: np.ndarray, times: np.ndarray, fps: float) -> list[dict[str, Any]]:
    """One dict per run of blink frames lasting MIN_BLINK_S or more: start_frame, end_frame (the
    last blink frame, both positions in the recording), start_s, end_s (when the first open frame
    begins; 1 / `fps` after the last frame's time at the recording's end), duration_s."""
    events, ends = [], frame_ends(times, fps)
    for first, last in runs(blink):
        start, end = float(times[first]), float(ends[last])
        if end - start < MIN_BLINK_S - 1e-9:
            continue
        events.append(
            {"start_frame": int(first), "end_frame": int(last), "start_s": start, "end_s": end,
             "duration_s": end - start}
        )  # fmt: skip
    return events


def around_blinks(blink: np.ndarray, times: np.ndarray, fps: float) -> np.ndarray:
    """The blink frames and those whose time overlaps the BLINK_PAD_S before or after a blink."""
    around, ends = blink.copy(), frame_ends(times, fps)
    for first, last in runs(blink):
        lo = np.searchsorted(ends, times[first] - BLINK_PAD_S + 1e-9, side="right")  # ends inside the pad
        hi = np.searchsorted(times, ends[last] + BLINK_PAD_S - 1e-9, side="left")  # starts inside it
        around[lo:hi] = True
    return around


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass filter at `cutoff` Hz over `dt` seconds."""
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))


def one_euro(times: np.ndarray, values: np.ndarray, *, min_cutoff: float, beta: float) -> np.ndarray:
    """Causal One Euro filter over the rows of `values` (n, k) at `times` (n,) seconds; rows with
    a NaN are skipped (NaN out) and the k columns share one cutoff, set by their joint speed."""
    out = np.full(values.shape, np.nan)
    previous, previous_t, speed = None, 0.0, 0.0
    for i in np.flatnonzero(np.isfinite(values).all(axis=1)):
        x, t = values[i], float(times[i])
        if previous is None:
            previous = x
        else:
            dt = max(t - previous_t, 1e-6)
            raw_speed = float(np.linalg.norm(x - previous)) / dt
            speed += _alpha(DERIVATIVE_CUTOFF_HZ, dt) * (raw_speed - speed)
            previous = previous + _alpha(min_cutoff + beta * speed, dt) * (x - previous)
        previous_t, out[i] = t, previous
    return out


def smooth(
    times: np.ndarray, values: np.ndarray, *, min_cutoff: float, beta: float, causal: bool = False
) -> np.ndarray:
    """`one_euro`, or for a whole recording (not `causal`) the mean of its forward and
    time-reversed passes, which does not lag."""
    forward = one_euro(times, values, min_cutoff=min_cutoff, beta=beta)
    if causal:
        return forward
    backward = one_euro(-times[::-1], values[::-1], min_cutoff=min_cutoff, beta=beta)[::-1]
    return 0.5 * (forward + backward)


def interpolate(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` with NaN stretches that have finite values on both sides filled linearly in time."""
    known = np.flatnonzero(np.isfinite(values))
    out = values.astype(float).copy()
    if known.size < 2:
        return out
    inside = np.arange(known[0], known[-1] + 1)
    out[inside] = np.interp(times[inside], times[known], values[known])
    return out


def time_series(
    frames: Sequence[dict[str, Any]],
    times: np.ndarray,
    *,
    fps: float,
    config: PupillometryConfig,
    causal: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for pupil.csv and blink events for blinks.csv from per-frame measurements.

    `frames`: dicts with `pupil_found`, `confidence` and MEASURED (NaN without a pupil). Each row is its
    frame's dict plus `time_s`, `blink` (0/1), with `config.smooth` `centre_x_filtered`,
    `centre_y_filtered`, `diameter_filtered_px` (NaN on blink frames), `diameter_interpolated_px`
    (the filtered diameter, or the raw one without smoothing, with the blink frames and
    BLINK_PAD_S either side filled in linearly), and
    with `config.mm_per_px` the same diameters in mm. The diameter is the ellipse's major axis: a circular
    pupil seen off-axis keeps its full width along it.
    """
    found = np.array([bool(f["pupil_found"]) for f in frames])
    confidence = np.array([float(f["confidence"]) for f in frames])
    raw = {key: np.array([float(f[key]) for f in frames]) for key in MEASURED}
    usable = found & (confidence >= config.min_confidence)
    blink = blink_frames(raw["area_px"], usable, times, fps=fps, config=config)
    columns: dict[str, np.ndarray] = {}
    diameter = np.where(blink, np.nan, raw["axis_major"])
    if config.smooth and np.isfinite(diameter).any():
        scale = float(np.nanmedian(diameter))  # the filter works in pupil diameters
        scaled = np.stack([raw["centre_x"], raw["centre_y"], raw["axis_major"]], axis=1) / scale
        scaled[blink] = np.nan
        settings = {"min_cutoff": config.min_cutoff, "causal": causal}
        filtered = smooth(times, scaled[:, :2], beta=config.centre_beta, **settings) * scale  # joint speed
        diameter = smooth(times, scaled[:, 2:], beta=config.diameter_beta, **settings)[:, 0] * scale
        columns |= dict(zip(FILTERED, (filtered[:, 0], filtered[:, 1], diameter), strict=True))
    elif config.smooth:
        columns |= dict.fromkeys(FILTERED, diameter)
    around = around_blinks(blink, times, fps)  # reconstructed
    columns["diameter_interpolated_px"] = interpolate(times, np.where(around, np.nan, diameter))
    if (mm_per_px := config.mm_per_px) is not None:
        columns["diameter_mm"] = raw["axis_major"] * mm_per_px
        for kind in ("filtered", "interpolated"):
            if f"diameter_{kind}_px" in columns:
                columns[f"diameter_{kind}_mm"] = columns[f"diameter_{kind}_px"] * mm_per_px
    rows = [
        {**frame, "time_s": float(times[i]), "blink": int(blink[i])}
        | {name: float(values[i]) for name, values in columns.items()}
        for i, frame in enumerate(frames)
    ]
    return rows, blink_events(blink, times, fps)
