"""Procedural near-infrared eye images with OpenEDS-style labels, deterministic from (seed, index).

A close-up of one eye as a head-mounted eye-tracking camera sees it from below: textured skin
under uneven infrared light, eyelids with a crease and lashes, a shaded sclera, an iris with
radial fibres and a dark limbus, a dark pupil whose ellipse turns and flattens with the gaze,
corneal glints from the illuminator ring. The label is the anatomy, as in OpenEDS (0 skin,
1 sclera, 2 iris, 3 pupil): lashes and glints are drawn into the image only.

Real cameras see eyes in many ways, and each frame draws its own (domain randomisation): framing
from a whole-face-region frame (pupil ~15-60 px across at 640x400) to a tight crop that the eye
fills; camera roll; an iris from bright to as dark as the pupil; small glints to large blobs on
the pupil border, stray reflections on the skin; then what the headset and camera add (lens
ring, glare, dark corners, exposure, gamma, low contrast, blur, noise, banding, JPEG), see
data.synthetic.camera.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from data.synthetic.anatomy import (
    SHIFT,
    draw_glints,
    draw_lines,
    ellipse_pixels,
    eyeball,
    eyelids,
    fixed,
    lashes,
    rotate,
    skin_and_light,
)
from data.synthetic.camera import DEFAULT_CAMERA, PLAIN_CAMERA, CameraConfig, expose, headset

SCLERA, IRIS, PUPIL = 1, 2, 3
CLOSED_P = 0.055  # share of fully closed eyes; half-closed ones hide the pupil now and then too


@dataclass(frozen=True)
class Randomisation:
    """How widely the eye itself varies between frames; `camera` holds the headset and camera side."""

    framing: tuple[float, float] = (0.055, 0.27)  # iris radius / frame width, drawn log-uniform
    roll_p: float = 0.4  # share of frames with the camera rolled up to 35 degrees (else 8)
    iris_shade: tuple[float, float] = (0.1, 0.75)  # iris level between pupil (0) and sclera (1)
    skin: tuple[float, float] = (40.0, 170.0)  # grey level before exposure, drawn log-uniform
    sclera: tuple[float, float] = (0.9, 1.45)  # times the skin's
    large_glint_p: float = 0.3  # share of frames whose glints are blobs of a quarter pupil and more
    camera: CameraConfig = DEFAULT_CAMERA


# The named variants `--synthetic-style` offers: the full randomisation, and each main part of it
# taken back to the narrow range of the first renderer (what the ablation in the README trains on).
STYLES = {
    "full": Randomisation(),
    "no-camera": Randomisation(camera=PLAIN_CAMERA),
    "bright-iris": Randomisation(iris_shade=(0.35, 0.75)),
    "fixed-framing": Randomisation(framing=(0.125, 0.195), roll_p=0.0),
    "small-glints": Randomisation(large_glint_p=0.0),
    # all of them at once: the narrow world of the first renderer (and quick tests of the pipeline)
    "narrow": Randomisation(
        framing=(0.125, 0.195),
        roll_p=0.0,
        iris_shade=(0.35, 0.75),
        skin=(95.0, 165.0),
        sclera=(1.1, 1.45),
        large_glint_p=0.0,
        camera=PLAIN_CAMERA,
    ),
}


@dataclass(frozen=True)
class Pose:
    """Where an eye's parts lie in one frame: sizes in pixels, points (x, y), boxes as cv2 RotatedRects."""

    radius: float  # of the iris
    unit: float  # radius / 100: what lash, glint and lid-margin sizes scale with
    centre: np.ndarray  # where the iris sits for a straight gaze
    openness: float  # of the lids: 0 closed, ~1 open
    lids: tuple[np.ndarray, ...]  # upper and lower lid, crease, fold: (48, 2) points each
    iris_box: tuple
    pupil_box: tuple
    pupil_ratio: float  # pupil / iris diameter


def pose_eye(rng: np.random.Generator, size: tuple[int, int], style: Randomisation) -> Pose:
    """Framing, gaze, pupil size, lid opening and camera roll of one frame."""
    h, w = size
    # framing: the iris radius from a whole-face-region frame to a tight crop the eye fills;
    # every size of the eye's own parts (lashes, glints, lid margins) follows it
    radius = min(w * math.exp(rng.uniform(*np.log(style.framing))), 0.45 * h)
    # the iris sits at `centre` for a straight gaze; the camera looks at the eye from below
    centre = np.array([w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)])
    yaw, pitch = math.radians(rng.uniform(-35, 35)), math.radians(rng.uniform(-22, 22))
    tilt = math.radians(rng.uniform(8, 25))
    reach = rng.uniform(1.6, 1.9)
    pupil_ratio = rng.uniform(0.2, 0.62)  # constricted to dilated
    offset = rng.normal(0, 0.02 * radius, 2)
    gaze = look(centre, radius, yaw=yaw, pitch=pitch, tilt=tilt, reach=reach, pupil_offset=offset)
    draw = rng.random()  # lids closed, half-closed (blinking) or open
    low, high = (0.0, 0.0) if draw < CLOSED_P else (0.1, 0.55) if draw < 0.2 else (0.75, 1.05)
    openness = rng.uniform(low, high)
    lids = eyelids(rng, centre, radius, drop=gaze.iris_centre[1] - centre[1], openness=openness)
    # the camera's roll about the eye: mostly level, now and then well tilted
    roll = rng.uniform(-35, 35) if rng.random() < style.roll_p else rng.uniform(-8, 8)
    return roll_pose(
        gaze, lids, radius=radius, centre=centre, openness=openness, pupil_ratio=pupil_ratio, roll=roll
    )


@dataclass(frozen=True)
class Gaze:
    """Where a gaze puts the iris and pupil before the camera's roll."""

    iris_centre: np.ndarray
    pupil_centre: np.ndarray
    angle: float  # degrees, of the ellipses' flattened axis
    facing: float  # cos of the angle between gaze and camera: the iris disc flattens by it


def look(
    centre: np.ndarray,
    radius: float,
    *,
    yaw: float,
    pitch: float,
    tilt: float,
    reach: float,
    pupil_offset: np.ndarray,
) -> Gaze:
    """The gaze of `yaw`, `pitch` (radians), the camera `tilt` radians below the eye; `reach`
    (iris radii) is how far the iris swings, `pupil_offset` the pupil's (x, y) off the iris centre."""
    gaze = np.array([math.sin(yaw) * math.cos(pitch - tilt), math.sin(pitch - tilt)])
    facing = math.cos(yaw) * math.cos(pitch - tilt)
    iris_centre = centre + radius * reach * (gaze - (0, -math.sin(tilt)))
    angle = math.degrees(math.atan2(gaze[1], gaze[0]))
    return Gaze(iris_centre, iris_centre + pupil_offset, angle, facing)


def roll_pose(
    gaze: Gaze,
    lids: tuple[np.ndarray, ...],
    *,
    radius: float,
    centre: np.ndarray,
    openness: float,
    pupil_ratio: float,
    roll: float,
) -> Pose:
    """The Pose of a gaze and lids (eyelids' four curves) seen by a camera rolled `roll` degrees."""
    lids = tuple(rotate(lid, centre, roll) for lid in lids)
    iris_centre, pupil_centre = rotate(np.stack([gaze.iris_centre, gaze.pupil_centre]), centre, roll)
    angle, facing = gaze.angle + roll, gaze.facing
    iris_box = (tuple(iris_centre), (2 * radius * facing, 2 * radius), angle)
    pupil_box = (tuple(pupil_centre), (2 * radius * pupil_ratio * facing, 2 * radius * pupil_ratio), angle)
    return Pose(radius, radius / 100, centre, openness, lids, iris_box, pupil_box, pupil_ratio)


def eye_grey_levels(
    rng: np.random.Generator, skin: float, style: Randomisation
) -> tuple[float, float, float]:
    """Sclera, iris and pupil grey levels before exposure, the iris anywhere from bright to as dark
    as the pupil."""
    sclera = min(230, skin * rng.uniform(*style.sclera))
    pupil = rng.uniform(3, 30)
    return sclera, pupil + (sclera - pupil) * rng.uniform(*style.iris_shade), pupil


def render_eye(
    seed: int, index: int, size: tuple[int, int] = (400, 640), *, style: Randomisation = STYLES["full"]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One synthetic frame: (H, W) uint8 image, (H, W) uint8 label 0..3, and its ground truth.

    The info dict holds the whole pupil ellipse as a cv2 RotatedRect, `pupil_center` (x, y) and
    `pupil_axes` (full lengths, the first along `pupil_angle` degrees); `pupil_visible_fraction`,
    the share of its pixels neither under the lids nor out of the frame; `closed`, no pupil pixel
    visible; `iris_center`, `iris_axes`, lid `openness` (0 closed, ~1 open), `glints` [(x, y)].
    `style` sets how widely frames vary (`STYLES` names the variants).
    """
    rng = np.random.default_rng((seed, index))
    return render_posed(rng, pose_eye(rng, size, style), size, style=style)


def render_posed(
    rng: np.random.Generator,
    pose: Pose,
    size: tuple[int, int],
    *,
    style: Randomisation,
    steady: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """render_eye's frame of a given pose, its look (skin, light, iris, lashes, glints, camera)
    drawn from `rng`. With `steady`, the eyeball's random numbers are drawn behind closed lids
    too, so that one rng state gives the same look whatever the openness (a blinking sequence)."""
    (upper, lower, crease, fold), unit = pose.lids, pose.unit
    opening, iris, pupil = (np.zeros(size, np.uint8) for _ in range(3))
    if pose.openness > 0:
        cv2.fillPoly(opening, [fixed(np.concatenate([upper, lower[::-1]]))], 1, cv2.LINE_8, SHIFT)
    cv2.ellipse(iris, pose.iris_box, 1, -1)
    cv2.ellipse(pupil, pose.pupil_box, 1, -1)
    label = opening * (SCLERA + iris + pupil)

    skin_value = math.exp(rng.uniform(*np.log(style.skin)))  # grey level before exposure
    image, light = skin_and_light(rng, size, [crease, fold], radius=pose.radius, brightness=skin_value)
    eyeball_drawn = pose.openness > 0 or steady
    if eyeball_drawn:
        eyeball(
            image,
            rng,
            opening,
            lids=(upper, lower),
            iris_box=pose.iris_box,
            pupil=pupil,
            pupil_ratio=pose.pupil_ratio,
            values=eye_grey_levels(rng, skin_value, style),
        )
    margin = max(1, round(3 * unit))  # the lid margins, the upper one dark with lash roots
    draw_lines(image, upper[None], skin_value * rng.uniform(0.3, 0.5), thickness=margin)
    draw_lines(image, lower[None], skin_value * rng.uniform(0.6, 0.85), thickness=max(1, margin - 1))
    if eyeball_drawn and rng.random() < 0.5 and pose.openness > 0:  # wet lower lid margin, lit
        draw_lines(image, lower[None] - (0, 2 * unit), 200, thickness=1)
    image *= light
    lashes(image, rng, upper, unit=unit, upper=True)
    lashes(image, rng, lower, unit=unit, upper=False)
    glints = draw_glints(
        image,
        rng,
        opening,
        iris_box=pose.iris_box,
        pupil_box=pose.pupil_box,
        eye_centre=pose.centre,
        unit=unit,
        large_p=style.large_glint_p,
    )
    headset(image, rng, style.camera)
    image = expose(image, rng, style.camera)
    return image, label, ground_truth(pose, label, glints)


def ground_truth(pose: Pose, label: np.ndarray, glints: list) -> dict:
    """render_eye's info dict (see there) of a posed and labelled frame."""
    visible = int(np.count_nonzero(label == PUPIL))
    (px, py), pupil_axes, angle = pose.pupil_box
    (ix, iy), iris_axes, _ = pose.iris_box
    return {
        "pupil_center": (float(px), float(py)),
        "pupil_axes": (float(pupil_axes[0]), float(pupil_axes[1])),
        "pupil_angle": float(angle),
        "pupil_visible_fraction": visible / ellipse_pixels(pose.pupil_box),
        "closed": visible == 0,
        "iris_center": (float(ix), float(iy)),
        "iris_axes": (float(iris_axes[0]), float(iris_axes[1])),
        "openness": float(pose.openness),
        "glints": glints,
    }
