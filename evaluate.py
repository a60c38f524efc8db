"""Score a checkpoint or ONNX export on a dataset split: overlap, pupil centre, detection, speed.

    python evaluate.py --data-dir my_eyes/ --output eval/               # the shipped pretrained model
    python evaluate.py --checkpoint runs/<run>/best.pt                  # trained on synthetic eyes
    python evaluate.py --checkpoint best.onnx --data-dir /data/openeds --tta --output eval/

Frames run as predict.py runs them (`inference.Predictor`): in their own shape at the model's
scale (--img-size auto, the default for a model that takes any size), at their own pixels
(native), or fitted into an HxW without stretching, the pupil probability mapped back onto the
label's own pixels, where everything is scored; pupil = the blob of probability > 0.5
(`pupillometry.geometry.pupil_mask`; --raw-mask: every pixel above it). Reported over the split:
per-class IoU, mIoU, pupil Dice, precision and recall (pixels summed over the split,
`evaluation.metrics.set_metrics`); pupil-centre error in pixels, fitted-ellipse centre and
centroid of the largest blob (`pupillometry.geometry.pupil_geometry`), on frames where label and
prediction both have a pupil; pupils
located: the share of labelled pupils whose predicted ellipse centre lies within 5 px of the label
mask's centroid, a missed pupil never located, and the median of that error (as scripts/peers.py
scores other detectors); pupil IoU by label pupil diameter (where in the size range overlap is
lost); per-frame detection (pupil present or absent) with false positives on pupil-less (closed-eye)
frames; how well each frame's confidence (`pupillometry.confidence`) foretells a wrong pupil
(centre more than 2 px off, missed, or found on a frame without one: `evaluation.metrics.frame_wrong`), as
an AUROC beside that of mean pupil probability alone, and per confidence decile; the OpenEDS
challenge score 0.5 * (mIoU + min(1, 1 / S)), S the model file's size in MB; images/s of
resizing, preprocessing, model and resizing back.
--tta adds the same figures with horizontal-flip test-time augmentation.
Without --data-dir the frames are the synthetic ones the model's training run used for the split
(`data.frames.frames_for`: its validation frames by default).
--output DIR (--out: its deprecated spelling) gets metrics.json, report.md, frames.csv (per-frame
scores) and gallery_best.png / gallery_worst.png: the 16 best and worst frames by pupil IoU in a
grid as wide as a full-HD screen (4 columns, 1920x1364), each frame with the label outlined in
green, the prediction in red, its name and pupil IoU above it (written by `reports.evaluation`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from config import DataConfig
from config.flags import add_checkpoint_argument, add_size_arguments, deprecated_alias, positive_int_argument
from core.runfolder import hold_results, write_text
from data.check import MAX_PUPIL_SHARE
from data.folders import SPLITS
from data.frames import Frames, frames_for
from evaluation.metrics import (
    WITHIN_PX,
    WRONG_PX,
    auroc,
    centre_error,
    challenge_score,
    confidence_bins,
    confusion_metrics,
    detection_summary,
    diameter_buckets,
    error_summary,
    frame_wrong,
    located_error,
    located_median,
    located_share,
    mask_counts,
    set_metrics,
)
from inference import (
    PUPIL_THRESHOLD,
    MissingMetadataError,
    Predictor,
    load_predictor,
    model_file,
    pupil_geometry,
    pupil_mask,
)
from pupillometry.confidence import frame_confidence
from reports.evaluation import markdown_table, write_outputs

DIAMETER_EDGES = (0, 20, 30, 45, 70, 10_000)  # label pupil diameter buckets, px of the frame; the last: open


def score_frame(prob: np.ndarray, label: np.ndarray, *, raw_mask: bool = False) -> dict[str, Any]:
    """Counts, pupil IoU, pupil found in label / prediction, centre errors, whether the frame is
    wrong (`evaluation.metrics.frame_wrong`), its confidence and mean pupil probability (0 without a pupil).
    The prediction is the pupil's blob (`pupillometry.geometry.pupil_mask`), or with `raw_mask` every pixel
    above the threshold; confidence weighs every blob either way, as predict's does."""
    above = prob > PUPIL_THRESHOLD
    pred = above if raw_mask else pupil_mask(prob)
    counts = mask_counts(pred, label)
    mine, truth = pupil_geometry(above, prob), pupil_geometry(label.astype(bool))
    both = mine["found"] and truth["found"]

    def error(x: str, y: str) -> float:
        return centre_error((mine[x], mine[y]), (truth[x], truth[y])) if both else math.nan

    ellipse = error("centre_x", "centre_y")
    located = located_error((mine["centre_x"], mine["centre_y"]) if mine["found"] else None, label)
    return {
        "counts": counts,
        "pupil_iou": confusion_metrics(*counts)["pupil_iou"],
        "label_pupil": truth["found"],
        "predicted_pupil": mine["found"],
        "ellipse_error": ellipse,
        "centroid_error": error("centroid_x", "centroid_y"),
        "located_error": located,
        "label_diameter": 2 * math.sqrt(truth["area_px"] / math.pi) if truth["found"] else math.nan,
        "label_share": float(np.count_nonzero(label)) / label.size,
        "wrong": frame_wrong(truth["found"], mine["found"], centre_err=ellipse, located_err=located),
        "confidence": frame_confidence(prob, above, mine),
        "mean_prob": mine["mean_prob"] if mine["found"] else 0.0,
    }


def score_frames(
    predictor: Predictor,
    frames: Frames,
    modes: dict[str, bool],
    *,
    batch_size: int = 8,
    raw_mask: bool = False,
) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Per-frame scores (`score_frame`) and model seconds for each mode (name -> flip TTA or not)."""
    scores: dict[str, list[dict]] = {mode: [] for mode in modes}
    seconds = dict.fromkeys(modes, 0.0)
    predictor.probabilities([frames.read(0)[0]], tta=any(modes.values()))  # warm-up: first runs allocate
    for start in range(0, len(frames), batch_size):
        pairs = [frames.read(i) for i in range(start, min(start + batch_size, len(frames)))]
        images = [image for image, _ in pairs]
        for mode, flip in modes.items():
            tick = time.perf_counter()
            probs = predictor.probabilities(images, tta=flip, batch_size=batch_size)
            seconds[mode] += time.perf_counter() - tick
            scored = zip(probs, pairs, strict=True)
            scores[mode] += [score_frame(p, label, raw_mask=raw_mask) for p, (_, label) in scored]
    return scores, seconds


def confidence_summary(scores: list[dict]) -> dict[str, Any]:
    """How well per-frame confidence foretells a wrong pupil: the AUROC of confidence for right
    frames over wrong ones (1: every wrong frame less confident than every right one; 0.5: chance),
    the same of mean pupil probability alone, and the frames by confidence decile. Over the frames
    with a pupil in the label or the prediction: a frame rightly left without one has no pupil to
    trust or doubt (its confidence is 0 by definition), and detection is scored on its own."""
    scores = [s for s in scores if s["label_pupil"] or s["predicted_pupil"]]
    confidence, right = [s["confidence"] for s in scores], [not s["wrong"] for s in scores]
    return {
        "wrong_px": WRONG_PX,
        "frames": len(scores),
        "wrong": sum(s["wrong"] for s in scores),
        "auroc": auroc(confidence, right),
        "auroc_mean_prob": auroc([s["mean_prob"] for s in scores], right),
        "deciles": confidence_bins(
            confidence,
            pupil_iou=[s["pupil_iou"] for s in scores],
            centre_err=[s["ellipse_error"] for s in scores],
            wrong=[s["wrong"] for s in scores],
        ),
    }


def summarize(scores: list[dict], seconds: float, file_bytes: int) -> dict[str, Any]:
    """Split-level figures from per-frame scores and the model time they took."""
    overlap = set_metrics([s["counts"] for s in scores])

    def errors(key: str) -> dict:
        return error_summary([s[key] for s in scores if not math.isnan(s[key])])

    labelled = [s for s in scores if s["label_pupil"]]
    located = [s["located_error"] for s in labelled]
    return {
        **overlap,
        "centre_error_px": {"ellipse": errors("ellipse_error"), "centroid": errors("centroid_error")},
        "located": {
            "within_px": WITHIN_PX,
            "share": located_share(located),
            "median_error_px": located_median(located),
        },
        "iou_by_pupil_diameter": diameter_buckets(
            [s["label_diameter"] for s in labelled], [s["counts"] for s in labelled], DIAMETER_EDGES
        ),
        "detection": detection_summary(
            [s["label_pupil"] for s in scores], [s["predicted_pupil"] for s in scores]
        ),
        "confidence": confidence_summary(scores),
        "challenge_score": challenge_score(overlap["miou"], file_bytes),
        "images_per_s": len(scores) / seconds,
    }


def frames_to_score(
    predictor: Predictor, data_dir: str | Path | None, split: str, *, n: int, seed: int | None
) -> tuple[Frames, int]:
    """A dataset folder's split, or without one the n synthetic frames the model's training run
    used for it, and their seed (default: the one the model's card names, else 0). A model trained
    on a dataset folder is refused synthetic frames: a ValueError naming that folder."""
    card = predictor.card
    if data_dir is None and card.train_data_dir:
        raise ValueError(
            f"{predictor.source} was trained on {card.train_data_dir}; pass --data-dir "
            "(synthetic eyes would not be its validation frames)"
        )
    seed = (card.train_seed or 0) if seed is None else seed
    size, style = predictor.img_size, card.train_style
    return frames_for(data_dir, split, n=n, seed=seed, size=size, style=style), seed


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    split: str = "validation",
    *,
    tta: bool = False,
    output: str | Path | None = None,
    synthetic_n: int = DataConfig().synthetic_val,
    seed: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    img_size: str | tuple[int, int] | None = None,
    raw_mask: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score `checkpoint` (.pt or .onnx) on a split; returns the figures (see the module docstring),
    and writes the report files to the `output` folder when given.

    `seed` picks the synthetic frames: default the model's training seed (stored in .pt and .onnx), else 0.
    Synthetic frames (no `data_dir`) only for a model trained on them or of unknown origin: one
    trained on a dataset folder raises ValueError naming that folder.
    `img_size`: "auto" runs each frame in its own shape at the model's scale, "native" at its own
    pixels (both for a model that takes any size), (H, W)
    fits frames into that size, None into the model's own. `raw_mask` scores every pixel above
    the threshold, not the pupil's blob alone (`pupillometry.geometry.pupil_mask`).
    Raises CheckpointError, ModelFileError, DataError or ValueError with a one-line message.
    """
    log = log or (lambda _: None)
    if synthetic_n < 1 or batch_size < 1:
        raise ValueError(f"synthetic_n and batch_size must be >= 1, got {synthetic_n} and {batch_size}")
    checkpoint = Path(checkpoint)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)  # a bad --output fails now, not after the frames
    predictor = load_predictor(checkpoint, device=device).use_size(img_size)
    card = predictor.card
    frames, seed = frames_to_score(predictor, data_dir, split, n=synthetic_n, seed=seed)
    log(f"evaluating {card.model_name} on {frames.description}...")
    modes = {"plain": False, "tta": True} if tta else {"plain": False}
    scores, seconds = score_frames(predictor, frames, modes, batch_size=batch_size, raw_mask=raw_mask)
    result: dict[str, Any] = {
        "model": {
            "file": str(checkpoint),
            "model_name": card.model_name,
            "backend": predictor.backend,
            "device": device if predictor.backend == "pytorch" else "CPU",
            "num_params": card.num_params,
            "file_bytes": predictor.file_bytes,
            "img_size": list(predictor.img_size),
            "run_size": predictor.size_name,
        },
        "data": {
            "description": frames.description,
            "data_dir": None if data_dir is None else str(Path(data_dir).absolute()),
            "split": split,
            "seed": seed if data_dir is None else None,
            "frames": len(frames),
            "with_pupil": sum(s["label_pupil"] for s in scores["plain"]),
            "without_pupil": sum(not s["label_pupil"] for s in scores["plain"]),
        },
        "threshold": PUPIL_THRESHOLD,
        "mask": "raw" if raw_mask else "pupil blob",
        "diameter_edges_px": list(DIAMETER_EDGES),
        "batch_size": batch_size,
        **{mode: summarize(scores[mode], seconds[mode], predictor.file_bytes) for mode in modes},
    }
    shares = [s["label_share"] for s in scores["plain"]]
    odd = [name for name, share in zip(frames.names, shares, strict=True) if share > MAX_PUPIL_SHARE]
    if odd:  # an inverted or soft mask scores any model near 0: say so rather than report it
        named = ", ".join(odd[:3]) + (" ..." if len(odd) > 3 else "")
        result["warnings"] = [
            f"{len(odd)} of {len(frames)} labels have a pupil covering over {MAX_PUPIL_SHARE:.0%} of "
            f"the frame ({named}): inverted or soft masks? `python -m data check` names them"
        ]
    if output is not None:
        write_outputs(Path(output), result, predictor, frames=frames, scores=scores)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score a checkpoint or ONNX export: IoU, pupil-centre error, detection, challenge score."
    )
    add_checkpoint_argument(
        parser,
        convert=model_file,
        default="pretrained",
        help="a .pt checkpoint or a .onnx export, or pretrained: the model in pretrained/",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="OpenEDS or pupil-mask dataset root (default: synthetic)"
    )
    parser.add_argument("--split", choices=SPLITS, default="validation", help="(default: %(default)s)")
    parser.add_argument(
        "--synthetic-n",
        type=positive_int_argument,
        default=DataConfig().synthetic_val,
        help="synthetic frames without --data-dir (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, help="training seed of the synthetic frames (default: the checkpoint's, else 0)"
    )
    parser.add_argument(
        "--tta", action="store_true", help="also score horizontal-flip test-time augmentation"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int_argument,
        default=8,
        help="frames per model call (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="for .pt checkpoints: cpu, cuda, ... (default: cpu)")
    add_size_arguments(parser)
    output = parser.add_argument(
        "--output", type=Path, metavar="DIR", help="folder for metrics.json, report.md, frames.csv, galleries"
    )
    deprecated_alias(parser, "--out", output)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace another run's report in --output (default: refuse)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


RESULTS = ("metrics.json", "report.md", "frames.csv", "gallery_best.png", "gallery_worst.png")  # --output's


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    held = contextlib.nullcontext()
    if args.output is not None:  # another run's report is refused unless --overwrite, as predict's
        inputs = () if args.data_dir is None else (args.data_dir,)
        held = hold_results(
            args.output, RESULTS, overwrite=args.overwrite, program="evaluate.py", inputs=inputs
        )
    try:
        with held:
            result = evaluate(
                args.checkpoint,
                args.data_dir,
                args.split,
                tta=args.tta,
                output=args.output,
                synthetic_n=args.synthetic_n,
                seed=args.seed,
                batch_size=args.batch_size,
                device=args.device,
                img_size=args.img_size,
                raw_mask=args.raw_mask,
                log=print,
            )
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.json, json.dumps(result, indent=2) + "\n")
    except MissingMetadataError:  # predict.py takes the preprocessing by hand; evaluate does not
        print(
            f"error: {args.checkpoint} has no tiny-pupil-seg metadata (input size, preprocessing), which "
            "evaluate.py reads: export the checkpoint it came from with export_onnx.py",
            file=sys.stderr,
        )
        return 1
    except (ValueError, OSError) as exc:  # CheckpointError, ModelFileError and DataError among them
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(markdown_table(result))
    if "outputs" in result:
        print(f"report, metrics and galleries in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
