"""The parts of a synthetic eye, each drawn into a float image in place: eyelids, the eyeball
(sclera, iris with its fibres and limbus, pupil), skin under uneven light, lashes, corneal glints;
and the sub-pixel drawing helpers they share. `render.render_eye` composes them into a frame.
A function that draws into an image takes `(image, rng, ...)`, and everything past the third
parameter by keyword. The order of the random draws inside each fixes the frames: change it and
every (seed, index) renders differently.
"""

import functools
import math

import cv2
import numpy as np

SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel outlines
LID_POINTS = 48
COARSE = 8  # smooth layers (skin texture, light) are drawn at 1/8 resolution, then upsampled


def fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << SHIFT)).astype(np.int32)


def draw_lines(image: np.ndarray, curves: np.ndarray, value: float, *, thickness: int) -> None:
    """Anti-aliased open polylines, (N, points, 2) float (x, y), into the image in place."""
    cv2.polylines(image, list(fixed(curves)), False, value, thickness, cv2.LINE_AA, SHIFT)


@functools.lru_cache(maxsize=8)
def coarse_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    # x and y from -1 to 1 over the coarse grid that smooth layers are drawn on
    ys = np.linspace(-1, 1, max(2, h // COARSE), dtype=np.float32)
    xs = np.linspace(-1, 1, max(2, w // COARSE), dtype=np.float32)
    return np.meshgrid(xs, ys)


def to_coarse(points: np.ndarray) -> np.ndarray:
    # full-resolution (x, y) to coarse grid coordinates, pixel centres aligned as cv2.resize does
    return (points + 0.5) / COARSE - 0.5


def smooth_noise(rng: np.random.Generator, cells: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    coarse = rng.standard_normal(cells, dtype=np.float32)
    return cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)


def ellipse_pixels(box: tuple) -> int:
    """How many pixels cv2 fills for the RotatedRect `box`, wherever it lies, frame or not."""
    (cx, cy), axes, angle = box
    r = int(max(axes) / 2) + 2
    canvas = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    cv2.ellipse(canvas, ((r + cx % 1, r + cy % 1), axes, angle), 1, -1)  # same sub-pixel phase
    return cv2.countNonZero(canvas)


def eyelids(
    rng: np.random.Generator, centre: np.ndarray, radius: float, *, drop: float, openness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper lid, lower lid, upper crease and lower fold: (48, 2) points, corner to corner."""
    half_width = radius * rng.uniform(2.1, 2.6)
    corners_y = centre[1] + radius * rng.uniform(0.0, 0.25, 2)
    s = np.linspace(-1, 1, LID_POINTS, dtype=np.float32)
    x = centre[0] + half_width * s
    base = corners_y[0] + (corners_y[1] - corners_y[0]) * (s + 1) / 2
    bump_up = (1 - s * s) ** 0.8 * (1 + rng.uniform(-0.3, 0.3) * s)  # rounded, skewed apex
    bump_lo = (1 - s * s) * (1 + rng.uniform(-0.3, 0.3) * s)
    # the upper lid follows a downward gaze (drop > 0) much more than the lower one does
    lower = base + max(0.2 * radius, radius * rng.uniform(0.55, 0.85) + 0.3 * drop) * bump_lo
    opened = base - max(0.2 * radius, radius * rng.uniform(0.95, 1.25) - 0.6 * drop) * bump_up
    upper = lower + openness * (opened - lower)
    crease = opened - radius * rng.uniform(0.35, 0.75) * bump_up
    fold = lower + radius * rng.uniform(0.3, 0.6) * bump_lo
    upper, lower, crease, fold = (np.stack([x, y], axis=1) for y in (upper, lower, crease, fold))
    return upper, lower, crease, fold


def iris_texture(rng: np.random.Generator, pupil_ratio: float, value: float) -> np.ndarray:
    """(32, 129) iris intensity over (radius 0..1.05 of the iris, angle 0..2pi, wrapped)."""
    rho = np.linspace(0, 1.05, 32, dtype=np.float32)[:, None]
    fibres = cv2.GaussianBlur(rng.standard_normal((32, 128), dtype=np.float32), (0, 0), 0.6, 0, 2.5)
    fibres *= rng.uniform(0.06, 0.16) / fibres.std()  # radial streaks
    patches = smooth_noise(rng, (4, 16), (32, 128)) * rng.uniform(0.03, 0.1)
    collarette = pupil_ratio + (1 - pupil_ratio) * rng.uniform(0.2, 0.35)
    profile = (
        1
        + rng.uniform(0.05, 0.2) * np.exp(-(((rho - collarette) / 0.08) ** 2))
        - 0.2 * np.exp(-(((rho - pupil_ratio) / 0.04) ** 2))  # pupillary ruff
        - rng.uniform(0.3, 0.6) * np.clip((rho - 0.8) / 0.2, 0, 1) ** 2  # dark limbus
    )
    texture = value * profile * (1 + fibres + patches)
    return np.hstack([texture, texture[:, :1]])


def draw_iris(
    image: np.ndarray, rng: np.random.Generator, box: tuple, *, pupil_ratio: float, value: float
) -> None:
    """Paint the textured iris ellipse `box` (a cv2 RotatedRect) into the float image in place."""
    (cx, cy), (minor, major), angle = box
    h, w = image.shape
    reach = major / 2 + 2
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    u = (dx * cos + dy * sin) / np.float32(minor / 2)  # along the flattened axis
    v = (dy * cos - dx * sin) / np.float32(major / 2)
    map_x = (np.arctan2(v, u) + np.float32(np.pi)) * np.float32(128 / (2 * np.pi))
    map_y = np.sqrt(u * u + v * v) * np.float32(31 / 1.05)
    texture = iris_texture(rng, pupil_ratio, value)
    patch = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(inside, ((cx - x0, cy - y0), (minor, major), angle), 1, -1)
    np.copyto(image[y0:y1, x0:x1], patch, where=inside.view(bool))


def eyeball(
    image: np.ndarray,
    rng: np.random.Generator,
    opening: np.ndarray,
    *,
    lids: tuple[np.ndarray, np.ndarray],
    iris_box: tuple,
    pupil: np.ndarray,
    pupil_ratio: float,
    values: tuple[float, float, float],
) -> None:
    """Paint sclera, iris and pupil (`values`, grey levels) where the lids are open, in place."""
    h, w = image.shape
    upper, lower = lids
    outline = np.concatenate(lids)
    x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + 3, (w, h))
    if x0 >= x1 or y0 >= y1:
        return
    (icx, icy), axes, angle = iris_box
    brightness, iris_value, pupil_value = values
    # smooth shading over 4x4-pixel cells, then upsampled: xs, ys are the cell centres
    xs = x0 + 1.5 + 4 * np.arange(math.ceil((x1 - x0) / 4), dtype=np.float32)
    ys = y0 + 1.5 + 4 * np.arange(math.ceil((y1 - y0) / 4), dtype=np.float32)
    half_width = (upper[-1, 0] - upper[0, 0]) / 2
    lid = np.interp(xs, *upper[np.argsort(upper[:, 0])].T).astype(np.float32)  # rolled lids too
    # eyeball curvature darkens the sclera towards the corners; below the upper lid, its shadow
    # exp((lid - y) / reach) and the caruncle's darkening at the nasal corner are separable
    shade = brightness * (1 - rng.uniform(0.25, 0.5) * ((xs - icx) / half_width) ** 2)
    reach = np.float32(rng.uniform(0.15, 0.35) * axes[1] / 2)
    shadow = np.outer(np.exp((y0 - ys) / reach), np.exp((lid - y0) / reach))
    shade = shade * (1 - rng.uniform(0.2, 0.5) * shadow)
    inner = upper[0] if rng.random() < 0.5 else upper[-1]
    spread = np.float32(2 * (0.3 * axes[1] / 2) ** 2)
    shade *= 1 - 0.4 * np.outer(
        np.exp(-((ys - inner[1]) ** 2) / spread), np.exp(-((xs - inner[0]) ** 2) / spread)
    )
    eye = cv2.resize(shade, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    draw_iris(eye, rng, ((icx - x0, icy - y0), axes, angle), pupil_ratio=pupil_ratio, value=iris_value)
    np.copyto(eye, np.float32(pupil_value), where=pupil[y0:y1, x0:x1].view(bool))
    np.copyto(image[y0:y1, x0:x1], eye, where=opening[y0:y1, x0:x1].view(bool))


def skin_and_light(
    rng: np.random.Generator,
    shape: tuple[int, int],
    folds: list[np.ndarray],
    *,
    radius: float,
    brightness: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 textured skin, and the light falling on the frame: gradient, illuminator
    hot spot, vignetting, shadows of the eye socket, the lid crease and a frame side."""
    h, w = shape
    gx, gy = coarse_grid(h, w)
    skin = brightness * (
        1
        + smooth_noise(rng, (6, 10), gx.shape) * rng.uniform(0.02, 0.05)
        + smooth_noise(rng, (24, 40), gx.shape) * rng.uniform(0.01, 0.03)
    )
    light = 1 + rng.uniform(-0.25, 0.25) * gx + rng.uniform(-0.25, 0.25) * gy
    spot = rng.uniform(-0.5, 0.5, 2)  # the illuminator's hot spot
    light += rng.uniform(0, 0.3) * np.exp(-((gx - spot[0]) ** 2 + (gy - spot[1]) ** 2) / 0.5)
    light *= 1 - rng.uniform(0.15, 0.5) * (gx * gx + gy * gy) / 2  # vignetting
    if rng.random() < 0.35:  # a large soft shadow from one side (nose, headset rim)
        a = rng.uniform(0, 2 * np.pi)
        ramp = (gx * math.cos(a) + gy * math.sin(a) - rng.uniform(0.3, 0.9)) / 0.25
        light *= 1 - rng.uniform(0.2, 0.5) / (1 + np.exp(-ramp))
    # eye socket between the crease and the lower fold, the crease and fold lines deeper still
    crease, fold = (to_coarse(f) for f in folds)
    dark = np.zeros_like(light)
    socket = fixed(np.concatenate([crease, fold[::-1]]))
    cv2.fillPoly(dark, [socket], rng.uniform(0.03, 0.12), cv2.LINE_AA, SHIFT)
    thickness = max(1, round(0.3 * radius / COARSE))
    draw_lines(dark, crease[None], rng.uniform(0.1, 0.3), thickness=thickness)
    draw_lines(dark, fold[None], rng.uniform(0.04, 0.12), thickness=thickness)
    light *= 1 - cv2.GaussianBlur(dark, (0, 0), 1.5)
    skin, light = (cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR) for a in (skin, light))
    return skin, light


def lashes(image: np.ndarray, rng: np.random.Generator, lid: np.ndarray, *, unit: float, upper: bool) -> None:
    """Draw curved, tapering lashes rooted along `lid` into the float image in place."""
    n = int(rng.uniform(50, 120) if upper else rng.uniform(10, 30))
    t = rng.uniform(0.05, 0.95, n)
    index = t * (len(lid) - 1)
    roots = np.stack([np.interp(index, np.arange(len(lid)), lid[:, i]) for i in (0, 1)], 1)
    fan = (t - 0.5) * np.radians(rng.uniform(70, 120)) + rng.normal(0, 0.15, n)
    # upper lashes mostly rise; from below, the camera sees some of them hang over the eye
    down = rng.random(n) < (rng.uniform(0, 0.4) if upper else 1)
    angle = np.where(down, np.pi / 2 - fan, -np.pi / 2 + fan)
    length = unit * (rng.uniform(18, 55, n) if upper else rng.uniform(6, 16, n))
    length *= 1 - 0.5 * (2 * t - 1) ** 2
    curl = rng.uniform(0.1, 0.4, n) * length * np.sign(t - 0.5)
    k = np.linspace(0, 1, 5)[None, :, None]
    along = np.stack([np.cos(angle), np.sin(angle)], 1)[:, None, :]
    across = np.stack([-np.sin(angle), np.cos(angle)], 1)[:, None, :]
    curves = roots[:, None] + length[:, None, None] * k * along + curl[:, None, None] * k**2 * across
    value = rng.uniform(10, 40) if upper else rng.uniform(50, 90)
    draw_lines(image, curves, value, thickness=1)
    if upper:  # thicker towards the root
        draw_lines(image, curves[:, :2], value, thickness=max(1, round(2 * unit)))


def draw_glints(
    image: np.ndarray,
    rng: np.random.Generator,
    opening: np.ndarray,
    *,
    iris_box: tuple,
    pupil_box: tuple,
    eye_centre: np.ndarray,
    unit: float,
    large_p: float,
) -> list[tuple[float, float]]:
    """Draw 1-8 corneal reflections of the illuminator ring (or 1-3 blobs that swallow part of the
    pupil border), and now and then a stray one on the skin; returns the corneal ones' (x, y)."""
    (icx, icy), (_, iris_d), _ = iris_box
    (pcx, pcy), (_, pupil_d), _ = pupil_box
    large = rng.random() < large_p  # a close or broad illuminator: one to three blobs of a quarter pupil
    n = int(rng.integers(1, 4 if large else 9))
    if rng.random() < 0.45:  # the ring lands on the pupil edge
        centre, radius = np.array([pcx, pcy]), pupil_d / 2 * rng.uniform(0.7, 1.1)
    else:
        centre = np.array([icx, icy]) + 0.3 * (eye_centre - (icx, icy))
        centre += rng.normal(0, 0.05 * iris_d, 2)
        radius = iris_d / 2 * rng.uniform(0.15, 0.75)
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n + rng.normal(0, 0.12, n)
    points = centre + radius * np.stack([np.cos(angles), rng.uniform(0.6, 1) * np.sin(angles)], 1)
    sizes = unit * (rng.uniform(4, 11, n) if large else rng.uniform(1.2, 3.5, n))
    peak = rng.uniform(170, 255)
    h, w = opening.shape
    drawn = []
    for (x, y), size in zip(points, sizes, strict=True):
        if 0 <= x < w and 0 <= y < h and opening[int(y), int(x)]:
            draw_glint(image, (x, y), size, peak=peak)
            drawn.append((float(x), float(y)))
    if rng.random() < 0.3:  # reflections off the skin or a lens, anywhere
        for x, y in rng.uniform(0, 1, (int(rng.integers(1, 3)), 2)) * (w, h):
            draw_glint(image, (x, y), unit * rng.uniform(1.5, 4), peak=rng.uniform(120, 255))
    return drawn


def draw_glint(image: np.ndarray, at: tuple[float, float], size: float, *, peak: float) -> None:
    x, y = at
    centre = tuple(fixed(np.array([x, y])))
    halo = (float(image[int(y), int(x)]) + peak) / 2
    cv2.circle(image, centre, round(1.8 * size * 16), halo, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(image, centre, round(size * 16), peak, -1, cv2.LINE_AA, SHIFT)


def rotate(points: np.ndarray, centre: np.ndarray, degrees: float) -> np.ndarray:
    """(..., 2) points (x, y) turned about `centre` by `degrees` (clockwise on screen, as cv2)."""
    a = math.radians(degrees)
    turn = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], np.float32)
    return (points - centre) @ turn + centre
