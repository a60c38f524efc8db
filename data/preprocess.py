"""The one preprocessing function: training, evaluation, export and prediction all call it.

`fit_image` brings a frame to the model's input size first, the same way for training
(`data.dataset.resize_pair`) and inference: scaled to fit without changing its aspect ratio
(area when shrinking, else bilinear), the rest of the input filled by repeating the frame's edge
pixels (no false edge for the network to see). `Fit` records where the frame went, so a
prediction maps back onto the frame's own pixels exactly (`Fit.crop`). Padding, rather than
running at the frame's own shape, keeps one fixed input size: what ONNX files for edge
accelerators need.

Gamma 0.8 (lookup table), CLAHE (clip 1.5, 8x8 tiles), then (x/255 - mean) / std into [-1, 1],
as in the ShallowNet training this project is compared against. `preprocess` is `enhance` (the
uint8 steps) then `normalise` (a table lookup); training runs the first in its data workers and the
second on the training device (`normalise_tensor`, the same table), so 1 byte a pixel crosses over.
The parameters form a small config stored in every checkpoint and ONNX file, so all users of a
model preprocess alike.
"""

import functools
import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from config import PreprocessConfig


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H_i, W_i) frame to (H, W) `size`: area interpolation when shrinking, else bilinear."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Fit:
    """Where an (H_i, W_i) frame sits in the model input after `fit_image`: rows top..top+height,
    columns left..left+width."""

    top: int
    left: int
    height: int
    width: int

    @classmethod
    def of(cls, shape: tuple[int, ...], size: tuple[int, int], max_scale: float = math.inf) -> "Fit":
        """The fit of a frame of `shape` (H_i, W_i, ...) into (H, W) `size`: scaled by the smaller
        of the two ratios (and at most `max_scale`: 1 pads a frame at its own size), centred."""
        (h, w), (fh, fw) = size, shape[:2]
        scale = min(h / fh, w / fw, max_scale)
        height, width = min(h, max(1, round(fh * scale))), min(w, max(1, round(fw * scale)))
        return cls((h - height) // 2, (w - width) // 2, height, width)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The frame's region of an (..., H, W) array at the input size (a prediction, say)."""
        return array[..., self.top : self.top + self.height, self.left : self.left + self.width]


def fit_image(
    image: np.ndarray,
    size: tuple[int, int],
    *,
    interpolation: int | None = None,
    fill: int | None = None,
    max_scale: float = math.inf,
) -> tuple[np.ndarray, Fit]:
    """Scale an (H_i, W_i) frame into (H, W) `size` keeping its aspect ratio (by at most
    `max_scale`), pad by repeating its edge (or with the constant `fill`, for pictures); returns
    the input and where the frame sits in it. `interpolation` defaults to `resize_image`'s choice
    (give cv2.INTER_NEAREST for labels)."""
    fit = Fit.of(image.shape, size, max_scale)
    if interpolation is None:
        scaled = resize_image(image, (fit.height, fit.width))
    elif image.shape[:2] != (fit.height, fit.width):
        scaled = cv2.resize(image, (fit.width, fit.height), interpolation=interpolation)
    else:
        scaled = image
    h, w = size
    bottom, right = h - fit.height - fit.top, w - fit.width - fit.left
    if fit.top or bottom or fit.left or right:
        border, value = (cv2.BORDER_REPLICATE, None) if fill is None else (cv2.BORDER_CONSTANT, (fill,) * 4)
        scaled = cv2.copyMakeBorder(scaled, fit.top, bottom, fit.left, right, border, value=value)
    return scaled, fit


DEFAULT_PREPROCESS = PreprocessConfig()


@functools.lru_cache(maxsize=16)
def _lookup_tables(config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    levels = np.arange(256) / 255
    gamma = np.round(255 * levels**config.gamma).astype(np.uint8)
    table = ((levels - config.mean) / config.std).astype(np.float32)
    table.flags.writeable = False
    return gamma, table


@functools.lru_cache(maxsize=64)
def _clahe(config: PreprocessConfig, thread: int) -> cv2.CLAHE:
    # reusing one keeps its scratch buffers (~10% of the call); it is not safe to share across threads
    return cv2.createCLAHE(clipLimit=config.clahe_clip, tileGridSize=config.clahe_tiles)


def enhance(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """The first half of `preprocess`: (H, W) uint8 -> (H, W) uint8 after gamma and CLAHE."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(
            f"preprocess expects an (H, W) uint8 image, got shape {image.shape} dtype {image.dtype}"
        )
    gamma, _ = _lookup_tables(config)
    return _clahe(config, threading.get_ident()).apply(cv2.LUT(image, gamma))


def normalise(enhanced: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """The second half: (H, W) uint8 from `enhance` -> float32 (x/255 - mean) / std, by table."""
    return cv2.LUT(enhanced, _lookup_tables(config)[1])


@functools.lru_cache(maxsize=16)
def _device_table(config: PreprocessConfig, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(_lookup_tables(config)[1].copy()).to(device)  # copied once, not per batch


def normalise_tensor(enhanced: torch.Tensor, config: PreprocessConfig = DEFAULT_PREPROCESS) -> torch.Tensor:
    """`normalise` for a uint8 tensor on any device, by the same table, so bit-identical to it:
    training moves 1-byte frames to the GPU and finishes them there (data.dataset.expand_batch)."""
    return _device_table(config, enhanced.device)[enhanced.long()]


def preprocess(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """(H, W) uint8 grayscale -> (H, W) float32, in [-1, 1] for the default mean and std."""
    return normalise(enhance(image, config), config)
