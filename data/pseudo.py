"""Pseudo-labels: a model's own confident masks of a camera's frames, chosen to fine-tune on
(adapt.py). Frames are spread over each recording's length and over the recordings, near copies
are dropped, and a stretch too short to stand for the camera is refused.

    picked = select_frames(candidates, min_confidence=0.9, max_frames=400, min_frames=40, min_span=0.2)
    write_dataset(root, picked)     # root/{train,validation}/{images,masks}/<recording>_<frame>.png
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import SelectionError
from data.folders import write_image

DUPLICATE_GREY = 1.0  # mean |difference| of 32x32 thumbnails, in grey levels, under which frames are copies
VAL_EVERY = 5  # every fifth picked frame validates (spread over time like the rest)


@dataclass(frozen=True)
class Candidate:
    """One frame looked at: where it lies in its recording, the frame, and the model's verdict."""

    recording: str  # its name, unique among the inputs
    position: int  # frame index in the recording
    length: int  # the recording's frame count
    image: np.ndarray  # (H, W) uint8
    mask: np.ndarray  # (H, W) bool, the pupil's blob (inference.pupil_mask)
    confidence: float  # pupillometry.confidence, with flip TTA

    @property
    def name(self) -> str:
        return f"{self.recording}_{self.position:06d}"


def _thumbnail(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def _spread(group: list[Candidate], quota: int) -> list[Candidate]:
    """Up to `quota` of a recording's candidates, evenly spaced in time, near copies dropped."""
    picks = sorted({int(i) for i in np.linspace(0, len(group) - 1, min(quota, len(group))).round()})
    kept, last = [], None
    for candidate in (group[i] for i in picks):
        thumb = _thumbnail(candidate.image)
        if last is None or np.abs(thumb - last).mean() >= DUPLICATE_GREY:
            kept.append(candidate)
            last = thumb
    return kept


def select_frames(
    candidates: Sequence[Candidate],
    *,
    min_confidence: float,
    max_frames: int,
    min_frames: int,
    min_span: float,
) -> list[Candidate]:
    """The frames to fine-tune on: those with a pupil at or above `min_confidence`, at most
    `max_frames`, each recording's share in proportion to its confident frames, evenly spread over
    its length. Raises SelectionError when fewer than `min_frames` remain, or when they cover less
    than `min_span` of the recordings' total length (one short stretch of one eye)."""
    confident = [c for c in candidates if c.confidence >= min_confidence and c.mask.any()]
    if len(confident) < min_frames:
        raise SelectionError(
            f"only {len(confident)} of the {len(candidates)} frames looked at have a pupil at confidence "
            f">= {min_confidence:g}, and adapting needs {min_frames}: record more of the eye, or lower "
            "--min-confidence"
        )
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in sorted(confident, key=lambda c: (c.recording, c.position)):
        groups[candidate.recording].append(candidate)
    picked = [
        c
        for group in groups.values()
        for c in _spread(group, max(1, round(max_frames * len(group) / len(confident))))
    ]
    lengths = {c.recording: c.length for c in candidates}
    spans = {name: group[-1].position - group[0].position + 1 for name, group in groups.items()}
    covered = sum(spans.values()) / sum(lengths.values())
    if covered < min_span:
        where = "; ".join(
            f"{name}: frames {g[0].position}-{g[-1].position} of {lengths[name]}"
            for name, g in groups.items()
        )
        raise SelectionError(
            f"the confident frames come from one short stretch ({where}): {covered:.0%} of the "
            f"recordings' length, and adapting needs {min_span:.0%}; record the eye moving over a longer time"
        )
    if len(picked) < min_frames:
        raise SelectionError(
            f"{len(picked)} distinct confident frames once near copies are dropped, and adapting needs "
            f"{min_frames}: record the eye moving, not a still frame"
        )
    return picked


def write_dataset(root: Path, picked: Sequence[Candidate]) -> dict[str, int]:
    """The picked frames and their masks in the mask-folder layout under `root` (every VAL_EVERY-th
    in validation/); returns the frames per split."""
    counts = {"train": 0, "validation": 0}
    for i, candidate in enumerate(picked):
        last = i == len(picked) - 1 and len(picked) < VAL_EVERY  # at least one validates
        split = "validation" if i % VAL_EVERY == VAL_EVERY - 1 or last else "train"
        for kind, array in (("images", candidate.image), ("masks", candidate.mask.astype(np.uint8) * 255)):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"{candidate.name}.png", array)
        counts[split] += 1
    return counts
