"""Segmentation metrics for the background / pupil task, accumulated over a whole epoch.

Intersection and union are summed over every pixel of the epoch before dividing (not averaged
per image), as in the OpenEDS challenge; mIoU averages the two classes.
"""

from __future__ import annotations

import torch


class ConfusionCounter:
    """Running pixel counts of true/false positives/negatives for the pupil class."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """pred, label: (B, H, W) integer maps with 1 = pupil."""
        pred, label = pred.bool(), label.bool()
        tp = (pred & label).sum()
        fp = (pred & ~label).sum()
        fn = (~pred & label).sum()
        counts = torch.stack([tp, fp, fn]).tolist()
        self.tp, self.fp, self.fn = self.tp + counts[0], self.fp + counts[1], self.fn + counts[2]
        self.tn += label.numel() - sum(counts)

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.tp, self.fp, self.fn, self.tn)


def _ratio(num: float, den: float) -> float:
    # An empty denominator means nothing to get wrong (e.g. no pupil anywhere, none predicted).
    return num / den if den > 0 else 1.0


def confusion_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    pupil_iou = _ratio(tp, tp + fp + fn)
    background_iou = _ratio(tn, tn + fn + fp)
    return {
        "background_iou": background_iou,
        "pupil_iou": pupil_iou,
        "miou": (background_iou + pupil_iou) / 2,
        "pupil_dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }
