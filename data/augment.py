"""Training augmentation of an eye image and its pupil label, each operation with a probability.

From the reference training: horizontal flip, bright lines (eyelash / reflection clutter), Gaussian
blur. Beyond it, because real cameras vary: a small affine warp, brightness / contrast / gamma
jitter and sensor noise. Geometric operations move image and label together; the loss targets are
made afterwards from the augmented label (see data.targets). Pixel sizes are given for a 640-px-wide
frame and scale with the image width. All randomness comes from the `rng` passed in, so a sample's
augmentation depends only on how that generator was seeded.
"""

import functools
import math

import cv2
import numpy as np

from config import AugmentConfig

_REFERENCE_WIDTH = 640
_LINE_CENTRE = (0.3, 0.7)  # line centres fall in the middle 30-70% of the frame, each axis
_LINE_VALUE = 255
_BLUR_KERNEL = 7


@functools.lru_cache(maxsize=8)
def _noise_bank(h: int, w: int) -> np.ndarray:
    # one fixed field per size; frames take shifted, flipped crops (drawing fresh normals is ~3 ms)
    return np.random.default_rng(0x5EED).standard_normal((h + 64, w + 64), dtype=np.float32)


def gaussian_noise(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 standard normal noise: a random crop of a cached field, ~17k variants."""
    h, w = shape
    bank = _noise_bank(h, w)
    dy, dx = rng.integers(0, 65, 2)
    sy, sx = rng.choice((-1, 1), 2)
    return bank[dy : dy + h, dx : dx + w][::sy, ::sx]


def _affine(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape
    angle = rng.uniform(-config.rotate, config.rotate)
    scale = rng.uniform(*config.scale)
    shift = rng.uniform(-config.translate, config.translate, 2) * (w, h)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    matrix[:, 2] += shift
    warp = functools.partial(cv2.warpAffine, M=matrix, dsize=(w, h), borderMode=cv2.BORDER_REFLECT)
    return warp(image, flags=cv2.INTER_LINEAR), warp(label, flags=cv2.INTER_NEAREST)


def _photometric(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    gamma = math.exp(rng.uniform(*np.log(config.gamma)))
    contrast = 1 + rng.uniform(-config.contrast, config.contrast)
    brightness = 255 * rng.uniform(-config.brightness, config.brightness)
    levels = 255 * (np.arange(256) / 255) ** gamma
    pivot = levels[int(cv2.mean(image)[0])]  # contrast stretches around the image's mean
    lut = (levels - pivot) * contrast + pivot + brightness
    return cv2.LUT(image, np.clip(np.round(lut), 0, 255).astype(np.uint8))


def _lines(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape
    unit = w / _REFERENCE_WIDTH
    image = image.copy()
    centre = rng.uniform(*_LINE_CENTRE, 2) * (w, h)
    thickness = max(1, round(config.line_width * unit))
    for _ in range(rng.integers(config.line_count[0], config.line_count[1] + 1)):
        radii = np.array([rng.uniform(0, config.line_near), rng.uniform(*config.line_far)]) * unit
        angles = rng.uniform(0, 2 * np.pi, 2)
        ends = centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        start, end = (tuple(int(v) for v in np.round(p)) for p in ends)
        cv2.line(image, start, end, _LINE_VALUE, thickness, cv2.LINE_AA)
    return image


def _blur(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    unit = image.shape[1] / _REFERENCE_WIDTH
    kernel = max(3, 2 * round(_BLUR_KERNEL * unit / 2) + 1)
    return cv2.GaussianBlur(image, (kernel, kernel), rng.uniform(*config.blur_sigma) * unit)


def _noise(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0, config.noise_sigma)
    noisy = image + np.float32(sigma) * gaussian_noise(image.shape, rng)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


CROP_ZOOM = (0.6, 1.0)  # a multi-scale crop's side, of the largest window of its shape in the frame


def crop_to(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int], *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random window of an (H, W) image and label with the aspect of (h, w) `size`, resized to it:
    its side a CROP_ZOOM share of the largest such window, placed to hold the pupil's centre where
    there is one. Multi-scale training sees each frame at many pixel scales and shapes this way,
    as a model run at a frame's own size (a 128x128 crop, a 640x400 frame) must."""
    (fh, fw), (h, w) = image.shape[:2], size
    scale = rng.uniform(*CROP_ZOOM) * min(fh / h, fw / w)
    ch, cw = min(fh, max(1, round(h * scale))), min(fw, max(1, round(w * scale)))
    ys, xs = np.nonzero(label)
    if xs.size:  # a corner that keeps the pupil's centre inside, at random
        cy, cx = int(ys.mean()), int(xs.mean())
        top = int(rng.integers(max(0, cy - ch + 1), min(cy, fh - ch) + 1))
        left = int(rng.integers(max(0, cx - cw + 1), min(cx, fw - cw) + 1))
    else:
        top, left = int(rng.integers(0, fh - ch + 1)), int(rng.integers(0, fw - cw + 1))
    window = (slice(top, top + ch), slice(left, left + cw))
    shrinking = ch >= h and cw >= w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    cropped = cv2.resize(image[window], (w, h), interpolation=interpolation)
    return cropped, cv2.resize(label[window], (w, h), interpolation=cv2.INTER_NEAREST)


def augment(
    image: np.ndarray, label: np.ndarray, config: AugmentConfig, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly augment an (H, W) uint8 image and its (H, W) uint8 label; inputs stay untouched."""
    if not config.enabled:
        return image, label
    # every coin is tossed up front, so switching one operation off leaves the others' coins alone
    flip, affine, photometric, lines, blur, noise = rng.random(6) < (
        config.flip_p,
        config.affine_p,
        config.photometric_p,
        config.line_p,
        config.blur_p,
        config.noise_p,
    )
    if flip:
        image, label = cv2.flip(image, 1), cv2.flip(label, 1)
    if affine:
        image, label = _affine(image, label, config, rng)
    if photometric:
        image = _photometric(image, config, rng)
    if lines:
        image = _lines(image, config, rng)
    if blur:
        image = _blur(image, config, rng)
    if noise:
        image = _noise(image, config, rng)
    return image, label
