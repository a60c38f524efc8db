"""The one preprocessing function: training, evaluation, export and prediction all call it.

`resize_image` brings a frame to the model's input size first (area when shrinking, else
bilinear), the same way for training (`data.dataset.resize_pair`) and inference.

Gamma 0.8 (lookup table), CLAHE (clip 1.5, 8x8 tiles), then (x/255 - mean) / std into [-1, 1],
as in the ShallowNet training this project is compared against. The parameters form a small
config stored in every checkpoint and ONNX file, so all users of a model preprocess alike.
"""

import functools
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from data.config import DictConfig


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H_i, W_i) frame to (H, W) `size`: area interpolation when shrinking, else bilinear."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class PreprocessConfig(DictConfig):
    gamma: float = 0.8
    clahe_clip: float = 1.5
    clahe_tiles: tuple[int, int] = (8, 8)  # tiles across, down
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self) -> None:
        for name in ("gamma", "clahe_clip", "std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PreprocessConfig.{name} must be > 0, got {getattr(self, name)}")
        tiles = self.clahe_tiles
        if not (
            isinstance(tiles, tuple) and len(tiles) == 2 and all(isinstance(t, int) and t > 0 for t in tiles)
        ):
            raise ValueError(f"PreprocessConfig.clahe_tiles must be two positive ints, got {tiles}")


DEFAULT_PREPROCESS = PreprocessConfig()


@functools.lru_cache(maxsize=16)
def _lookup_tables(config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    levels = np.arange(256) / 255
    gamma = np.round(255 * levels**config.gamma).astype(np.uint8)
    normalise = ((levels - config.mean) / config.std).astype(np.float32)
    return gamma, normalise


@functools.lru_cache(maxsize=64)
def _clahe(config: PreprocessConfig, thread: int) -> cv2.CLAHE:
    # reusing one keeps its scratch buffers (~10% of the call); it is not safe to share across threads
    return cv2.createCLAHE(clipLimit=config.clahe_clip, tileGridSize=config.clahe_tiles)


def preprocess(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """(H, W) uint8 grayscale -> (H, W) float32, in [-1, 1] for the default mean and std."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(
            f"preprocess expects an (H, W) uint8 image, got shape {image.shape} dtype {image.dtype}"
        )
    gamma, normalise = _lookup_tables(config)
    clahe = _clahe(config, threading.get_ident())
    return cv2.LUT(clahe.apply(cv2.LUT(image, gamma)), normalise)
