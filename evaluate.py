"""Score a checkpoint or ONNX export on a dataset split: overlap, pupil centre, detection, speed.

    python evaluate.py --data-dir my_eyes/ --out eval/                  # the shipped pretrained model
    python evaluate.py --checkpoint runs/<run>/best.pt                  # trained on synthetic eyes
    python evaluate.py --checkpoint best.onnx --data-dir /data/openeds --tta --out eval/

Frames of any size and shape are fitted into the model's input without stretching and its pupil
probability mapped back onto the label's own pixels (`inference.Predictor`), where everything is
scored; pupil = probability > 0.5. Reported over the split: per-class IoU, mIoU, pupil Dice,
precision and recall (pixels summed over the split, `metrics.confusion_metrics`); pupil-centre
error in pixels, fitted-ellipse centre and centroid of the largest blob
(`inference.pupil_geometry`), on frames where label and prediction both have a pupil; pupils
located: the share of labelled pupils whose predicted ellipse centre lies within 5 px of the label
mask's centroid, a missed pupil never located, and the median of that error (as scripts/peers.py
scores other detectors); pupil IoU by label pupil diameter (where in the size range overlap is
lost); per-frame detection (pupil present or absent) with false positives on pupil-less (closed-eye)
frames; the OpenEDS challenge score 0.5 * (mIoU + min(1, 1 / S)), S the model file's size in
MB; images/s of resizing, preprocessing, model and resizing back.
--tta adds the same figures with horizontal-flip test-time augmentation.
--out DIR gets metrics.json, report.md, frames.csv (per-frame scores) and gallery_best.png /
gallery_worst.png: the 16 best and worst frames by pupil IoU in a grid as wide as a full-HD screen (4
columns, 1920x1364), each frame with the label outlined in green, the prediction in red, its name
and pupil IoU above it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config import positive_int_argument
from data import DataConfig, find_pairs
from data.dataset import synthetic_validation
from data.folders import SPLITS, label_layout, read_pair, write_image
from gallery import IOU_COLOUR, NAME_COLOUR, gallery_tile, tile_grid
from inference import Predictor, load_predictor, model_file, pupil_geometry
from metrics import (
    MB,
    WITHIN_PX,
    centre_error,
    challenge_score,
    confusion_metrics,
    detection_summary,
    diameter_buckets,
    error_summary,
    located_error,
    located_median,
    located_share,
    mask_counts,
)

THRESHOLD = 0.5
DIAMETER_EDGES = (0, 20, 30, 45, 70, 10_000)  # label pupil diameter buckets, px of the frame
GALLERY_FRAMES = 16


@dataclass(frozen=True)
class FrameSet:
    """The frames to score: names, a reader of (uint8 image, {0, 1} label) at native size, a description."""

    names: list[str]
    read: Callable[[int], tuple[np.ndarray, np.ndarray]]
    description: str


def frame_set(
    data_dir: str | Path | None,
    split: str,
    synthetic_n: int,
    img_size: tuple[int, int],
    seed: int,
    style: str = "full",
) -> FrameSet:
    """A dataset split (OpenEDS or mask layout), or the synthetic frames a training run validated on."""
    if data_dir is None:
        if split not in ("validation", "val"):
            raise ValueError(f"split {split!r} needs --data-dir; the synthetic frames are validation only")
        eyes = synthetic_validation(synthetic_n, seed, img_size, style)
        h, w = img_size
        where = f"{synthetic_n} synthetic validation frames of a training run with seed {seed}, {h}x{w}"
        return FrameSet([f"synthetic_{i:05d}" for i in range(synthetic_n)], eyes.read, where)
    samples = find_pairs(data_dir, split)
    where = f"{len(samples)} {split} frames of {Path(data_dir).absolute()} ({label_layout(samples[0].label)})"
    return FrameSet([s.image.name for s in samples], lambda i: read_pair(samples[i]), where)


def score_frame(prob: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Counts, pupil IoU, pupil found in label / prediction and centre errors of one frame."""
    pred = prob > THRESHOLD
    counts = mask_counts(pred, label)
    mine, truth = pupil_geometry(pred), pupil_geometry(label.astype(bool))
    both = mine["found"] and truth["found"]

    def error(x: str, y: str) -> float:
        return centre_error((mine[x], mine[y]), (truth[x], truth[y])) if both else math.nan

    return {
        "counts": counts,
        "pupil_iou": confusion_metrics(*counts)["pupil_iou"],
        "label_pupil": truth["found"],
        "predicted_pupil": mine["found"],
        "ellipse_error": error("centre_x", "centre_y"),
        "centroid_error": error("centroid_x", "centroid_y"),
        "located_error": located_error(
            (mine["centre_x"], mine["centre_y"]) if mine["found"] else None, label
        ),
        "label_diameter": 2 * math.sqrt(truth["area_px"] / math.pi) if truth["found"] else math.nan,
    }


def score_frames(
    predictor: Predictor, frames: FrameSet, modes: dict[str, bool], batch_size: int
) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Per-frame scores and model seconds for each mode (name -> flip TTA or not)."""
    scores: dict[str, list[dict]] = {mode: [] for mode in modes}
    seconds = dict.fromkeys(modes, 0.0)
    predictor.probabilities([frames.read(0)[0]], tta=any(modes.values()))  # warm-up: first runs allocate
    for start in range(0, len(frames.names), batch_size):
        pairs = [frames.read(i) for i in range(start, min(start + batch_size, len(frames.names)))]
        images = [image for image, _ in pairs]
        for mode, flip in modes.items():
            tick = time.perf_counter()
            probs = predictor.probabilities(images, tta=flip, batch_size=batch_size)
            seconds[mode] += time.perf_counter() - tick
            scores[mode] += [score_frame(p, label) for p, (_, label) in zip(probs, pairs, strict=True)]
    return scores, seconds


def summarize(scores: list[dict], seconds: float, file_bytes: int) -> dict[str, Any]:
    """Split-level figures from per-frame scores and the model time they took."""
    counts = np.sum([s["counts"] for s in scores], axis=0).tolist()
    overlap = confusion_metrics(*counts)

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
        "challenge_score": challenge_score(overlap["miou"], file_bytes),
        "images_per_s": len(scores) / seconds,
    }


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path | None = None,
    split: str = "validation",
    tta: bool = False,
    out: str | Path | None = None,
    synthetic_n: int = DataConfig().synthetic_val,
    seed: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score `checkpoint` (.pt or .onnx) on a split; returns the figures (see the module docstring).

    `seed` picks the synthetic frames: default the model's training seed (stored in .pt and .onnx), else 0.
    Synthetic frames (no `data_dir`) only for a model trained on them or of unknown origin: one
    trained on a dataset folder raises ValueError naming that folder.
    Raises CheckpointError, ModelFileError, DataError or ValueError with a one-line message.
    """
    log = log or (lambda _: None)
    if synthetic_n < 1 or batch_size < 1:
        raise ValueError(f"synthetic_n and batch_size must be >= 1, got {synthetic_n} and {batch_size}")
    checkpoint = Path(checkpoint)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after the frames
    predictor = load_predictor(checkpoint, device=device)
    trained_on = predictor.info.get("train_data_dir")
    if data_dir is None and trained_on:
        raise ValueError(
            f"{checkpoint} was trained on {trained_on}; pass --data-dir "
            "(synthetic eyes would not be its validation frames)"
        )
    if seed is None:
        seed = predictor.info.get("train_seed") or 0
    style = predictor.info.get("train_style") or "full"
    frames = frame_set(data_dir, split, synthetic_n, predictor.img_size, seed, style)
    log(f"evaluating {predictor.info['model_name']} on {frames.description}...")
    modes = {"plain": False, "tta": True} if tta else {"plain": False}
    scores, seconds = score_frames(predictor, frames, modes, batch_size)
    info = predictor.info
    result: dict[str, Any] = {
        "model": {
            "file": str(checkpoint),
            "model_name": info["model_name"],
            "backend": info["backend"],
            "device": device if info["backend"] == "pytorch" else "CPU",
            "num_params": info["num_params"],
            "file_bytes": info["file_bytes"],
            "img_size": list(predictor.img_size),
        },
        "data": {
            "description": frames.description,
            "data_dir": None if data_dir is None else str(Path(data_dir).absolute()),
            "split": split,
            "seed": seed if data_dir is None else None,
            "frames": len(frames.names),
            "with_pupil": sum(s["label_pupil"] for s in scores["plain"]),
            "without_pupil": sum(not s["label_pupil"] for s in scores["plain"]),
        },
        "threshold": THRESHOLD,
        "batch_size": batch_size,
        **{mode: summarize(scores[mode], seconds[mode], info["file_bytes"]) for mode in modes},
    }
    if out is not None:
        result["outputs"] = write_outputs(Path(out), result, predictor, frames, scores)
    return result


def gallery_picks(scores: list[dict], n: int = GALLERY_FRAMES) -> tuple[list[int], list[int]]:
    """Indices of the n best and n worst frames by pupil IoU, among frames where label or
    prediction has a pupil (a pupil-less frame predicted empty is right, but says nothing)."""
    ranked = sorted(
        (i for i, s in enumerate(scores) if s["label_pupil"] or s["predicted_pupil"]),
        key=lambda i: (-scores[i]["pupil_iou"], i),
    )
    return ranked[:n], ranked[::-1][:n]


def write_gallery(
    path: Path, predictor: Predictor, frames: FrameSet, picks: list[int], scores: list[dict]
) -> None:
    """The picked frames in a grid (`tile_grid`), each with its name, pupil IoU and centre error."""
    tiles = []
    for index in picks:
        image, label = frames.read(index)
        prob = predictor.probabilities([image])[0]
        s = scores[index]
        error = "" if math.isnan(s["ellipse_error"]) else f"  centre {s['ellipse_error']:.1f} px"
        caption = [(frames.names[index], NAME_COLOUR), (f"pupil IoU {s['pupil_iou']:.3f}{error}", IOU_COLOUR)]
        tiles.append(gallery_tile(image, label, prob > THRESHOLD, caption))
    write_image(path, tile_grid(tiles))


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _errors(summary: dict) -> str:
    return " / ".join(_number(summary[k], 2) for k in ("mean", "median", "p95")) + f" ({summary['n']})"


TABLE_ROWS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("background IoU", lambda r: _number(r["background_iou"])),
    ("pupil IoU", lambda r: _number(r["pupil_iou"])),
    ("mIoU", lambda r: _number(r["miou"])),
    ("pupil Dice", lambda r: _number(r["pupil_dice"])),
    ("pupil precision", lambda r: _number(r["precision"])),
    ("pupil recall", lambda r: _number(r["recall"])),
    (
        "ellipse-centre error, px: mean / median / p95 (frames)",
        lambda r: _errors(r["centre_error_px"]["ellipse"]),
    ),
    ("centroid error, px: mean / median / p95 (frames)", lambda r: _errors(r["centre_error_px"]["centroid"])),
    (
        "pupils located within 5 px (ellipse centre to label centroid; misses count)",
        lambda r: _number(r["located"]["share"], 3),
    ),
    ("median located error, px (misses infinite)", lambda r: _number(r["located"]["median_error_px"], 2)),
    ("detection accuracy (pupil present / absent)", lambda r: _number(r["detection"]["accuracy"])),
    ("missed pupils", lambda r: f"{r['detection']['missed']} of {r['detection']['with_pupil']}"),
    (
        "false positives on pupil-less frames",
        lambda r: f"{r['detection']['false_positives']} of {r['detection']['without_pupil']}",
    ),
    ("OpenEDS challenge score", lambda r: _number(r["challenge_score"])),
    ("images/s", lambda r: f"{r['images_per_s']:.1f}"),
)


def markdown_table(result: dict) -> str:
    """The figures as one Markdown table, a column per mode (plain, flip TTA)."""
    modes = [m for m in ("plain", "tta") if m in result]
    lines = ["| metric | " + " | ".join({"plain": "plain", "tta": "flip TTA"}[m] for m in modes) + " |"]
    lines.append("|---|" + "---:|" * len(modes))
    lines += [f"| {name} | " + " | ".join(cell(result[m]) for m in modes) + " |" for name, cell in TABLE_ROWS]
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    model, data = result["model"], result["data"]
    size = model["file_bytes"] / MB
    pt_note = (
        "; a .pt also holds training state, the .onnx export is what ships"
        if model["backend"] == "pytorch"
        else ""
    )
    lines = [
        f"# Evaluation of {model['model_name']} ({Path(model['file']).name}, {model['backend']})",
        "",
        f"Frames: {data['description']}; {data['with_pupil']} with a pupil, {data['without_pupil']} without.",
        f"Scored at each label's own size; pupil where the probability is above {THRESHOLD}.",
        "",
        markdown_table(result),
        "",
        f"- Challenge score: 0.5 * (mIoU + min(1, 1 / S)), S = the size of {Path(model['file']).name} as "
        f"given, {size:.3f} MB (1 MB = 10^6 bytes){pt_note}.",
        "- Centre errors: prediction vs label, largest blob of each, on frames where both have a pupil.",
        f"- Images/s: resizing, preprocessing, the model ({model['backend']} on {model['device']}) and "
        f"resizing back, batches of {result['batch_size']}; reading files and scoring excluded.",
    ]
    buckets = result["plain"]["iou_by_pupil_diameter"]
    if buckets:
        lines += ["", "## Pupil IoU by label pupil diameter (plain)", ""]
        lines += ["| diameter, px | frames | pupil IoU |", "|---|---:|---:|"]
        for b in buckets:
            top = "" if b["max_px"] == DIAMETER_EDGES[-1] else f"{b['max_px']}"
            lines.append(f"| {b['min_px']}-{top} | {b['frames']} | {b['pupil_iou']:.4f} |")
    if "gallery_best" in result.get("outputs", {}):
        lines += [
            "",
            f"## Best and worst {GALLERY_FRAMES} frames by pupil IoU (plain)",
            "",
            "Each frame: label outlined in green, prediction tinted and outlined in red.",
            "",
            "![best](gallery_best.png)",
            "",
            "![worst](gallery_worst.png)",
        ]
    return "\n".join(lines) + "\n"


def write_frames_csv(path: Path, names: list[str], scores: dict[str, list[dict]]) -> None:
    """One row per frame: pupil in the label; per mode pupil IoU, pupil predicted, centre errors."""
    columns = ("pupil_iou", "predicted_pupil", "ellipse_error", "centroid_error", "located_error")
    with open(path, "w", newline="") as f:
        rows = csv.writer(f)
        header = [c if m == "plain" else f"{c}_{m}" for m in scores for c in columns]
        rows.writerow(["frame", "label_pupil", *header])
        for i, name in enumerate(names):
            values = [scores[m][i][c] for m in scores for c in columns]
            rows.writerow([name, scores["plain"][i]["label_pupil"], *map(_csv_value, values)])


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 4)
    return value


def write_outputs(
    out: Path, result: dict, predictor: Predictor, frames: FrameSet, scores: dict[str, list[dict]]
) -> dict[str, str]:
    """metrics.json, report.md, frames.csv and the galleries in `out`; returns their paths."""
    paths = {"metrics": out / "metrics.json", "report": out / "report.md", "frames": out / "frames.csv"}
    best, worst = gallery_picks(scores["plain"])
    for name, picks in (("gallery_best", best), ("gallery_worst", worst)):
        if picks:  # none when no frame has a pupil in label or prediction
            paths[name] = out / f"{name}.png"
            write_gallery(paths[name], predictor, frames, picks, scores["plain"])
    write_frames_csv(paths["frames"], frames.names, scores)
    result["outputs"] = {name: str(path) for name, path in paths.items()}
    paths["metrics"].write_text(json.dumps(result, indent=2) + "\n")
    paths["report"].write_text(markdown_report(result))
    return result["outputs"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score a checkpoint or ONNX export: IoU, pupil-centre error, detection, challenge score."
    )
    parser.add_argument(
        "--checkpoint",
        type=model_file,
        default="pretrained",
        help="a .pt checkpoint or a .onnx export (default: pretrained, the model in pretrained/)",
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
    parser.add_argument("--out", type=Path, help="folder for metrics.json, report.md, frames.csv, galleries")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = evaluate(
            args.checkpoint,
            args.data_dir,
            args.split,
            args.tta,
            args.out,
            args.synthetic_n,
            args.seed,
            args.batch_size,
            args.device,
            log=print,
        )
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    except (ValueError, OSError) as exc:  # CheckpointError, ModelFileError and DataError among them
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(markdown_table(result))
    if "outputs" in result:
        print(f"report, metrics and galleries in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
