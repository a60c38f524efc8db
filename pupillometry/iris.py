"""Millimetres per pixel from the iris: the model measures the pupil in pixels, and the iris around
it is a ruler every eye carries. Adults' horizontal visible iris diameter (the limbus, where the
dark iris meets the bright sclera; "white to white") is about 11.7 mm (Rüfer, Schröder and Erb,
Cornea 2005: 11.71 ± 0.42 mm), but it varies by ~±0.5 mm between people, so a diameter in mm from
it is an estimate (~±4%), not a calibration.

The search is Daugman-like (J. Daugman, "How iris recognition works", IEEE TCSVT 2004: the edge
of the iris is the radius where the image steps from dark to bright, the integro-differential
operator), done per ray: from the pupil centre, rays within ±30 degrees of horizontal on both
sides (the lids cover the top and bottom of the iris) sample the lightly blurred image outwards
from 1.3 pupil radii; each ray's strongest dark-to-bright step is its limbus. A gaze off the
camera flattens the iris as it flattens the pupil, so given the pupil's ellipse each ray's edge
is stretched back onto the iris disc. Per side, the rays must agree, and the two sides must agree
with each other and give an iris 1.5 to 5 times the pupil's radius; otherwise the frame gives
NaN. A recording's estimate is the median over its frames with a confident pupil, refused (None)
when too few of them gave one or they disagree: no number beats a wrong one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

IRIS_DIAMETER_MM = 11.7  # adults' horizontal visible iris diameter; people vary by ~±0.5 mm (1 SD)
RAY_SPREAD_DEG = 30.0  # rays within this of horizontal: the lids cover the top and bottom
RAYS_PER_SIDE = 31  # 2 degrees apart
SEARCH = (1.3, 5.5)  # radii searched, in pupil radii
PLAUSIBLE = (1.5, 5.0)  # iris / pupil radius of real eyes, dilated to constricted
MIN_STEP = 3.0  # grey levels: a weaker dark-to-bright step is no edge
AGREE = 0.08  # rays within this share of their side's median agree
MIN_AGREEING = 0.5  # share of a side's rays that must agree
MAX_SIDE_GAP = 0.15  # |left - right| / (left + right): the pupil sits near the iris centre
MIN_FLAT = 0.5  # pupil minor / major axis trusted for unforeshortening: flatter is a cut pupil
MIN_FRAMES, MIN_FRAME_SHARE = 5, 0.2  # a recording needs this many frames with an estimate
MAX_SPREAD = 0.1  # interquartile range / median of those estimates

_SPREAD = np.radians(np.linspace(-RAY_SPREAD_DEG, RAY_SPREAD_DEG, RAYS_PER_SIDE))
_ANGLES = np.concatenate([np.pi + _SPREAD, _SPREAD])  # left side's rays, then the right's
RAYS = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1).astype(np.float32)  # (rays, 2) x, y


def ray_samples(
    gray: np.ndarray, centre: tuple[float, float], radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The image along the rays at `radii` (px) from `centre` (x, y): (rays, radii) float32
    samples, left side's rays first, and a bool mask of those inside the frame."""
    map_x = np.float32(centre[0]) + RAYS[:, :1] * radii[None]
    map_y = np.float32(centre[1]) + RAYS[:, 1:] * radii[None]
    h, w = gray.shape
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    samples = cv2.remap(gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return samples.astype(np.float32), inside


def steps(samples: np.ndarray, inside: np.ndarray, half: int) -> np.ndarray:
    """(rays, radii) mean of the `half` samples after each radius minus that of the `half` before
    it: the dark-to-bright step there; -inf where either window leaves the frame or the ray."""
    kernel = np.full((1, 2 * half + 1), 1 / half, np.float32)
    kernel[0, : half + 1] = -kernel[0, : half + 1]
    kernel[0, half] = 0
    step = cv2.filter2D(samples, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    clear = cv2.erode(inside.view(np.uint8), np.ones((1, 2 * half + 1), np.uint8))
    step[clear == 0] = -np.inf
    step[:, :half] = step[:, -half:] = -np.inf
    return step


def median(values: np.ndarray) -> float:
    """np.median of a short 1-D array, without its overhead (tens of microseconds)."""
    values = np.sort(values)
    n = len(values)
    return float(values[(n - 1) // 2] + values[n // 2]) / 2


def side_radius(edges: np.ndarray) -> float:
    """The limbus radius one side's rays agree on (their edges, NaN where a ray found none)."""
    found = edges[np.isfinite(edges)]
    if len(found) < MIN_AGREEING * len(edges):
        return math.nan
    middle = median(found)
    agreeing = found[np.abs(found - middle) <= AGREE * middle]
    return median(agreeing) if len(agreeing) >= MIN_AGREEING * len(edges) else math.nan


def ray_edges(gray: np.ndarray, centre: tuple[float, float], pupil_radius: float) -> np.ndarray:
    """Each ray's limbus, its strongest dark-to-bright step from SEARCH[0] to SEARCH[1] pupil
    radii out (px from `centre`), NaN where a ray has no step of MIN_STEP grey levels."""
    half = max(2, round(0.1 * pupil_radius))  # step window: wide enough for a soft limbus
    radii = np.arange(SEARCH[0] * pupil_radius - half, SEARCH[1] * pupil_radius + half, dtype=np.float32)
    reach = int(radii[-1]) + 2  # the rays' box: sin(30 degrees) = 0.5 of it above and below
    x0, y0 = max(0, int(centre[0]) - reach), max(0, int(centre[1]) - reach // 2 - 2)
    crop = gray[y0 : int(centre[1]) + reach // 2 + 3, x0 : int(centre[0]) + reach + 2]
    if crop.size == 0:
        return np.full(len(RAYS), np.nan)
    samples, inside = ray_samples(crop, (centre[0] - x0, centre[1] - y0), radii)
    for side in (slice(None, RAYS_PER_SIDE), slice(RAYS_PER_SIDE, None)):  # a light blur, per side
        samples[side] = cv2.GaussianBlur(samples[side], (3, 3), 0)
    step = steps(samples, inside, half)
    best = np.argmax(step, axis=1)
    return np.where(step[np.arange(len(step)), best] >= MIN_STEP, radii[best], np.nan)


def unforeshorten(edges: np.ndarray, flat: float, angle: float) -> np.ndarray:
    """The rays' edges as radii of the iris disc, which the camera sees as an ellipse as flat as
    the pupil's (`flat` = minor / major axis) with its major axis along `angle` degrees."""
    off = _ANGLES - math.radians(angle)
    return edges * np.sqrt(np.cos(off) ** 2 + (np.sin(off) / flat) ** 2)


def iris_radius(
    image: np.ndarray,
    centre: tuple[float, float],
    pupil_diameter: float,
    *,
    axis_minor: float | None = None,
    angle: float | None = None,
) -> float:
    """The iris (limbus) radius in pixels around a pupil of `centre` (x, y) and `pupil_diameter`
    (px, its ellipse's major axis) in a grey or BGR uint8 image; NaN where no plausible edge is
    found. Given the pupil ellipse's `axis_minor` (px) and `angle` (degrees, of the major axis),
    the radius is that of the iris disc, undoing the foreshortening of a gaze off the camera."""
    pupil_radius = pupil_diameter / 2
    if not (math.isfinite(pupil_radius) and pupil_radius >= 2 and all(map(math.isfinite, centre))):
        return math.nan
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    edges = ray_edges(gray, centre, pupil_radius)
    if axis_minor is not None and angle is not None and math.isfinite(axis_minor) and math.isfinite(angle):
        edges = unforeshorten(edges, min(1.0, max(MIN_FLAT, axis_minor / pupil_diameter)), angle)
    left, right = side_radius(edges[:RAYS_PER_SIDE]), side_radius(edges[RAYS_PER_SIDE:])
    radius = (left + right) / 2
    if not math.isfinite(radius) or abs(left - right) > MAX_SIDE_GAP * (left + right):
        return math.nan
    return radius if PLAUSIBLE[0] <= radius / pupil_radius <= PLAUSIBLE[1] else math.nan


def recording_iris_radius(radii: Sequence[float]) -> float | None:
    """One iris radius (px) for a recording from per-frame `iris_radius` values (one per frame
    with a confident pupil, NaN where it failed): their median, or None when fewer than
    MIN_FRAMES or MIN_FRAME_SHARE of the frames gave one, or they spread more than MAX_SPREAD."""
    values = np.asarray(radii, dtype=float)
    found = values[np.isfinite(values) & (values > 0)]
    if len(found) < max(MIN_FRAMES, MIN_FRAME_SHARE * len(values)):
        return None
    q1, middle, q3 = np.percentile(found, [25, 50, 75])
    return float(middle) if q3 - q1 <= MAX_SPREAD * middle else None


def mm_per_px_from_iris(radii: Sequence[float]) -> float | None:
    """Millimetres per pixel from per-frame iris radii (see recording_iris_radius), taking the
    iris to be IRIS_DIAMETER_MM across; None when the recording gives no trustworthy radius."""
    radius = recording_iris_radius(radii)
    return None if radius is None else IRIS_DIAMETER_MM / (2 * radius)
