"""A pupil probability map -> the pupil's blob and its ellipse: `pupil_mask` keeps the pupil's
connected blob of the pixels above PUPIL_THRESHOLD (a glint cluster or a dark patch of iris beside
it is dropped), `pupil_geometry` fits the ellipse to its outline."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

PUPIL_THRESHOLD = 0.5  # pupil where its probability is above this: predicting, evaluating, exporting


def _pupil_component(
    mask: np.ndarray, prob: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The pupil's 8-connected blob of an (H, W) bool mask: the one with the most probability above
    one half summed over its pixels (a sure pupil beats a larger patch barely above the threshold;
    without `prob`, the largest), as a bool mask of the box around all of the mask's pixels, and
    that box's (x, y) offset; None for an empty mask. Working in the box keeps a 640x400 frame to
    the pupil's few thousand pixels."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0:
        return None
    box = np.ascontiguousarray(mask[y : y + h, x : x + w]).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(box, connectivity=8)
    if count == 2:  # one blob: the common case needs no sums
        return labels == 1, (x, y)
    if prob is None:
        weight = stats[1:, cv2.CC_STAT_AREA].astype(float)
    else:
        above = np.maximum(prob[y : y + h, x : x + w] - 0.5, 0.0)
        weight = np.bincount(labels.ravel(), above.ravel(), minlength=count)[1:]
    return labels == 1 + int(np.argmax(weight)), (x, y)  # label 0 is the background


def pupil_mask(prob: np.ndarray, threshold: float = PUPIL_THRESHOLD, *, raw: bool = False) -> np.ndarray:
    """The (H, W) bool pupil mask of a probability map: above `threshold`, the pupil's blob alone
    (`_pupil_component`: a stray glint cluster or dark iris patch beside it dropped), or with `raw`
    every pixel above it. Predicting, evaluating, exporting and adapting all make masks here."""
    mask = prob > threshold
    if raw:
        return mask
    found = _pupil_component(mask, prob)
    if found is None:
        return mask
    component, (x, y) = found
    clean = np.zeros_like(mask)
    clean[y : y + component.shape[0], x : x + component.shape[1]] = component
    return clean


def pupil_geometry(mask: np.ndarray, prob: np.ndarray | None = None) -> dict[str, Any]:
    """Pupil found, centre, ellipse and area from an (H, W) bool mask; its pupil's blob only (the
    one of most probability where `prob` is given, else the largest: `_pupil_component`).

    The centre is that of an ellipse fitted to the component's outline (`cv2.fitEllipse`, which
    needs 5 outline points; smaller blobs fall back to the centroid and a circle of equal area).
    `axis_major` / `axis_minor` are full axis lengths in pixels, `angle` the major axis'
    direction in degrees [0, 180) clockwise from +x (image y points down). `mean_prob` is the mean
    of `prob` over the component. Without a pupil, `found` is False and every number is NaN.
    """
    keys = ("centre_x", "centre_y", "axis_major", "axis_minor", "angle", "area_px", "mean_prob")
    found = _pupil_component(mask.astype(bool, copy=False), prob)
    if found is None:
        return {"found": False, **dict.fromkeys(keys + ("centroid_x", "centroid_y"), math.nan)}
    component, (x0, y0) = found
    box_h, box_w = component.shape
    ys, xs = np.nonzero(component)
    area = int(xs.size)
    centroid = (float(xs.mean()) + x0, float(ys.mean()) + y0)
    diameter = 2 * math.sqrt(area / math.pi)  # of the circle with the component's area
    (cx, cy), major, minor, angle = centroid, diameter, diameter, 0.0
    contours, _ = cv2.findContours(
        component.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(x0, y0)
    )
    outline = max(contours, key=len)
    if len(outline) >= 5:
        ellipse = cv2.fitEllipse(outline)
        if all(math.isfinite(v) for v in (*ellipse[0], *ellipse[1])):  # degenerate for a straight line
            (cx, cy), (d1, d2), angle = ellipse
            # OpenCV gives the direction of its first axis; report the major axis' direction
            major, minor, angle = (d1, d2, angle) if d1 >= d2 else (d2, d1, angle + 90.0)
    return {
        "found": True,
        "centre_x": float(cx),
        "centre_y": float(cy),
        "axis_major": float(major),
        "axis_minor": float(minor),
        "angle": float(angle) % 180.0,
        "area_px": area,
        "mean_prob": float(prob[y0:, x0:][:box_h, :box_w][component].mean())
        if prob is not None
        else math.nan,
        "centroid_x": centroid[0],
        "centroid_y": centroid[1],
    }
