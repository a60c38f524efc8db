"""Adapt a model to a new camera without labels: it learns from its own confident masks.

    python adapt.py --input eye.mp4 --output runs/adapt-cam1                 # from the pretrained model
    python adapt.py --input day1.mp4 day2_frames/ --output runs/adapt-cam1 --rounds 2 --checkpoint best.pt
    python predict.py --checkpoint runs/adapt-cam1/adapted.onnx --input eye.mp4 --output out/

Each round, the model (flip TTA) looks at up to --scan frames of every recording (videos, image
folders or images), evenly spread; the frames whose pupil it is sure of (--min-confidence) become
training frames, spread over time and over the recordings, near copies dropped, each mask the
pupil's blob (`data.pseudo`); it is fine-tuned on them (`train_efficientvit.main`, at the size
it runs them at) and looks again. What it can know without labels is printed before and after (and in
report.md): its confidence, the share of frames it tracks, how much it disagrees with itself on the
mirrored frame, the pupil's size, and how far its masks moved from the start's.
It refuses, in one line, frames too few or too alike to stand for the camera, and stops at a
collapse: a round whose median pupil area or tracked share moved by more than --max-drift from the
start (that round's model is not kept). --output must be new or empty: the source model is never
touched. Written there: round-K/data (the pseudo-labelled frames), round-K/train (the run),
adapted.pt, adapted.onnx (verified, any input size; not with --no-export), report.md, adapt.json.
Exit status 2 for a bad flag, 1 when it refuses or fails, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from config import AdaptConfig, DataConfig, PupillometryConfig, TrainConfig
from config.flags import add_checkpoint_argument, add_settings, build, flags, given, size_argument
from core.errors import one_line
from core.runfolder import write_text
from data.folders import IMAGE_SUFFIXES, new_folder, read_image
from data.pseudo import Candidate, select_frames, write_dataset
from inference import (
    PUPIL_THRESHOLD,
    Predictor,
    load_predictor,
    model_file,
    pupil_geometry,
    pupil_mask,
)
from models.checkpoint import load_checkpoint, save_checkpoint, weights_only
from pipeline.streams import InputError, image_files
from pupillometry.confidence import frame_confidence

TRACKED = PupillometryConfig().min_confidence  # a frame predict.py trusts: a pupil at this confidence
ADAPT_FLAGS = flags(AdaptConfig)


class AdaptError(ValueError):
    """Adapting cannot go on; the message says why, in one line."""


# ---- frames: each recording, evenly spread ----


def recording_names(inputs: list[Path]) -> list[str]:
    """A name per input (its stem; with its index where two share one), for the frames' file names."""
    stems = Counter(path.stem for path in inputs)
    return [path.stem if stems[path.stem] == 1 else f"{path.stem}-{i}" for i, path in enumerate(inputs)]


def scan(path: Path, n: int) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Up to `n` (position, frame) pairs of a video, an image folder or an image, evenly spread, and
    the recording's frame count. Raises InputError for an input that cannot be read."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise InputError(f"{path}: cannot open as a video (not a video file OpenCV can decode)")
            announced = max(1, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            stride, frames, position = max(1, math.ceil(announced / n)), [], 0
            while capture.grab():  # grab every frame, decode only the ones kept
                if position % stride == 0 and len(frames) < n:
                    ok, frame = capture.retrieve()
                    if ok:
                        frames.append(
                            (position, frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
                        )
                position += 1
        finally:
            capture.release()
        if not frames:
            raise InputError(f"{path}: opened as a video, but no frame could be decoded")
        return frames, position
    files = image_files(path)
    picks = sorted({int(i) for i in np.linspace(0, len(files) - 1, min(n, len(files))).round()})
    return [(i, read_image(files[i])) for i in picks], len(files)


# ---- what the model makes of them ----


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks; 1 when both are empty (they agree)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def look(predictor: Predictor, images: list[np.ndarray], *, batch_size: int = 8) -> list[dict[str, Any]]:
    """Per frame: the mask (the pupil's blob, flip TTA), confidence, pupil found and its area, and
    the IoU of the plain frame's mask with the mirrored frame's (mirrored back)."""
    looks = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        plain, mirrored = (predictor.on_frames(chunk, p) for p in predictor.mirrored_probabilities(chunk))
        for p, m in zip(plain, mirrored, strict=True):
            prob = 0.5 * (p + m)  # flip TTA, as predict.py --tta
            above = prob > PUPIL_THRESHOLD
            geometry = pupil_geometry(above, prob)
            looks.append(
                {
                    "mask": pupil_mask(prob),
                    "confidence": frame_confidence(prob, above, geometry),
                    "found": geometry["found"],
                    "area": geometry["area_px"],
                    "mirror_iou": mask_iou(pupil_mask(p), pupil_mask(m)),
                }
            )
    return looks


def figures(looks: list[dict], start: list[dict], min_confidence: float) -> dict[str, float]:
    """What is known without labels over the frames looked at; `start`: the start model's looks."""
    confidence = np.array([x["confidence"] for x in looks])
    areas = [x["area"] for x in looks if x["found"]]
    return {
        "frames": len(looks),
        "confidence_median": float(np.median(confidence)),
        "confidence_p10": float(np.percentile(confidence, 10)),
        "confident_share": float(np.mean(confidence >= min_confidence)),
        "tracked_share": float(np.mean(confidence >= TRACKED)),
        "mirror_disagreement": float(1 - np.mean([x["mirror_iou"] for x in looks])),
        "median_area_px": float(np.median(areas)) if areas else math.nan,
        "agreement_with_start": float(
            np.mean([mask_iou(x["mask"], y["mask"]) for x, y in zip(looks, start, strict=True)])
        ),
    }


def collapsed(now: dict[str, float], start: dict[str, float], max_drift: float) -> str | None:
    """Why a round's model counts as collapsed against the start's, or None."""
    area, area_then = now["median_area_px"], start["median_area_px"]
    ratio = area / area_then if area_then > 0 else math.nan
    if not math.isfinite(ratio) or abs(math.log(ratio)) > math.log1p(max_drift):
        return f"median pupil area {area:.0f} px against {area_then:.0f} px at the start"
    tracked, tracked_then = now["tracked_share"], start["tracked_share"]
    if abs(tracked - tracked_then) > max_drift:
        return f"pupil tracked in {tracked:.0%} of frames against {tracked_then:.0%} at the start"
    return None


ROWS = {  # figure -> (label, format)
    "confidence_median": ("confidence, median", "{:.3f}"),
    "confidence_p10": ("confidence, 10th percentile", "{:.3f}"),
    "confident_share": ("frames at --min-confidence", "{:.1%}"),
    "tracked_share": ("pupil tracked (confidence >= 0.3)", "{:.1%}"),
    "mirror_disagreement": ("disagreement with the mirrored frame (1 - IoU)", "{:.4f}"),
    "median_area_px": ("median pupil area, px", "{:.0f}"),
    "agreement_with_start": ("mask IoU with the start model's", "{:.4f}"),
}


def table(rounds: list[dict[str, float]]) -> str:
    """The before / after table (Markdown): a column per model, the start first."""
    head = ["", "start", *(f"round {k}" for k in range(1, len(rounds)))]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for key, (label, fmt) in ROWS.items():
        lines.append("| " + " | ".join([label, *(fmt.format(r[key]) for r in rounds)]) + " |")
    return "\n".join(lines)


# ---- the rounds ----


def fine_tune(source: Path, data: Path, out: Path, size: tuple[int, int], config: AdaptConfig) -> Path:
    """Fine-tune `source` (.pt) on the pseudo-labelled folder `data` at `size`; returns its last.pt."""
    from train_efficientvit import main as train  # torch's training side, only when a round runs

    data_config = DataConfig(data_dir=str(data), img_size=size)
    train_config = TrainConfig(
        init_from=str(source),
        model=None,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        workers=0,
        out_dir=str(out),
        mlflow=config.mlflow,
        experiment="adapt",
        grid_every=config.epochs,
        data=data_config,
    )
    if train(train_config)["interrupted"]:
        raise KeyboardInterrupt
    return out / "last.pt"


def adapt(
    inputs: list[Path],
    output: Path,
    checkpoint: Path,
    config: AdaptConfig,
    *,
    img_size: tuple[int, int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Adapt `checkpoint` (.pt) to the camera of `inputs` in the new or empty folder `output`;
    returns what adapt.json holds. Raises AdaptError, SelectionError, InputError (ValueErrors) or
    OSError with one line."""
    if checkpoint.suffix.lower() == ".onnx":
        raise AdaptError(
            f"{checkpoint} is an ONNX export; adapting fine-tunes a .pt checkpoint (its own, or pretrained)"
        )
    output = new_folder(output, overwrite=False, flag=None)  # checked before any work
    recordings = {}
    for name, path in zip(recording_names(inputs), inputs, strict=True):
        recordings[name] = scan(path, config.scan)
    frames = [
        (name, pos, length, image) for name, (kept, length) in recordings.items() for pos, image in kept
    ]
    images = [image for *_, image in frames]
    predictor = load_predictor(checkpoint).use_size(img_size)
    # the size the start model runs these frames at (their own, for a model trained across sizes)
    size = predictor.input_size(Counter(im.shape[:2] for im in images).most_common(1)[0][0])
    total = sum(length for _, length in recordings.values())
    log(f"looking at {len(images)} of {total} frames in {len(inputs)} recording(s), at {size[0]}x{size[1]}")
    output.mkdir(parents=True, exist_ok=True)
    start = latest = look(predictor.use_size(size), images)
    rounds, adapted, source, stop = [figures(start, start, config.min_confidence)], None, checkpoint, None
    for k in range(1, config.rounds + 1):
        candidates = [
            Candidate(name, pos, length, image, x["mask"], x["confidence"])
            for (name, pos, length, image), x in zip(frames, latest, strict=True)
        ]
        picked = select_frames(
            candidates,
            min_confidence=config.min_confidence,
            max_frames=config.max_frames,
            min_frames=config.min_frames,
            min_span=config.min_span,
        )
        folder = output / f"round-{k}"
        counts = write_dataset(folder / "data", picked)
        log(f"round {k}: fine-tuning on {counts['train']} frames, validating on {counts['validation']}")
        source = fine_tune(source, folder / "data", folder / "train", size, config)
        looks = look(load_predictor(source).use_size(size), images)
        rounds.append(figures(looks, start, config.min_confidence))
        if stop := collapsed(rounds[-1], rounds[0], config.max_drift):
            log(f"round {k} collapsed ({stop}); its model is not kept")
            break
        adapted, latest = source, looks
    log(table(rounds))
    result = {
        "checkpoint": str(checkpoint),
        "inputs": [str(path) for path in inputs],
        "size": list(size),
        "config": config.to_dict(),
        "rounds": rounds,
        "collapse": stop,
    }
    if adapted is not None:
        result["adapted"] = str(
            save_checkpoint(weights_only(load_checkpoint(adapted)), output / "adapted.pt")
        )
        if config.export:
            from export_onnx import export_onnx  # the exporter's imports, only when it runs

            export_onnx(output / "adapted.pt", output / "adapted.onnx", log=log)
            result["onnx"] = str(output / "adapted.onnx")
    write_text(output / "report.md", f"# Adapted without labels\n\n{table(rounds)}\n")
    write_text(output / "adapt.json", json.dumps(result, indent=2) + "\n")
    if adapted is None:
        raise AdaptError(f"round 1 collapsed ({stop}): no adapted model; {checkpoint} stays the one to use")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Adapt a model to a camera from its unlabelled frames.")
    add_checkpoint_argument(
        parser,
        convert=lambda name: model_file(name, ".pt"),
        default="pretrained",
        help="the .pt checkpoint to start from, or pretrained: the shipped model",
    )
    parser.add_argument(
        "--input", type=Path, nargs="+", required=True, help="videos, image folders or images of the camera"
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="a new or empty folder for the rounds and the adapted model",
    )
    parser.add_argument(
        "--img-size",
        type=size_argument,
        metavar="HxW",
        help="look and fine-tune at this size (default: the size the start model runs the frames at, "
        "as predict.py does)",
    )
    add_settings(parser, AdaptConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build(AdaptConfig, given(args, ADAPT_FLAGS), ADAPT_FLAGS)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = adapt(args.input, args.output, args.checkpoint, config, img_size=args.img_size)
    except (ValueError, OSError) as exc:  # AdaptError, SelectionError, InputError, CheckpointError, ...
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; {args.output} holds the rounds finished so far", file=sys.stderr)
        return 130
    print(f"adapted model: {result['adapted']}" + (f" and {result['onnx']}" if "onnx" in result else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
