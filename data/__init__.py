"""Eye data for pupil segmentation: folders, built-in synthetic eyes, preprocessing, augmentation.

image file -> read_image / read_label -> EyeDataset (resize, augment, preprocess, loss targets).
`preprocess` is the one preprocessing function of the project; its PreprocessConfig travels with
every checkpoint and ONNX file. `python -m data check DIR` validates a dataset before training.
"""

from data.augment import AugmentConfig
from data.check import CheckReport, check_dataset
from data.config import parse_size, size_argument
from data.dataset import DataConfig, EyeDataset, build_datasets
from data.folders import CLASS_NAMES, DataError, Sample, find_pairs, read_image, read_label
from data.preprocess import Fit, PreprocessConfig, fit_image, preprocess, resize_image

__all__ = [
    "CLASS_NAMES",
    "AugmentConfig",
    "CheckReport",
    "DataConfig",
    "DataError",
    "EyeDataset",
    "Fit",
    "PreprocessConfig",
    "Sample",
    "build_datasets",
    "check_dataset",
    "find_pairs",
    "fit_image",
    "parse_size",
    "preprocess",
    "read_image",
    "read_label",
    "resize_image",
    "size_argument",
]
