"""The training dataset: decode, resize, augment, preprocess and make loss targets, per sample.

Each item is a dict of tensors:
    image  (1, H, W) float32  preprocessed (data.preprocess)
    label  (H, W)    int64    0 background, 1 pupil
    weight (H, W)    float32  boundary map; the cross-entropy is weighted by 1 + weight
    dist   (2, H, W) float32  signed distance per class, for the surface loss
    index  int
Augmentation is seeded by (seed, epoch, index) alone, so a sample comes out the same whatever the
number of DataLoader workers or the order: an interrupted training resumes exactly.
"""

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data.augment import AugmentConfig, augment
from data.config import DictConfig
from data.folders import Sample, find_pairs, label_layout, read_pair
from data.preprocess import PreprocessConfig, fit_image, preprocess
from data.synthetic import SyntheticEyes
from data.targets import boundary_weight, distance_maps

VAL_SEED_OFFSET = 1_000_003  # synthetic validation frames come from another seed than training


@dataclass(frozen=True)
class DataConfig(DictConfig):
    data_dir: str | None = None  # None: the built-in synthetic eyes
    img_size: tuple[int, int] = (400, 640)  # (H, W) the model sees; other sizes are resized
    synthetic_train: int = 1000  # rendered on the fly; the default keeps a CPU epoch short
    synthetic_val: int = 100
    synthetic_style: str = "full"  # data.synthetic.render.STYLES: the full randomisation or an ablation

    def __post_init__(self) -> None:
        size = self.img_size
        if not (isinstance(size, tuple) and len(size) == 2 and all(v >= 16 for v in size)):
            raise ValueError(f"DataConfig.img_size must be (H, W) of at least 16 each, got {size}")
        for name in ("synthetic_train", "synthetic_val"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name} must be >= 1, got {getattr(self, name)}")


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit image and label (nearest) into (H, W) `size` as `fit_image` does: aspect kept, edges
    repeated (the label's too, so the two always agree)."""
    if image.shape == tuple(size):
        return image, label
    return fit_image(image, size)[0], fit_image(label, size, cv2.INTER_NEAREST)[0]


class EyeDataset(Dataset):
    """Eye frames from folder samples or SyntheticEyes, as training-ready tensors.

    source: pairs from find_pairs, or a SyntheticEyes. img_size: (H, W) of every item.
    augment_config: None for evaluation. seed: with the epoch and the index, fixes augmentation.
    """

    def __init__(
        self,
        source: list[Sample] | SyntheticEyes,
        img_size: tuple[int, int],
        preprocess_config: PreprocessConfig,
        augment_config: AugmentConfig | None,
        seed: int,
    ) -> None:
        if isinstance(source, SyntheticEyes):
            self.source_name = "synthetic"
        else:
            source = list(source)
            if not source:
                raise ValueError("EyeDataset needs at least one sample, got an empty list")
            self.source_name = label_layout(source[0].label)
        if seed < 0:
            raise ValueError(f"EyeDataset seed must be >= 0, got {seed}")
        self.source = source
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.preprocess_config = preprocess_config
        self.augment_config = augment_config
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch's augmentation. Call it before iterating; DataLoader workers copy the
        dataset when an epoch starts, so it reaches them unless persistent_workers=True."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) uint8 image and {0, 1} label of a sample at img_size, before augmentation."""
        if isinstance(self.source, SyntheticEyes):
            image, label = self.source.read(index)
        else:
            image, label = read_pair(self.source[index])
        return resize_pair(image, label, self.img_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # negative indices too; IndexError past the end
        image, label = self.load(index)
        if self.augment_config is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            image, label = augment(image, label, self.augment_config, rng)
        return {
            "image": torch.from_numpy(preprocess(image, self.preprocess_config)[None]),
            "label": torch.from_numpy(label.astype(np.int64)),
            "weight": torch.from_numpy(boundary_weight(label)),
            "dist": torch.from_numpy(distance_maps(label)),
            "index": index,
        }


def _folder_source(data_dir: str, split: str) -> list[Sample]:
    samples = find_pairs(data_dir, split)
    read_pair(samples[0])  # one decode now catches a wrong format before any worker starts
    return samples


def synthetic_validation(n: int, seed: int, size: tuple[int, int], style: str = "full") -> SyntheticEyes:
    """The synthetic frames a training run with `seed` validates on (never among its training frames)."""
    return SyntheticEyes(n, seed + VAL_SEED_OFFSET, size, style)


def build_datasets(
    config: DataConfig,
    preprocess_config: PreprocessConfig,
    augment_config: AugmentConfig,
    seed: int,
) -> tuple[EyeDataset, EyeDataset]:
    """(train with augmentation, validation without) from config.data_dir, or synthetic eyes.

    Folder problems found without decoding every file (missing folders, unmatched files, a
    first pair that does not read) raise DataError here, before training starts.
    """
    if config.data_dir is None:
        train = SyntheticEyes(config.synthetic_train, seed, config.img_size, config.synthetic_style)
        val = synthetic_validation(config.synthetic_val, seed, config.img_size, config.synthetic_style)
    else:
        train = _folder_source(config.data_dir, "train")
        val = _folder_source(config.data_dir, "validation")
    return (
        EyeDataset(train, config.img_size, preprocess_config, augment_config, seed),
        EyeDataset(val, config.img_size, preprocess_config, None, seed),
    )
