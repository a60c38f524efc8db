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
import io
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


def _whole(path: Path, size: int, head: bytes, tail: bytes) -> bool:
    """Whether a file of `size` bytes that starts with `head` and ends with `tail` is whole."""
    suffix = path.suffix.lower()
    if suffix == ".png":  # the last chunk of every complete PNG is IEND
        return head.startswith(b"\x89PNG\r\n\x1a\n") and tail.endswith(b"IEND\xaeB`\x82")
    if suffix in (".jpg", ".jpeg"):  # cameras may append bytes after the end-of-image marker
        return head.startswith(b"\xff\xd8") and b"\xff\xd9" in tail
    if suffix == ".bmp":  # the header states the file's size
        return head.startswith(b"BM") and size >= int.from_bytes(head[2:6], "little")
    if suffix == ".npy":
        try:
            header = io.BytesIO(head)
            major, _ = np.lib.format.read_magic(header)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(header)
        except (ValueError, EOFError):
            return False
        return size >= header.tell() + int(np.prod(shape)) * dtype.itemsize
    return size > 0


def verify(frames: Frames) -> None:
    """Check every file of `frames` is there and whole, from its first and last bytes (and an
    .npy's header), without decoding: a broken file is a DataError naming it before training
    starts, not an epoch later."""
    for path in frames.files:
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(4096)
                f.seek(max(0, size - 1024))
                tail = f.read()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if size == 0 or not _whole(path, size, head, tail):
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
