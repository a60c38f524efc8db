"""The training dataset: decode, resize, augment, preprocess and make loss targets, per sample.

Each item is a dict of compact tensors, 5 bytes a pixel (1.3 MB at 400x640, where full-width
targets take 24): what DataLoader workers pickle, pinned memory holds and the bus carries.
    image  (1, H, W) uint8    enhanced (data.preprocess.enhance), not yet normalised
    label  (H, W)    uint8    0 background, 1 pupil
    weight (H, W)    uint8    boundary map (0 or BOUNDARY_WEIGHT); CE is weighted by 1 + weight
    dist   (1, H, W) float16  the pupil's signed distance map; background's is its negative
    index  int
`expand_batch` turns a batch of them, on the training device, into what the model and
CombinedLoss take: the normalised image is bit-identical to `preprocess`'s, the weight exact, the
distances within float16 rounding (2.5e-4 of the image diagonal).
Augmentation is seeded by (seed, epoch, index) alone, so a sample comes out the same whatever the
number of DataLoader workers or the order: an interrupted training resumes exactly. Items are
indexed by `index` or by an `(epoch, index)` pair, as data.loading.EpochSampler yields them, so
persistent workers learn each epoch from the sampler.
"""

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from config import AugmentConfig, DataConfig, PreprocessConfig
from data.augment import augment, crop_to
from data.frames import Frames, frames_for, verify
from data.preprocess import enhance, fit_image, normalise_tensor
from data.targets import boundary_weight, distance_maps


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit image and label (nearest) into (H, W) `size` as `fit_image` does: aspect kept, edges
    repeated (the label's too, so the two always agree)."""
    if image.shape == tuple(size):
        return image, label
    return fit_image(image, size)[0], fit_image(label, size, interpolation=cv2.INTER_NEAREST)[0]


class EyeDataset(Dataset):
    """Eye frames (`data.frames.Frames`) as training-ready tensors at (H, W) `img_size`.

    augment_config: None for evaluation. seed: with the epoch and the index, fixes augmentation.
    """

    def __init__(
        self,
        frames: Frames,
        img_size: tuple[int, int],
        preprocess_config: PreprocessConfig,
        augment_config: AugmentConfig | None,
        seed: int,
    ) -> None:
        if len(frames) == 0:
            raise ValueError(f"EyeDataset needs at least one frame: {frames.description}")
        if seed < 0:
            raise ValueError(f"EyeDataset seed must be >= 0, got {seed}")
        self.frames = frames
        self.source_name = frames.kind
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.preprocess_config = preprocess_config
        self.augment_config = augment_config
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch's augmentation for items read by index alone (tests, previews). Training's
        persistent workers never see it: their items come as (epoch, index) from the sampler."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def load(
        self, index: int, size: tuple[int, int] | None = None, *, epoch: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) uint8 image and {0, 1} label of a sample at img_size, before augmentation; with
        `size`, a multi-scale crop of that size around the pupil (`data.augment.crop_to`), its coins
        drawn from a generator of its own so that the augmentation's stay as they are."""
        image, label = self.frames.read(index)
        if label is None:
            raise ValueError(f"{self.frames.names[index]} has no label; training needs labelled frames")
        if size is None:
            return resize_pair(image, label, self.img_size)
        return crop_to(image, label, size, rng=np.random.default_rng((self.seed, epoch, index, 1)))

    def __getitem__(self, key: int | tuple) -> dict[str, torch.Tensor | int]:
        """Item `index`, `(epoch, index)`, or `(epoch, index, (h, w))`: a multi-scale batch's frame."""
        epoch, index, size = (*key, None)[:3] if isinstance(key, tuple) else (self.epoch, key, None)
        index = range(len(self))[index]  # negative indices too; IndexError past the end
        image, label = self.load(index, size, epoch=epoch)
        if self.augment_config is not None:
            rng = np.random.default_rng((self.seed, epoch, index))
            image, label = augment(image, label, self.augment_config, rng=rng)
        return {
            "image": torch.from_numpy(enhance(image, self.preprocess_config)[None]),
            "label": torch.from_numpy(label.astype(np.uint8)),  # a copy: frames may cache theirs
            "weight": torch.from_numpy(boundary_weight(label).astype(np.uint8)),
            "dist": torch.from_numpy(distance_maps(label)[1:].astype(np.float16)),
            "index": index,
        }


def expand_batch(batch: dict, device: torch.device, preprocess_config: PreprocessConfig) -> dict:
    """A collated batch of EyeDataset items, moved to `device` and widened there: image (B, 1, H, W)
    float32 (channels_last on CUDA), label (B, H, W) int64, weight (B, H, W) float32, dist
    (B, 2, H, W) float32; whatever else the batch holds stays where it is."""
    moved = {k: batch[k].to(device, non_blocking=True) for k in ("image", "label", "weight", "dist")}
    image = normalise_tensor(moved["image"], preprocess_config)
    if device.type == "cuda":
        image = image.contiguous(memory_format=torch.channels_last)
    pupil = moved["dist"].float()
    return batch | {
        "image": image,
        "label": moved["label"].long(),
        "weight": moved["weight"].float(),
        "dist": torch.cat([-pupil, pupil], dim=1),
    }


def build_datasets(
    config: DataConfig,
    preprocess_config: PreprocessConfig,
    augment_config: AugmentConfig,
    *,
    seed: int,
) -> tuple[EyeDataset, EyeDataset]:
    """(train with augmentation, validation without) from config.data_dir, or synthetic eyes.

    Folder problems found without decoding every file (missing folders, unmatched files, a
    first pair that does not read) raise DataError here, before training starts.
    """
    made = []
    for split, n in (("train", config.synthetic_train), ("validation", config.synthetic_val)):
        frames = frames_for(
            config.data_dir, split, n=n, seed=seed, size=config.img_size, style=config.synthetic_style
        )
        frames.read(0)  # one decode now catches a wrong format before any worker starts
        verify(frames)  # and every file is whole, before epoch 1 rather than during it
        made.append(frames)
    return (
        EyeDataset(made[0], config.img_size, preprocess_config, augment_config, seed),
        EyeDataset(made[1], config.img_size, preprocess_config, None, seed),
    )
