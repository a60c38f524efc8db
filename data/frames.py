"""Where frames come from: a dataset folder's split, a folder of unlabelled images, or the built-in
synthetic eyes. Training, evaluation, export calibration and parity all take their frames here.

A `Frames` is a sized, picklable reader (DataLoader workers copy it): `frames.read(i)` gives the
(H, W) uint8 image and its {0, 1} pupil label (None for unlabelled images) at the file's own size.
A training run with seed s trains on synthetic frames of seed s and validates on those of seed
s + VAL_SEED_OFFSET: `frames_for(None, "validation", ...)` gives a run's validation frames back
to evaluate.py and export_onnx.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.folders import (
    IMAGE_SUFFIXES,
    DataError,
    Sample,
    find_pairs,
    label_layout,
    list_images,
    read_image,
    read_pair,
)
from data.synthetic import SyntheticEyes

VAL_SEED_OFFSET = 1_000_003  # synthetic validation frames come from another seed than training
Pair = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Frames:
    """Named frames and how to read them; `kind` is "synthetic", "openeds", "masks" or "images"."""

    names: tuple[str, ...]
    reader: Callable[[int], Pair]  # a picklable callable (functools.partial or a bound method)
    description: str
    kind: str
    files: tuple[Path, ...] = ()  # the files read, images and labels: what `verify` checks

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> Pair:
        return self.reader(index)

    def spread(self, n: int) -> Frames:
        """Up to n of these frames, evenly spread, the first one included."""
        if len(self) <= n:
            return self
        picks = tuple(int(i) for i in np.linspace(0, len(self) - 1, n).round())
        names = tuple(self.names[i] for i in picks)
        return Frames(names, functools.partial(_pick, self.reader, picks), self.description, self.kind)


def _pick(reader: Callable[[int], Pair], picks: tuple[int, ...], index: int) -> Pair:
    return reader(picks[index])


def _read_sample(samples: tuple[Sample, ...], index: int) -> Pair:
    return read_pair(samples[index])


def _read_unlabelled(files: tuple[Path, ...], index: int) -> Pair:
    return read_image(files[index]), None


_ENDS = {  # what a whole file of each kind starts and ends with: a cut-off copy does not end so
    ".png": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"),
    ".jpg": (b"\xff\xd8", b"\xff\xd9"),
    ".jpeg": (b"\xff\xd8", b"\xff\xd9"),
    ".npy": (b"\x93NUMPY", b""),
}


def verify(frames: Frames) -> None:
    """Check every file of `frames` is there and whole (its first and last bytes), without
    decoding: a broken file is a DataError naming it before training starts, not an epoch later."""
    for path in frames.files:
        start, end = _ENDS.get(path.suffix.lower(), (b"", b""))
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(len(start))
                f.seek(max(0, size - len(end)))
                tail = f.read()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if size == 0 or head != start or not tail.endswith(end):
            raise DataError(f"{path}: empty, truncated or not a {path.suffix} file")


def synthetic_frames(n: int, seed: int, size: tuple[int, int], *, style: str = "full") -> Frames:
    """n synthetic frames of seed `seed` at (H, W) `size`."""
    eyes = SyntheticEyes(n, seed, size, style)
    names = tuple(f"synthetic_{i:05d}" for i in range(n))
    where = f"{n} synthetic frames (seed {seed}, {size[0]}x{size[1]}, style {style})"
    return Frames(names, eyes.read, where, "synthetic")


def folder_frames(data_dir: str | Path, split: str) -> Frames:
    """The image / label pairs of a dataset folder's split (data.folders layouts)."""
    samples = tuple(find_pairs(data_dir, split))
    kind = label_layout(samples[0].label)
    where = f"{len(samples)} {split} frames of {Path(data_dir).absolute()} ({kind})"
    files = tuple(path for s in samples for path in (s.image, s.label))
    reader = functools.partial(_read_sample, samples)
    return Frames(tuple(s.image.name for s in samples), reader, where, kind, files)


def unlabelled_frames(folder: str | Path) -> Frames:
    """Images without labels: ROOT/train/images of a dataset root, else FOLDER/images, else FOLDER."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    for where in (folder / "train" / "images", folder / "images", folder):
        files = tuple(list_images(where)) if where.is_dir() else ()
        if files:
            names = tuple(p.name for p in files)
            reader = functools.partial(_read_unlabelled, files)
            return Frames(names, reader, f"images of {where}", "images", files)
    raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it, images/ or train/images/")


def frames_for(
    data_dir: str | Path | None, split: str, *, n: int, seed: int, size: tuple[int, int], style: str = "full"
) -> Frames:
    """A dataset folder's split, or without one the n synthetic frames a training run with `seed`
    uses for that split ("train", or "validation" / "val"; synthetic eyes have no test split)."""
    if data_dir is not None:
        return folder_frames(data_dir, split)
    if split not in ("train", "validation", "val"):
        raise ValueError(f"split {split!r} needs a dataset folder; synthetic eyes have train and validation")
    frames = synthetic_frames(n, seed if split == "train" else seed + VAL_SEED_OFFSET, size, style=style)
    if split == "train":
        return frames
    where = f"{n} synthetic validation frames of a training run with seed {seed}, {size[0]}x{size[1]}"
    return Frames(frames.names, frames.reader, where, frames.kind)
