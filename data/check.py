"""Dataset check: decode every file of every split and report all problems, each with its file.

Run before training (`python -m data check DIR`): it validates whichever of train, validation
(or val) and test exist, and reports per split the layout, the number of pairs, the image sizes,
the label values, the mean pupil fraction and the frames without a pupil. A train or validation
split without a pupil in any frame is a problem. The verdict says what the dataset is usable for:
training (train and validation), evaluation only (real test sets often come without a train
split; it names the command that scores each split), or nothing.
"""

import os
import shlex
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from data.folders import (
    DataError,
    Layout,
    Sample,
    check_shapes,
    dataset_root,
    read_image,
    read_raw_label,
    scan_split,
    split_folder,
    to_pupil,
)

_SPLITS = ("train", "validation", "test")
_LISTED = 50  # problems printed by format(); the report keeps them all
_NO_PUPIL = {
    "train": "the model would only learn to predict no pupil",
    "validation": "best.pt would be chosen on a meaningless pupil IoU",
}
_TRAINING_FOLDERS = {"train": "train/", "validation": "validation/ (or val/)"}
_TRAINING_NEEDS = "training needs a train/ and a validation/ (or val/) split"
_EVALUATE = "python evaluate.py --checkpoint runs/<run>/best.pt"  # evaluate.py's own flags
MAX_PUPIL_SHARE = 0.3  # a pupil never covers this much of an eye frame; an inverted or soft mask does

Usable = Literal["training", "evaluation"]


@dataclass
class SplitStats:
    """One split as found on disk; the numbers cover the frames whose label could be read."""

    name: str  # folder name: train, validation, val or test
    layout: Layout
    pairs: int
    image_sizes: Counter[str] = field(default_factory=Counter)  # "WxH" -> frames
    label_values: set[int] = field(default_factory=set)
    pupil_fraction: float = 0.0  # mean over frames of the pupil's share of the pixels
    frames_without_pupil: int = 0

    def format(self) -> str:
        layout = "OpenEDS labels" if self.layout == "openeds" else "pupil masks"
        sizes = ", ".join(f"{size} ({n})" for size, n in self.image_sizes.most_common())
        values = ", ".join(str(v) for v in sorted(self.label_values))
        return (
            f"{self.name} ({layout}): {self.pairs} pairs\n"
            f"  image sizes: {sizes or 'none readable'}\n"
            f"  label values: {values or 'none readable'}\n"
            f"  pupil: {100 * self.pupil_fraction:.2f}% of pixels on average, "
            f"{self.frames_without_pupil} of {self.pairs} frames without pupil"
        )


@dataclass
class CheckReport:
    """Per-split statistics and every problem found, each naming its file."""

    root: Path
    splits: list[SplitStats] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def usable_for(self) -> Usable | None:
        """What the dataset can be used for: training (train and validation have pairs), evaluation
        only (some split has pairs), or None (no split has, or any problem was found)."""
        if self.problems or not self.evaluable:
            return None
        return "evaluation" if self.missing_for_training else "training"

    @property
    def ok(self) -> bool:
        """Usable for training: train and validation found, and no problem anywhere."""
        return self.usable_for == "training"

    @property
    def evaluable(self) -> list[str]:
        """Folder names of the splits with image/label pairs, each one `evaluate.py --split` takes."""
        return [s.name for s in self.splits if s.pairs]

    @property
    def missing_for_training(self) -> list[str]:
        """The folders training needs that have no pairs here: train/, validation/ (or val/)."""
        found = {"validation" if s.name == "val" else s.name for s in self.splits if s.pairs}
        return [folder for split, folder in _TRAINING_FOLDERS.items() if split not in found]

    def format(self) -> str:
        lines = [f"dataset {self.root}"] + [s.format() for s in self.splits]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {p}" for p in self.problems[:_LISTED]]
            if len(self.problems) > _LISTED:
                lines.append(f"  ... and {len(self.problems) - _LISTED} more")
        return "\n".join([*lines, *self._verdict()])

    def _verdict(self) -> list[str]:
        if self.usable_for == "training":
            return ["OK: usable for training"]
        if self.problems:
            return ["NOT USABLE: fix the problems above"]
        if self.usable_for is None:
            return [
                f"NOT USABLE: no split with image/label pairs; {_TRAINING_NEEDS}, "
                "evaluation any one of train/, validation/ (or val/), test/"
            ]
        root = shlex.quote(str(self.root))
        return [
            f"OK: usable for evaluation only ({', '.join(self.evaluable)}), not for training",
            *(f"  evaluate: {_EVALUATE} --data-dir {root} --split {name}" for name in self.evaluable),
            f"  {_TRAINING_NEEDS}; this dataset has no {' and no '.join(self.missing_for_training)}",
        ]


@dataclass(frozen=True)
class _Frame:
    size: str | None  # "WxH" of a readable image
    values: np.ndarray | None  # label values present, of a readable label
    pupil_fraction: float
    problems: list[str]


def _inspect(sample: Sample, layout: Layout) -> _Frame:
    problems = []
    image = raw = None
    try:
        image = read_image(sample.image)
    except DataError as e:
        problems.append(str(e))
    try:
        raw = read_raw_label(sample.label)
    except DataError as e:
        problems.append(str(e))
    if image is not None and raw is not None:
        try:
            check_shapes(sample, image, raw)
        except DataError as e:
            problems.append(str(e))
    size = None if image is None else f"{image.shape[1]}x{image.shape[0]}"
    if raw is None:
        return _Frame(size, None, 0.0, problems)
    values = np.flatnonzero(np.bincount(raw.ravel()))  # labels are unsigned after reading
    pupil_fraction = np.count_nonzero(to_pupil(raw, layout)) / raw.size
    return _Frame(size, values, pupil_fraction, problems)


def implausible_pupil(label: Path, share: float) -> str:
    """What a label whose pupil covers `share` of its frame (over MAX_PUPIL_SHARE) says."""
    return (
        f"{label}: the pupil covers {share:.0%} of the frame, no eye's does: an inverted mask (pupil "
        "white, 255, on black) or a soft one (greys and noise where it should be 0 or 255)?"
    )


def _check_split(root: Path, split: str, report: CheckReport) -> None:
    try:
        folder = split_folder(root, split)
        if folder is None:  # the verdict says what a missing split costs
            return
        files = scan_split(root, split)
    except DataError as e:
        report.problems.append(str(e))
        return
    for image in files.images_without_label:
        report.problems.append(f"{image}: no label in {files.label_folder}")
    for label in files.labels_without_image:
        report.problems.append(f"{label}: no image in {files.folder / 'images'}")
    stats = SplitStats(folder.name, files.layout, len(files.pairs))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # cv2 frees the GIL
        frames = list(pool.map(lambda s: _inspect(s, files.layout), files.pairs))
    labelled = [f for f in frames if f.values is not None]
    for frame, sample in zip(frames, files.pairs, strict=True):
        report.problems += frame.problems
        if frame.pupil_fraction > MAX_PUPIL_SHARE:
            report.problems.append(implausible_pupil(sample.label, frame.pupil_fraction))
        if frame.size is not None:
            stats.image_sizes[frame.size] += 1
    for frame in labelled:
        stats.label_values.update(frame.values.tolist())
    stats.pupil_fraction = float(np.mean([f.pupil_fraction for f in labelled])) if labelled else 0.0
    stats.frames_without_pupil = sum(f.pupil_fraction == 0 for f in labelled)
    if split in _NO_PUPIL and labelled and stats.frames_without_pupil == len(labelled):
        why = _NO_PUPIL[split]
        if split == "validation" and not any(s.name == "train" for s in report.splits):
            why = "its pupil IoU would be meaningless"  # no training: no best.pt chosen on it
        report.problems.append(f"{folder}: {split} split has no pupil in any frame: {why}")
    report.splits.append(stats)


def check_dataset(root: str | Path) -> CheckReport:
    """Decode every pair of every split under `root`; the report lists all problems found."""
    report = CheckReport(Path(root).absolute())
    try:
        dataset_root(report.root)
    except DataError as e:  # missing, or a symlink loop
        report.problems.append(str(e))
        return report
    for split in _SPLITS:
        _check_split(report.root, split, report)
    return report
