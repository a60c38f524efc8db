"""Built-in synthetic eyes: the default dataset when the user gives none, no disk needed.

Frames come from data.synthetic.render.render_eye, deterministic from (seed, index). The
command line (data/synthetic/__main__.py):

    python -m data.synthetic --out DIR --n 500 --seed 0 [--size 400x640] [--val-fraction 0.2] [--style full]
        writes the frames in the OpenEDS layout (train/ and validation/, images/*.png with
        labels/*.npy), to inspect them or to use them like real data; DIR must be new or empty
        unless --overwrite is given (real frames and synthetic ones would mix);
    python -m data.synthetic --preview grid.png [--n 16] [--style full]
        writes a grid of frames with the pupil label outlined, for a person to look at: the
        range of framing, iris, exposure, glints, headset and camera effects a model sees.
    python -m data.synthetic --sequence N --out DIR [--fps 30] [--size 400x640] [--seed 0] [--style full]
        writes a video of one eye with known pupil diameter, gaze and blinks (data.synthetic.sequence):
        DIR/eye.mp4, DIR/truth.csv (a row a frame) and DIR/blinks.csv, DIR new or empty as above.
`--style` picks the randomisation (`render.STYLES`): full, the default, or one of its ablations.
"""

from pathlib import Path

import cv2
import numpy as np

from config import MIN_SIZE
from data.folders import new_folder, write_csv, write_image
from data.synthetic.render import PUPIL, STYLES, render_eye
from data.synthetic.sequence import TRUTH_COLUMNS, eye_sequence, truth_blinks
from pupillometry.series import BLINK_COLUMNS  # the truth's blinks.csv has predict.py's columns


class SyntheticEyes:
    """`n` synthetic frames of (H, W) `size`; frame i is render_eye(seed, i, size, style=STYLES[style])."""

    def __init__(
        self, n: int, seed: int = 0, size: tuple[int, int] = (400, 640), style: str = "full"
    ) -> None:
        if n < 1:
            raise ValueError(f"SyntheticEyes needs n >= 1, got {n}")
        if seed < 0:
            raise ValueError(f"SyntheticEyes needs seed >= 0, got {seed}")
        if len(size) != 2 or min(size) < MIN_SIZE:
            raise ValueError(f"SyntheticEyes size must be (H, W) of at least {MIN_SIZE} each, got {size}")
        if style not in STYLES:
            raise ValueError(f"unknown synthetic style {style!r}; known: {', '.join(STYLES)}")
        self.n, self.seed, self.size, self.style = n, seed, (int(size[0]), int(size[1])), style

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"SyntheticEyes(n={self.n}, seed={self.seed}, size={self.size}, style={self.style!r})"

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """(H, W) uint8 image, (H, W) uint8 OpenEDS label 0..3 and ground truth of frame `index`."""
        if not 0 <= index < self.n:
            raise IndexError(f"frame {index} out of range for {self}")
        return render_eye(self.seed, index, self.size, style=STYLES[self.style])

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) uint8 image and (H, W) uint8 {0, 1} pupil mask of frame `index`."""
        image, label, _ = self.render(index)
        return image, (label == PUPIL).astype(np.uint8)


def write_openeds(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (400, 640),
    val_fraction: float = 0.2,
    style: str = "full",
    overwrite: bool = False,
) -> Path:
    """Write n frames as ROOT/{train,validation}/{images/*.png, labels/*.npy}; returns ROOT.

    The last round(n * val_fraction) frames go to validation, at least one frame to train. ROOT
    must be new or empty: a folder that holds anything is refused (FileExistsError naming it,
    nothing written) unless `overwrite`, which writes over same-named frames and keeps the rest.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    eyes = SyntheticEyes(n, seed, size, style)
    root = new_folder(out, overwrite=overwrite)
    n_val = min(n - 1, round(n * val_fraction))
    for split, indices in (("train", range(n - n_val)), ("validation", range(n - n_val, n))):
        for folder in ("images", "labels"):
            if indices:
                (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index in indices:
            image, label, _ = eyes.render(index)
            write_image(root / split / "images" / f"{index:06d}.png", image)
            np.save(root / split / "labels" / f"{index:06d}.npy", label)
    return root


def write_sequence(
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (400, 640),
    fps: float = 30.0,
    style: str = "full",
    overwrite: bool = False,
) -> Path:
    """Write an n-frame `sequence.eye_sequence` as ROOT/eye.mp4 (mp4v), ROOT/truth.csv (a row a
    frame) and ROOT/blinks.csv (as predict.py writes it: start_frame, end_frame, start_s, end_s,
    duration_s); returns ROOT, which must be
    new or empty unless `overwrite`, as for write_openeds."""
    if len(size) != 2 or min(size) < MIN_SIZE:
        raise ValueError(f"sequence size must be (H, W) of at least {MIN_SIZE} each, got {size}")
    frames = eye_sequence(n, seed=seed, size=size, fps=fps, style=style)  # checks n, fps, style
    root = new_folder(out, overwrite=overwrite)
    root.mkdir(parents=True, exist_ok=True)
    video = cv2.VideoWriter(str(root / "eye.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, size[::-1])
    if not video.isOpened():
        raise OSError(f"{root / 'eye.mp4'}: cv2 cannot write mp4v video here")
    truths = []
    try:
        for image, _, truth in frames:
            video.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
            truths.append(truth)
    finally:
        video.release()
    write_csv(root / "truth.csv", TRUTH_COLUMNS, truths)
    write_csv(root / "blinks.csv", BLINK_COLUMNS, truth_blinks(truths, fps))
    return root
