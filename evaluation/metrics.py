"""Segmentation metrics for the background / pupil task, accumulated over a whole epoch or split.

Intersection and union are summed over every pixel of the epoch before dividing (not averaged
per image), as in the OpenEDS challenge; mIoU averages the two classes. The per-frame functions
below (numpy, (H, W) masks) serve `evaluate.py`: frame IoU, pupil-centre error, detection, the
OpenEDS challenge score, and whether a frame's pupil is wrong, with how well a per-frame
confidence ranks the wrong ones (AUROC, deciles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

MB = 1_000_000  # bytes in the challenge score's megabyte


class ConfusionCounter:
    """Running pixel counts (tp, fp, fn, tn) of the pupil class, kept on `device`: adding a batch
    costs no wait for the GPU; `confusion_metrics(*counts.tolist())` turns them into scores."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.counts = torch.zeros(4, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """pred, label: (B, H, W) integer maps with 1 = pupil."""
        pred, label = pred.bool(), label.bool()
        tp, fp, fn = (pred & label).sum(), (pred & ~label).sum(), (~pred & label).sum()
        self.counts += torch.stack([tp, fp, fn, label.numel() - tp - fp - fn])


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


def mask_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) pixel counts of two (H, W) pupil masks (nonzero = pupil) of one frame."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {truth.shape}")
    pred, truth = pred.astype(bool, copy=False), truth.astype(bool, copy=False)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    return tp, fp, fn, pred.size - tp - fp - fn


def set_metrics(counts: Sequence[Sequence[int]]) -> dict[str, float]:
    """Overlap figures of a whole set from per-frame (tp, fp, fn, tn): pixels summed, then divided."""
    tp, fp, fn, tn = (int(v) for v in np.sum(np.asarray(counts, dtype=np.int64).reshape(-1, 4), axis=0))
    return confusion_metrics(tp, fp, fn, tn)


def centre_error(pred: tuple[float, float], truth: tuple[float, float]) -> float:
    """Euclidean distance in pixels between two (x, y) points."""
    return math.hypot(pred[0] - truth[0], pred[1] - truth[1])


def error_summary(errors: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, median and 95th percentile (linear interpolation) of errors; None when empty."""
    values = np.asarray(errors, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None, "p95": None}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
    }


WITHIN_PX = 5.0  # a pupil "located": its centre within 5 px of the label's centroid


def mask_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) mean of the nonzero pixels of an (H, W) mask; None when it has none."""
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean())) if xs.size else None


def located_error(centre: tuple[float, float] | None, label: np.ndarray) -> float:
    """Distance from a predicted pupil centre (None: nothing found) to the centroid of every pupil
    pixel of the (H, W) label: inf for a missed pupil, NaN when the label has none. How evaluate.py
    and scripts/peers.py score every detector alike."""
    target = mask_centroid(label)
    if target is None:
        return math.nan
    return math.inf if centre is None else centre_error(centre, target)


def located_share(errors: Sequence[float], within: float = WITHIN_PX) -> float | None:
    """Share of labelled pupils whose centre error is at most `within` px; a missed pupil's error is
    inf (counted, never located). None when there are no labelled pupils."""
    values = np.asarray(errors, dtype=np.float64)
    return float((values <= within).mean()) if values.size else None


def located_median(errors: Sequence[float]) -> float | None:
    """Median centre error of labelled pupils, misses (inf) included; None when there are none or
    when half of them or more were missed (an infinite median, which JSON cannot hold)."""
    values = np.asarray(errors, dtype=np.float64)
    median = float(np.median(values)) if values.size else math.inf
    return median if math.isfinite(median) else None


def diameter_buckets(
    diameters: Sequence[float], counts: Sequence[Sequence[int]], edges: Sequence[float]
) -> list[dict[str, Any]]:
    """Pupil IoU summed over the frames of each label-diameter range [edges[i], edges[i+1]): where
    in the size range a model loses overlap. `counts` are the frames' (tp, fp, fn, tn)."""
    d, c = np.asarray(diameters, np.float64), np.asarray(counts, np.int64).reshape(-1, 4)
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        picked = (d >= low) & (d < high)
        if picked.any():
            tp, fp, fn, _ = (int(v) for v in c[picked].sum(axis=0))
            iou = _ratio(tp, tp + fp + fn)
            rows.append({"min_px": low, "max_px": high, "frames": int(picked.sum()), "pupil_iou": iou})
    return rows


def detection_summary(truth_found: Sequence[bool], pred_found: Sequence[bool]) -> dict[str, float | int]:
    """Per-frame pupil present / absent: accuracy, missed pupils, false positives on pupil-less frames."""
    truth, pred = np.asarray(truth_found, bool), np.asarray(pred_found, bool)
    if truth.shape != pred.shape or truth.size == 0:
        raise ValueError(f"need one prediction per label, at least one; got {pred.size} and {truth.size}")
    return {
        "frames": int(truth.size),
        "accuracy": float((truth == pred).mean()),
        "with_pupil": int(truth.sum()),
        "missed": int((truth & ~pred).sum()),
        "without_pupil": int((~truth).sum()),
        "false_positives": int((~truth & pred).sum()),
    }


def challenge_score(miou: float, size_bytes: int) -> float:
    """OpenEDS 2019 score: 0.5 * (mIoU + min(1, 1 / S)), S the model size in MB (10^6 bytes)."""
    if size_bytes <= 0:
        raise ValueError(f"model size must be positive, got {size_bytes} bytes")
    return 0.5 * (miou + min(1.0, MB / size_bytes))


WRONG_PX = 2.0  # a pupil centre further than this from the label's makes the frame "wrong"


def frame_wrong(
    label_pupil: bool,
    predicted_pupil: bool,
    *,
    centre_err: float,
    located_err: float,
    within: float = WRONG_PX,
) -> bool:
    """Whether a frame's pupil is wrong: a labelled pupil missed, or its predicted ellipse centre more
    than `within` px from the label's ellipse centre (`centre_err`) or centroid (`located_err`); on
    a frame without a labelled pupil, any predicted one. Nothing predicted there is right."""
    if not label_pupil:
        return predicted_pupil
    return not (predicted_pupil and centre_err <= within and located_err <= within)  # NaN, inf: wrong


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve of `scores` for `positives`: the chance that a random positive
    scores above a random negative, ties counting half (mid-ranks: the Mann-Whitney U). None
    unless there are positives and negatives both."""
    values, chosen = np.asarray(scores, np.float64), np.asarray(positives, bool)
    if values.shape != chosen.shape:
        raise ValueError(f"need one label per score; got {chosen.size} and {values.size}")
    n_pos, n_neg = int(chosen.sum()), int((~chosen).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based, a tie's mean rank
    return float((ranks[chosen].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confidence_bins(
    confidence: Sequence[float],
    *,
    pupil_iou: Sequence[float],
    centre_err: Sequence[float],
    wrong: Sequence[bool],
    bins: int = 10,
) -> list[dict[str, Any]]:
    """Frames in `bins` groups of (nearly) equal size by rank of confidence, the least confident
    first (ties in frame order): per group its frames, confidence range, mean pupil IoU, median
    centre error (of frames that have one, NaN for none; None when no frame has) and share wrong."""
    conf, iou = np.asarray(confidence, np.float64), np.asarray(pupil_iou, np.float64)
    err, bad = np.asarray(centre_err, np.float64), np.asarray(wrong, bool)
    if not conf.shape == iou.shape == err.shape == bad.shape:
        raise ValueError(f"need one IoU, error and verdict per confidence, {conf.size} of each")
    rows = []
    for picked in np.array_split(np.argsort(conf, kind="stable"), bins):
        if picked.size:
            errors = err[picked][~np.isnan(err[picked])]
            rows.append(
                {
                    "frames": int(picked.size),
                    "confidence_min": float(conf[picked].min()),
                    "confidence_max": float(conf[picked].max()),
                    "pupil_iou": float(iou[picked].mean()),
                    "median_centre_error_px": float(np.median(errors)) if errors.size else None,
                    "wrong": float(bad[picked].mean()),
                }
            )
    return rows
