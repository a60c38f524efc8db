"""What the headset and the camera do to a rendered eye: the domain randomisation of the synthetic eyes.

Real near-infrared eye cameras differ far more than one eye does from another: exposure from
nearly black to washed out, low contrast, the ring and reflections of a VR lens or of glasses,
dark corners, defocus, motion blur, sensor noise, compression blocks and row banding. Each effect
is drawn at random per frame (`CameraConfig` holds the odds and ranges), so a model trained on
these frames has seen every camera as one of many. The label is never touched: these are
appearance only. Pixel sizes are given for a 640-px-wide frame and scale with the frame.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from data.augment import gaussian_noise

_REFERENCE_WIDTH = 640


@dataclass(frozen=True)
class CameraConfig:
    lens_p: float = 0.2  # a VR lens: its ring, and the darker view through its edge
    glare_p: float = 0.15  # a soft reflection of a lens or of glasses across the frame
    vignette_p: float = 0.3  # dark corners, beyond the mild vignetting every frame has
    gain: tuple[float, float] = (0.4, 1.7)  # exposure, drawn log-uniform
    gamma: tuple[float, float] = (0.6, 1.7)  # drawn log-uniform
    low_contrast_p: float = 0.35  # squeeze the grey levels around the mean...
    contrast: tuple[float, float] = (0.35, 0.9)  # ...by this factor
    defocus: tuple[float, float] = (0.5, 3.5)  # Gaussian sigma, px
    motion_p: float = 0.15
    motion_length: tuple[float, float] = (3.0, 14.0)  # px
    noise: tuple[float, float] = (1.0, 8.0)  # Gaussian sigma, grey levels
    banding_p: float = 0.1
    jpeg_p: float = 0.25
    jpeg_quality: tuple[int, int] = (15, 85)


DEFAULT_CAMERA = CameraConfig()
# the first renderer's camera: fixed exposure, mild defocus and noise, nothing else
PLAIN_CAMERA = CameraConfig(
    lens_p=0.0,
    glare_p=0.0,
    vignette_p=0.0,
    gain=(1.0, 1.0),
    gamma=(1.0, 1.0),
    low_contrast_p=0.0,
    defocus=(0.5, 1.5),
    motion_p=0.0,
    noise=(1.5, 4.5),
    banding_p=0.0,
    jpeg_p=0.0,
)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))


def headset(image: np.ndarray, rng: np.random.Generator, config: CameraConfig) -> None:
    """Lens ring, lens or glasses glare and dark corners, into the (H, W) float32 image in place."""
    h, w = image.shape
    scale = w / _REFERENCE_WIDTH
    lens, glare, vignette = rng.random(3) < (config.lens_p, config.glare_p, config.vignette_p)
    if lens:  # the eye seen through a round lens: darker beyond its rim, the rim itself lit or dark
        centre = (w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65))
        axes = (w * rng.uniform(0.8, 1.3), w * rng.uniform(0.7, 1.2))
        box = (centre, axes, rng.uniform(-20, 20))
        inside = np.zeros((h, w), np.uint8)
        cv2.ellipse(inside, box, 1, -1)
        image *= np.where(inside.view(bool), np.float32(1), np.float32(rng.uniform(0.15, 0.6)))
        rim = rng.uniform(150, 255) if rng.random() < 0.6 else rng.uniform(0, 20)
        cv2.ellipse(image, box, rim, max(1, round(rng.uniform(2, 10) * scale)), cv2.LINE_AA)
    if glare:  # a broad, faint, elongated highlight and maybe the thin arc of a rim
        ys, xs = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a = rng.uniform(0, np.pi)
        u = ((xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)) / (w * rng.uniform(0.15, 0.5))
        v = ((ys - cy) * math.cos(a) - (xs - cx) * math.sin(a)) / (w * rng.uniform(0.03, 0.12))
        blob = cv2.resize(np.exp(-(u * u + v * v)), (w, h), interpolation=cv2.INTER_LINEAR)
        image += np.float32(rng.uniform(30, 140)) * blob
        if rng.random() < 0.5:
            arc_box = ((cx, cy), (w * rng.uniform(0.3, 1.0), h * rng.uniform(0.3, 1.0)), math.degrees(a))
            start = rng.uniform(0, 360)
            span = (start, start + rng.uniform(30, 120))
            cv2.ellipse(image, *_ellipse_args(arc_box), *span, 220, 1, cv2.LINE_AA)
    if vignette:
        gx, gy = np.meshgrid(np.linspace(-1, 1, w // 8 or 1), np.linspace(-1, 1, h // 8 or 1))
        dark = 1 - rng.uniform(0.4, 0.9) * np.clip((gx * gx + gy * gy - rng.uniform(0.3, 0.8)) / 0.8, 0, 1)
        image *= cv2.resize(dark.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _ellipse_args(box: tuple) -> tuple:
    """cv2.ellipse's (centre, half axes, angle) from a RotatedRect, integers as it needs them."""
    (cx, cy), (a, b), angle = box
    return (round(cx), round(cy)), (max(1, round(a / 2)), max(1, round(b / 2))), angle


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    size = max(3, int(math.ceil(length)) | 1)
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def expose(image: np.ndarray, rng: np.random.Generator, config: CameraConfig) -> np.ndarray:
    """Optics and sensor: (H, W) float32 scene radiance in, (H, W) uint8 frame out.

    Defocus and motion blur, then exposure, gamma and contrast as one lookup table, then noise,
    row banding and JPEG blocks.
    """
    h, w = image.shape
    scale = w / _REFERENCE_WIDTH
    image = cv2.GaussianBlur(image, (0, 0), _log_uniform(rng, config.defocus) * scale)
    if rng.random() < config.motion_p:
        kernel = _motion_kernel(rng.uniform(*config.motion_length) * scale, rng.uniform(0, np.pi))
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    frame = np.clip(image + 0.5, 0, 255).astype(np.uint8)

    levels = np.arange(256, dtype=np.float32) * _log_uniform(rng, config.gain)
    levels = 255 * np.clip(levels / 255, 0, 1) ** _log_uniform(rng, config.gamma)
    if rng.random() < config.low_contrast_p:
        pivot = levels[int(cv2.mean(frame)[0])]
        levels = pivot + (levels - pivot) * rng.uniform(*config.contrast) + rng.uniform(-10, 25)
    frame = cv2.LUT(frame, np.clip(levels + 0.5, 0, 255).astype(np.uint8))

    noisy = frame + np.float32(rng.uniform(*config.noise)) * gaussian_noise((h, w), rng)
    if rng.random() < config.banding_p:  # rows read out with a slowly drifting offset
        rows = np.sin(np.arange(h, dtype=np.float32) * (2 * np.pi / rng.uniform(4, 40)) + rng.uniform(0, 6.3))
        noisy += np.float32(rng.uniform(1.5, 6)) * rows[:, None]
    frame = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < config.jpeg_p:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        frame = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return frame
