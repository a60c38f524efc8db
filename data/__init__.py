"""Eye data for pupil segmentation: folders, built-in synthetic eyes, preprocessing, augmentation.

image file -> read_image / read_label -> Frames (data.frames: a folder split or synthetic eyes)
-> EyeDataset (resize, augment, preprocess, loss targets). `preprocess` is the one preprocessing
function of the project; its PreprocessConfig (config/settings.py) travels with every checkpoint and ONNX
file. `python -m data check DIR` validates a dataset before training.
"""

from config import AugmentConfig, DataConfig, PreprocessConfig
from data.check import CheckReport, check_dataset
from data.dataset import EyeDataset, build_datasets, expand_batch
from data.folders import DataError, Sample, find_pairs, read_image, read_label, write_image
from data.frames import Frames, folder_frames, frames_for, synthetic_frames, unlabelled_frames
from data.preprocess import Fit, fit_image, preprocess, resize_image

__all__ = [
    "AugmentConfig",
    "CheckReport",
    "DataConfig",
    "DataError",
    "EyeDataset",
    "Fit",
    "Frames",
    "PreprocessConfig",
    "Sample",
    "build_datasets",
    "check_dataset",
    "expand_batch",
    "find_pairs",
    "fit_image",
    "folder_frames",
    "frames_for",
    "preprocess",
    "read_image",
    "read_label",
    "resize_image",
    "synthetic_frames",
    "unlabelled_frames",
    "write_image",
]
