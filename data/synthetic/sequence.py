"""A synthetic eye video with known ground truth: one person's eye whose pupil dilates and
constricts along a known curve, whose gaze drifts and jumps, and which blinks at known frames.

The ground truth of pupillometry on video (issue 15). Every frame is drawn by the single-frame
renderer (`render.render_posed`) from a Pose built with `render.look`, `anatomy.eyelids` and
`render.roll_pose`, so lids, iris and pupil agree with `render_eye`'s. The look (skin, light, iris
shade and texture, lashes, glints, camera) comes from one rng state replayed for every frame, so
it stays the same: even the camera noise is one frozen pattern. Per frame only the pose changes:

- pupil / iris diameter: a slow sine between 0.39 and 0.55 (period 4-8 s), minus a light reflex
  that constricts it by up to 0.09 from a seed-chosen moment (time constant 0.25 s);
- gaze: fixations held 0.4-1.2 s, 50 ms saccades between them, and a slow drift;
- lids: `Blink` profiles, closing, closed and opening over given numbers of frames.
"""

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from data.synthetic.anatomy import eyelids
from data.synthetic.render import STYLES, Pose, look, render_posed, roll_pose

BLINK_VISIBLE = 0.5  # a frame is a blink frame while less than this share of the pupil shows
SACCADE_S = 0.05
TRUTH_COLUMNS = (
    "frame",
    "time_s",
    "pupil_x",
    "pupil_y",
    "diameter_px",
    "pupil_ratio",
    "openness",
    "visible_fraction",
    "blink",
)
REFLEX_S = 0.25  # time constant of the light reflex's constriction


@dataclass(frozen=True)
class Blink:
    """Lids that start closing at frame `start`, then stay shut and open again (frame counts)."""

    start: int
    closing: int = 3
    closed: int = 3
    opening: int = 5

    def closure(self, frame: int) -> float:
        """0 with the lids at rest, 1 shut, eased in between."""
        i = frame - self.start
        if i < 0 or i >= self.closing + self.closed + self.opening:
            return 0.0
        if i < self.closing:
            x = (i + 1) / (self.closing + 1)
        elif i < self.closing + self.closed:
            x = 1.0
        else:
            x = 1 - (i - self.closing - self.closed + 1) / (self.opening + 1)
        return 0.5 - 0.5 * math.cos(math.pi * x)


@dataclass(frozen=True)
class Person:
    """What stays the same through a sequence: framing, eye shape, camera roll, the look."""

    radius: float
    centre: np.ndarray
    tilt: float  # radians
    reach: float
    pupil_offset: np.ndarray
    roll: float  # degrees
    open_level: float  # lid openness at rest
    lid_seed: int  # eyelids draws its lid shapes from an rng of this seed, every frame alike
    look_seed: int  # render_posed draws the look from an rng of this seed, every frame alike


def person(rng: np.random.Generator, size: tuple[int, int]) -> Person:
    """A person's eye, framed whole and level-ish in a frame of `size`."""
    h, w = size
    radius = min(w * rng.uniform(0.13, 0.18), 0.3 * h)  # a mid framing: the whole eye in view
    centre = np.array([w * rng.uniform(0.45, 0.55), h * rng.uniform(0.45, 0.55)])
    return Person(
        radius=radius,
        centre=centre,
        tilt=math.radians(rng.uniform(8, 25)),
        reach=rng.uniform(1.6, 1.9),
        pupil_offset=rng.normal(0, 0.02 * radius, 2),
        roll=rng.uniform(-8, 8),
        open_level=rng.uniform(0.85, 1.0),
        lid_seed=int(rng.integers(2**31)),
        look_seed=int(rng.integers(2**31)),
    )


def pupil_ratio_curve(rng: np.random.Generator, duration_s: float) -> Callable[[float], float]:
    """Pupil / iris diameter as a function of time (s): slow sine minus a light reflex."""
    period, phase = rng.uniform(4, 8), rng.uniform(0, 2 * math.pi)
    reflex_at = rng.uniform(0.3, 0.7) * duration_s

    def ratio(t: float) -> float:
        reflex = 0.09 * (1 - math.exp(-(t - reflex_at) / REFLEX_S)) if t >= reflex_at else 0.0
        return 0.47 + 0.08 * math.sin(2 * math.pi * t / period + phase) - reflex

    return ratio


def gaze_curve(rng: np.random.Generator, duration_s: float) -> Callable[[float], tuple[float, float]]:
    """(yaw, pitch) in radians as a function of time (s): fixations, saccades and a drift."""
    starts = [0.0]
    while starts[-1] < duration_s:
        starts.append(starts[-1] + rng.uniform(0.4, 1.2))
    targets = np.radians(rng.uniform((-20, -12), (20, 12), (len(starts), 2)))
    drift_period, drift_phase = rng.uniform(2, 5), rng.uniform(0, 2 * math.pi, 2)

    def gaze(t: float) -> tuple[float, float]:
        k = max(i for i, s in enumerate(starts) if s <= t)
        x = min(1.0, (t - starts[k]) / SACCADE_S) if k > 0 else 1.0
        step = x * x * (3 - 2 * x)
        point = targets[k - 1] + (targets[k] - targets[k - 1]) * step if k > 0 else targets[0]
        drift = np.radians(1.5) * np.sin(2 * math.pi * t / drift_period + drift_phase)
        return float(point[0] + drift[0]), float(point[1] + drift[1])

    return gaze


def draw_blinks(rng: np.random.Generator, n: int, fps: float) -> list[Blink]:
    """Blinks 0.5-3 s apart, the first within 0.2-1 s; at 30 fps 8-13 frames, 270-430 ms."""
    scale = fps / 30

    def frames(k: int) -> int:
        return max(1, round(k * scale))

    blinks, start = [], round(rng.uniform(0.2, 1.0) * fps)
    while start < n:
        blink = Blink(start, frames(3), frames(int(rng.integers(2, 5))), frames(int(rng.integers(4, 7))))
        blinks.append(blink)
        start += blink.closing + blink.closed + blink.opening + round(rng.uniform(0.5, 3.0) * fps)
    return blinks


def eye_sequence(
    n: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (400, 640),
    fps: float = 30.0,
    blinks: Sequence[Blink] | None = None,
    style: str = "full",
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Yield n frames of one eye: (H, W) uint8 image, (H, W) uint8 label 0..3, and a truth dict.

    The truth: `frame`, `time_s`, `pupil_x`, `pupil_y`, `diameter_px` (the pupil ellipse's major
    axis, true even behind the lids), `pupil_ratio`, `openness`, `visible_fraction` (of the pupil's
    pixels), `blink` (1 while visible_fraction < BLINK_VISIBLE, else 0). `blinks` default to ones
    drawn from `seed`; `truth_blinks` gives the runs of blink frames.
    """
    if n < 1 or fps <= 0:
        raise ValueError(f"eye_sequence needs n >= 1 and fps > 0, got n={n}, fps={fps}")
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; known: {', '.join(STYLES)}")
    rng = np.random.default_rng((seed, 15))  # 15: apart from render_eye's (seed, index) streams
    eye = person(rng, size)
    ratio, gaze = pupil_ratio_curve(rng, n / fps), gaze_curve(rng, n / fps)
    blinks = draw_blinks(rng, n, fps) if blinks is None else list(blinks)
    for frame in range(n):
        t = frame / fps
        closure = max((b.closure(frame) for b in blinks), default=0.0)
        pose = pose_at(eye, gaze(t), pupil_ratio=ratio(t), openness=eye.open_level * (1 - closure))
        look_rng = np.random.default_rng(eye.look_seed)  # the same look every frame
        image, label, info = render_posed(look_rng, pose, size, style=STYLES[style], steady=True)
        visible = info["pupil_visible_fraction"]
        (x, y), axes = info["pupil_center"], info["pupil_axes"]
        blink = int(visible < BLINK_VISIBLE)
        values = (frame, t, x, y, max(axes), pose.pupil_ratio, pose.openness, visible, blink)
        yield image, label, dict(zip(TRUTH_COLUMNS, values, strict=True))


def pose_at(eye: Person, gaze: tuple[float, float], *, pupil_ratio: float, openness: float) -> Pose:
    """The person's eye looking at `gaze` (yaw, pitch radians), as render_eye would pose it."""
    yaw, pitch = gaze
    view = look(
        eye.centre,
        eye.radius,
        yaw=yaw,
        pitch=pitch,
        tilt=eye.tilt,
        reach=eye.reach,
        pupil_offset=eye.pupil_offset,
    )
    drop = view.iris_centre[1] - eye.centre[1]
    lid_rng = np.random.default_rng(eye.lid_seed)  # the same lid shapes every frame
    lids = eyelids(lid_rng, eye.centre, eye.radius, drop=drop, openness=openness)
    return roll_pose(
        view,
        lids,
        radius=eye.radius,
        centre=eye.centre,
        openness=openness,
        pupil_ratio=pupil_ratio,
        roll=eye.roll,
    )


def truth_blinks(truths: Sequence[dict], fps: float) -> list[dict]:
    """Runs of blink frames in the truth, as predict.py's blinks.csv gives them: `start_frame`,
    `end_frame` (the last blink frame), `start_s`, `end_s`, `duration_s`."""
    events, start = [], None
    for row in [*truths, {"frame": len(truths), "blink": 0}]:
        if row["blink"] and start is None:
            start = row["frame"]
        elif not row["blink"] and start is not None:
            end = row["frame"] - 1
            events.append(
                {"start_frame": start, "end_frame": end, "start_s": start / fps, "end_s": (end + 1) / fps,
                 "duration_s": (end - start + 1) / fps}
            )  # fmt: skip
            start = None
    return events
