"""How far to trust one frame's pupil: a confidence in [0, 1] that its centre is right (within
2 px of the truth, `evaluation.metrics.frame_wrong`), from what the model and the shape of its prediction say.

    prob = predictor.probabilities([frame])[0]          # (H, W) at the frame's own size
    mask = prob > inference.PUPIL_THRESHOLD
    confidence = frame_confidence(prob, mask, inference.pupil_geometry(mask, prob))

The features (`confidence_features`) are ratios, so they read the same on a 200x200 crop and on a
640x400 frame whose probability was upsampled from the model's input:

- `mean_prob`: the mean pupil probability over the largest component (`pupil_geometry`'s);
- `uncertain`: near the pupil (a square twice the fitted ellipse's major axis), the share of the
  pixels with any pupil probability (> 0.1) that the model is unsure of (< 0.9): a soft, blurred
  or torn boundary;
- `ellipse_misfit`: 1 - IoU of the largest component and its filled fitted ellipse: a pupil is an
  ellipse, a blob merged with a dark patch or bitten by a glint or a lid is not;
- `fragments`: the share of the mask outside the largest component;
- `aspect`: minor / major axis, 1 for a round pupil; flat slivers are mostly lids' work;
- `diameter`: the major axis over the frame's short side.

How they combine: a logistic regression over logit(mean_prob), ellipse_misfit, uncertain,
fragments and 1 - aspect (`regression_terms`), its coefficients below, fitted on synthetic frames
that neither training nor evaluate.py's validation uses (scripts/fit_confidence.py), times
`size_factor`: 1 for diameters within PLAUSIBLE_DIAMETER, falling as the square of the ratio
outside it. Size is prior knowledge, not fitted: the fitted frames hold hardly an implausible blob
the other features do not already doubt, and the factor leaves every realistic pupil alone.

Why a regression and not a hand-set product of soft factors (`fit_confidence.soft_product`): the
two rank frames alike, their AUROC for a wrong centre within 0.02 of each other everywhere (the
product a little ahead on synthetic frames, the regression on real-eyes-dev/train), but only the
regression's output is a probability: its mean matches the share of frames right on synthetic
validation frames (0.70 and 0.70) and stays close on real frames of an unseen camera (0.83 and
0.87), so a threshold on it means something. On those real frames mean_prob alone falls from
0.90 (synthetic) to 0.81, the combination only to 0.88: the geometry carries over between cameras
better than the model's own certainty does.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

UNCERTAIN = (0.1, 0.9)  # a pupil probability strictly between these: a pixel the model is unsure of
PLAUSIBLE_DIAMETER = (0.03, 0.6)  # pupil major axis / the frame's short side, as eye cameras frame eyes
MAX_PROB = 0.99  # mean_prob is capped here before its logit: a binary map is not infinitely sure

# From `python scripts/fit_confidence.py` (the pretrained model; 3,000 synthetic frames of seed 0
# from index 100,000 on, at 256x416, 640x400, 200x200 and 320x240)
INTERCEPT = -2.131
WEIGHTS = {  # per unit of each regression term, on the log-odds of a right centre
    "logit_mean_prob": 1.855,
    "ellipse_misfit": -2.63,
    "uncertain": -0.61,
    "fragments": -0.733,
    "flatness": -1.675,  # 1 - aspect
}


def _span(centre: float, reach: float, size: int) -> slice:
    start = min(max(0, math.floor(centre - reach)), size)
    return slice(start, max(start, min(size, math.ceil(centre + reach) + 1)))


def _pupil_box(shape: tuple[int, int], geometry: dict[str, Any]) -> tuple[slice, slice]:
    """Rows and columns of the square twice the major axis across around the ellipse's centre,
    within the frame (empty when a wild fit puts it all outside): it holds the fitted ellipse."""
    reach = geometry["axis_major"]
    return _span(geometry["centre_y"], reach, shape[0]), _span(geometry["centre_x"], reach, shape[1])


def _ellipse_misfit(mask: np.ndarray, geometry: dict[str, Any], rows: slice, columns: slice) -> float:
    """1 - IoU of the largest component (`area_px` pixels) and the filled fitted ellipse, drawn in
    the box only. Mask pixels inside the ellipse count as the component's: a separate fragment
    within the pupil's own ellipse is rare, and counting it there spares a labelling pass."""
    inside = np.zeros((rows.stop - rows.start, columns.stop - columns.start), np.uint8)
    if inside.size == 0:
        return 1.0
    centre = (geometry["centre_x"] - columns.start, geometry["centre_y"] - rows.start)
    axes = (geometry["axis_major"], geometry["axis_minor"])
    cv2.ellipse(inside, (centre, axes, geometry["angle"]), 1, -1)
    ellipse = inside.view(bool)
    both = np.count_nonzero(ellipse & mask[rows, columns])
    return 1.0 - both / (np.count_nonzero(ellipse) + geometry["area_px"] - both)


def confidence_features(prob: np.ndarray, mask: np.ndarray, geometry: dict[str, Any]) -> dict[str, float]:
    """The module docstring's features of a frame whose geometry found a pupil: `prob` the (H, W)
    pupil probability, `mask` prob > PUPIL_THRESHOLD and `geometry` = pupil_geometry(mask, prob)."""
    if not geometry["found"] or math.isnan(geometry["mean_prob"]):
        raise ValueError("confidence_features needs a found pupil's pupil_geometry(mask, prob)")
    rows, columns = _pupil_box(prob.shape, geometry)
    near = prob[rows, columns]
    some = np.count_nonzero(near > UNCERTAIN[0])
    unsure = some - np.count_nonzero(near >= UNCERTAIN[1])
    total = np.count_nonzero(mask)
    major = geometry["axis_major"]
    return {
        "mean_prob": float(geometry["mean_prob"]),
        "uncertain": float(unsure / some) if some else 0.0,
        "ellipse_misfit": float(_ellipse_misfit(mask, geometry, rows, columns)),
        "fragments": float((total - geometry["area_px"]) / total),
        "aspect": geometry["axis_minor"] / major if major > 0 else 0.0,
        "diameter": major / min(prob.shape),
    }


def size_factor(diameter: float) -> float:
    """1 within PLAUSIBLE_DIAMETER, else the square of the ratio to its nearer end (1/4 at half
    the smallest or twice the largest plausible diameter)."""
    low, high = PLAUSIBLE_DIAMETER
    return min(1.0, diameter / low) ** 2 * min(1.0, high / diameter) ** 2 if diameter > 0 else 0.0


def regression_terms(features: dict[str, float]) -> dict[str, float]:
    """What the logistic regression weighs (WEIGHTS' keys), from `confidence_features`."""
    mean_prob = min(max(features["mean_prob"], 0.5), MAX_PROB)
    return {
        "logit_mean_prob": math.log(mean_prob / (1 - mean_prob)),
        "ellipse_misfit": features["ellipse_misfit"],
        "uncertain": features["uncertain"],
        "fragments": features["fragments"],
        "flatness": 1 - features["aspect"],
    }


def combine(
    features: dict[str, float], intercept: float = INTERCEPT, weights: dict[str, float] = WEIGHTS
) -> float:
    """The confidence from `confidence_features`: the logistic regression (by default the fitted
    one) times size_factor."""
    terms = regression_terms(features)
    log_odds = intercept + sum(weights[name] * value for name, value in terms.items())
    return size_factor(features["diameter"]) / (1 + math.exp(-log_odds))


def frame_confidence(prob: np.ndarray, mask: np.ndarray, geometry: dict[str, Any]) -> float:
    """Confidence in [0, 1] that the frame's pupil centre is right; 0.0 when no pupil was found.
    `prob`: (H, W) pupil probability at the frame's size, `mask` = prob > PUPIL_THRESHOLD,
    `geometry` = inference.pupil_geometry(mask, prob)."""
    if not geometry["found"]:
        return 0.0
    return combine(confidence_features(prob, mask, geometry))
