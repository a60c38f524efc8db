"""The best pupil IoU a decoder predicting at a given output stride could reach on a set's masks.

    python scripts/stride_ceiling.py /data/eyes --split validation --img-size 256x416

Each label is fitted into the model input as inference fits frames (`data.fit_image`), averaged
down to the output stride (the ideal soft prediction: each cell the pupil's share of its pixels),
upsampled bilinearly as the model's output is, mapped back onto the label's pixels and cut at PUPIL_THRESHOLD.
Pupil IoU summed over the set (and the worst frame) against the label says how much a coarse
output alone would cost: if the ceiling is far above a model's IoU, the output stride is not what
limits it.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from config.flags import size_argument  # noqa: E402
from data import fit_image, folder_frames  # noqa: E402
from evaluation.metrics import confusion_metrics, mask_counts, set_metrics  # noqa: E402
from inference import PUPIL_THRESHOLD  # noqa: E402


def stride_prediction(label: np.ndarray, img_size: tuple[int, int], stride: int) -> np.ndarray:
    """The (H, W) bool mask of the ideal stride-`stride` prediction of an (H, W) bool label."""
    fitted, fit = fit_image(
        label.astype(np.float32), img_size, interpolation=cv2.INTER_AREA
    )  # pupil share per pixel
    h, w = img_size
    cells = cv2.resize(fitted, (max(1, w // stride), max(1, h // stride)), interpolation=cv2.INTER_AREA)
    full = cv2.resize(cells, (w, h), interpolation=cv2.INTER_LINEAR)
    back = cv2.resize(fit.crop(full), label.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return back > PUPIL_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--img-size", type=size_argument, default=(256, 416), help="model input, HxW")
    parser.add_argument("--strides", default="1,2,4,8")
    args = parser.parse_args(argv)
    try:
        strides = [int(s) for s in args.strides.split(",")]
    except ValueError:
        parser.error(f"--strides: comma-separated whole numbers, got {args.strides!r}")
    if min(strides) < 1:
        parser.error(f"--strides: each at least 1, got {args.strides!r}")
    try:
        frames = folder_frames(args.data_dir, args.split)
    except ValueError as e:  # a DataError, or a split no dataset has
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts: dict[int, list] = {s: [] for s in strides}  # per frame (tp, fp, fn, tn)
    for index in range(len(frames)):
        label = frames.read(index)[1] > 0
        for s in strides:
            counts[s].append(mask_counts(stride_prediction(label, args.img_size, s), label))
    h, w = args.img_size
    print(f"{len(frames)} frames of {args.data_dir}/{args.split}, fitted into {h}x{w}")
    print("| output stride | pupil IoU ceiling | worst frame |\n|---:|---:|---:|")
    for s in strides:
        worst = min(confusion_metrics(*c)["pupil_iou"] for c in counts[s])
        print(f"| {s} | {set_metrics(counts[s])['pupil_iou']:.4f} | {worst:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
