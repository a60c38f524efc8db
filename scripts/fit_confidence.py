"""Fit the logistic regression behind `pupillometry.confidence` and print its coefficients, to paste
into confidence.py as INTERCEPT and WEIGHTS.

    python scripts/fit_confidence.py [--checkpoint pretrained] [--n 3000] [--seed 0] [--first 100000]
                                     [--check DATA_DIR]

Frames: synthetic eyes that neither training nor evaluate.py uses, render_eye(seed, first + i):
the pretrained model trained on seed 0's first 6,000 and is evaluated on seed 1,000,003. Their
sizes cycle through SIZES, so that the coefficients hold where the probability map was upsampled
from the model's input (a 640x400 video frame) and where it was shrunk (a 200x200 crop). Each
frame is scored as evaluate.py scores it (`evaluate.score_frame`); a frame is right unless its
pupil is wrong (`evaluation.metrics.frame_wrong`: centre more than 2 px off, missed, or found where there is
none). Frames without a predicted pupil have confidence 0 and take no part in the fit.

The fit: logistic regression for "right" over `confidence.regression_terms`, Newton's method with
a small L2 penalty on the weights. Printed: the coefficients, then on the fitted frames (and with
--check on the train split of a dataset folder; keep its validation split unseen) the AUROC for a
wrong pupil of the regression, of a hand-set product of soft factors (the alternative
confidence.py weighs) and of mean pupil probability alone, and mean confidence beside the share
of frames right.
"""

import argparse
import math
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

from config.flags import positive_int_argument  # noqa: E402
from data.frames import folder_frames  # noqa: E402
from data.synthetic.render import PUPIL, render_eye  # noqa: E402
from evaluate import score_frame  # noqa: E402
from evaluation.metrics import auroc  # noqa: E402
from inference import PUPIL_THRESHOLD, Predictor, load_predictor, model_file, pupil_geometry  # noqa: E402
from pupillometry.confidence import (  # noqa: E402
    WEIGHTS,
    combine,
    confidence_features,
    regression_terms,
    size_factor,
)

SIZES = ((256, 416), (400, 640), (200, 200), (240, 320))  # (H, W): the model's input, a video frame, crops
L2 = 1e-3  # weight penalty per frame: keeps a rare feature's weight from running off


def synthetic_pairs(n: int, seed: int, first: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames first .. first + n - 1 of `seed` and their pupil masks, their sizes cycling through SIZES."""
    for i in range(n):
        image, label, _ = render_eye(seed, first + i, SIZES[i % len(SIZES)])
        yield image, (label == PUPIL).astype(np.uint8)


def frame_features(
    predictor: Predictor, pairs: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int = 8
) -> tuple[list[dict[str, float] | None], list[bool]]:
    """Per frame: its `confidence_features` (None without a predicted pupil) and whether it is right."""
    features, right = [], []
    while batch := list(islice(pairs, batch_size)):
        for prob, (_, label) in zip(predictor.probabilities([p[0] for p in batch]), batch, strict=True):
            mask = prob > PUPIL_THRESHOLD
            geometry = pupil_geometry(mask, prob)
            features.append(confidence_features(prob, mask, geometry) if geometry["found"] else None)
            right.append(not score_frame(prob, label)["wrong"])
    return features, right


def fit_logistic(terms: np.ndarray, right: np.ndarray, steps: int = 30) -> tuple[float, np.ndarray]:
    """Intercept and weights of a logistic regression of `right` (N,) on `terms` (N, K)."""
    x = np.hstack([terms, np.ones((len(terms), 1))])
    penalty = L2 * len(x) * np.diag([1.0] * terms.shape[1] + [0.0])  # the intercept goes free
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - right) + penalty @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty
        w -= np.linalg.solve(hessian, gradient)
    return float(w[-1]), w[:-1]


def soft_product(f: dict[str, float]) -> float:
    """The alternative: a product of hand-set soft factors, each 1 for a clean pupil."""
    mean_prob = min(1.0, max(0.0, 2 * f["mean_prob"] - 1))
    shape = math.exp(-f["ellipse_misfit"] / 0.2) * min(1.0, f["aspect"] / 0.5)
    return mean_prob * shape * (1 - f["uncertain"]) * (1 - f["fragments"]) * size_factor(f["diameter"])


def report(
    name: str, features: list[dict[str, float] | None], right: list[bool], *, fitted: tuple[float, dict]
) -> None:
    """AUROC for a wrong pupil of the `fitted` (intercept, weights) regression, the soft product and
    mean_prob alone, and each one's mean beside the share of frames right."""
    scores = {
        "logistic regression": [combine(f, *fitted) if f else 0.0 for f in features],
        "soft product": [soft_product(f) if f else 0.0 for f in features],
        "mean_prob alone": [f["mean_prob"] if f else 0.0 for f in features],
    }
    print(f"{name}: {len(right)} frames, {np.mean(right):.1%} right")
    for label, values in scores.items():
        area = auroc(values, right)  # None when every frame is right, or every one wrong
        print(f"  {label:20s} AUROC {'n/a' if area is None else f'{area:.3f}'}  mean {np.mean(values):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=model_file, default="pretrained", help="(default: %(default)s)")
    parser.add_argument(
        "--n", type=positive_int_argument, default=3000, help="synthetic frames (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--first", type=int, default=100_000, help="first frame index (default: %(default)s)")
    parser.add_argument("--check", type=Path, help="a dataset folder whose train split to report on too")
    args = parser.parse_args(argv)
    predictor = load_predictor(args.checkpoint)
    features, right = frame_features(predictor, synthetic_pairs(args.n, args.seed, args.first))
    found = [(f, r) for f, r in zip(features, right, strict=True) if f is not None]
    if not found:
        parser.error(f"no pupil found in the {args.n} frames: nothing to fit")
    terms = np.array([list(regression_terms(f).values()) for f, _ in found])
    intercept, weights = fit_logistic(terms, np.array([r for _, r in found], np.float64))
    fitted = (round(intercept, 3), {k: round(float(w), 3) for k, w in zip(WEIGHTS, weights, strict=True)})
    print(f"INTERCEPT = {fitted[0]}\nWEIGHTS = {fitted[1]}")
    report(f"synthetic, seed {args.seed}, frames {args.first} on", features, right, fitted=fitted)
    if args.check is not None:
        frames = folder_frames(args.check, "train")
        checked = frame_features(predictor, map(frames.read, range(len(frames))))
        report(f"{args.check} train", *checked, fitted=fitted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
