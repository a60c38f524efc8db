"""What `evaluate.py --output DIR` writes: metrics.json (the figures), report.md (them as Markdown,
and the frames by confidence decile), frames.csv (a row of scores per frame) and gallery_best.png /
gallery_worst.png (the best and worst frames by pupil IoU, `reports.gallery.tile_grid`). Everything here
reads evaluate.py's result dict and per-frame scores; nothing is scored here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.runfolder import atomic_path, write_text
from data.folders import write_image
from data.frames import Frames
from evaluation.metrics import MB, WRONG_PX
from inference import Predictor, pupil_mask
from reports.gallery import IOU_COLOUR, NAME_COLOUR, gallery_tile, tile_grid

GALLERY_FRAMES = 16  # per gallery: 4 rows of 4 on a full-HD screen
MODE_NAMES = {"plain": "plain", "tta": "flip TTA"}  # result keys -> table column titles

# ---- galleries ----


def gallery_picks(scores: list[dict], n: int = GALLERY_FRAMES) -> tuple[list[int], list[int]]:
    """Indices of the n best and n worst frames by pupil IoU, among frames where label or
    prediction has a pupil (a pupil-less frame predicted empty is right, but says nothing)."""
    ranked = sorted(
        (i for i, s in enumerate(scores) if s["label_pupil"] or s["predicted_pupil"]),
        key=lambda i: (-scores[i]["pupil_iou"], i),
    )
    return ranked[:n], ranked[::-1][:n]


def write_gallery(
    path: Path,
    predictor: Predictor,
    frames: Frames,
    *,
    picks: list[int],
    scores: list[dict],
    threshold: float,
    raw_mask: bool = False,
) -> None:
    """The picked frames in a grid (`tile_grid`), each with its name, pupil IoU and centre error;
    the prediction as scored: the pupil's blob above `threshold` (`pupillometry.geometry.pupil_mask`), or
    with `raw_mask` every pixel above it."""
    tiles = []
    for index in picks:
        image, label = frames.read(index)
        prob = predictor.probabilities([image])[0]
        s = scores[index]
        error = "" if math.isnan(s["ellipse_error"]) else f"  centre {s['ellipse_error']:.1f} px"
        caption = [(frames.names[index], NAME_COLOUR), (f"pupil IoU {s['pupil_iou']:.3f}{error}", IOU_COLOUR)]
        tiles.append(gallery_tile(image, label, pupil_mask(prob, threshold, raw=raw_mask), caption=caption))
    write_image(path, tile_grid(tiles))


# ---- Markdown ----


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
    (
        f"AUROC of confidence for a wrong pupil (centre > {WRONG_PX:g} px off, missed, invented)",
        lambda r: _number(r["confidence"]["auroc"], 3),
    ),
    ("OpenEDS challenge score", lambda r: _number(r["challenge_score"])),
    ("images/s", lambda r: f"{r['images_per_s']:.1f}"),
)


def markdown_table(result: dict) -> str:
    """The figures as one Markdown table, a column per mode (plain, flip TTA)."""
    modes = [m for m in MODE_NAMES if m in result]
    lines = ["| metric | " + " | ".join(MODE_NAMES[m] for m in modes) + " |"]
    lines.append("|---|" + "---:|" * len(modes))
    lines += [f"| {name} | " + " | ".join(cell(result[m]) for m in modes) + " |" for name, cell in TABLE_ROWS]
    return "\n".join(lines)


def _diameter_table(buckets: list[dict], open_from: float) -> list[str]:
    lines = ["| diameter, px | frames | pupil IoU |", "|---|---:|---:|"]
    for b in buckets:
        top = "" if b["max_px"] >= open_from else f"{b['max_px']}"  # the last bucket has no upper end
        lines.append(f"| {b['min_px']}-{top} | {b['frames']} | {b['pupil_iou']:.4f} |")
    return lines


def _confidence_section(summary: dict) -> list[str]:
    """The frames by confidence decile, least confident first, and the AUROC beside mean_prob's."""
    px, frames = f"{summary['wrong_px']:g}", sum(b["frames"] for b in summary["deciles"])
    lines = [
        "## Pupil by confidence decile (plain)",
        "",
        f"Frames ranked by confidence, least confident first, in groups of equal size. Wrong: a "
        f"labelled pupil missed or its ellipse centre more than {px} px from the label's ellipse "
        f"centre or centroid, or a pupil found on a frame without one; {summary['wrong']} of the "
        f"{frames} frames with a pupil in the label or the prediction. AUROC of confidence for a "
        f"wrong pupil: {_number(summary['auroc'], 3)} (mean pupil probability alone: "
        f"{_number(summary['auroc_mean_prob'], 3)}).",
        "",
        "| decile | frames | confidence | mean pupil IoU | median centre error, px | wrong |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for i, b in enumerate(summary["deciles"], 1):
        spread = f"{b['confidence_min']:.2f}-{b['confidence_max']:.2f}"
        error, wrong = _number(b["median_centre_error_px"], 2), f"{b['wrong']:.0%}"
        lines.append(f"| {i} | {b['frames']} | {spread} | {b['pupil_iou']:.3f} | {error} | {wrong} |")
    return lines


def _galleries() -> list[str]:
    return [
        f"## Best and worst {GALLERY_FRAMES} frames by pupil IoU (plain)",
        "",
        "Each frame: label outlined in green, prediction tinted and outlined in red.",
        "",
        "![best](gallery_best.png)",
        "",
        "![worst](gallery_worst.png)",
    ]


def markdown_report(result: dict) -> str:
    """report.md: what was scored, the table, how the figures are made, IoU by pupil size, galleries."""
    model, data = result["model"], result["data"]
    name = Path(model["file"]).name
    pt_note = (
        "; a .pt also holds training state, the .onnx export is what ships"
        if model["backend"] == "pytorch"
        else ""
    )
    lines = [
        f"# Evaluation of {model['model_name']} ({name}, {model['backend']})",
        "",
        f"Frames: {data['description']}; {data['with_pupil']} with a pupil, {data['without_pupil']} without.",
        f"Scored at each label's own size; pupil where the probability is above {result['threshold']}.",
        "",
        markdown_table(result),
        "",
        f"- Challenge score: 0.5 * (mIoU + min(1, 1 / S)), S = the size of {name} as given, "
        f"{model['file_bytes'] / MB:.3f} MB (1 MB = 10^6 bytes){pt_note}.",
        "- Centre errors: prediction vs label, largest blob of each, on frames where both have a pupil.",
        f"- Images/s: resizing, preprocessing, the model ({model['backend']} on {model['device']}) and "
        f"resizing back, batches of {result['batch_size']}; reading files and scoring excluded.",
    ]
    buckets = result["plain"]["iou_by_pupil_diameter"]
    if buckets:
        lines += ["", "## Pupil IoU by label pupil diameter (plain)", ""]
        lines += _diameter_table(buckets, result["diameter_edges_px"][-1])
    lines += ["", *_confidence_section(result["plain"]["confidence"])]
    if "gallery_best" in result.get("outputs", {}):
        lines += ["", *_galleries()]
    return "\n".join(lines) + "\n"


# ---- files ----

FRAME_COLUMNS = (
    "pupil_iou",
    "predicted_pupil",
    "ellipse_error",
    "centroid_error",
    "located_error",
    "confidence",
    "wrong",
)


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 4)
    return value


def write_frames_csv(path: Path, names: tuple[str, ...], scores: dict[str, list[dict]]) -> None:
    """One row per frame: pupil in the label; per mode pupil IoU, pupil predicted, centre errors and
    confidence (columns of modes after "plain" end in _<mode>)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as f:
        rows = csv.writer(f)
        header = [c if m == "plain" else f"{c}_{m}" for m in scores for c in FRAME_COLUMNS]
        rows.writerow(["frame", "label_pupil", *header])
        for i, name in enumerate(names):
            values = [scores[m][i][c] for m in scores for c in FRAME_COLUMNS]
            rows.writerow([name, scores["plain"][i]["label_pupil"], *map(_csv_value, values)])


def write_outputs(
    output: Path, result: dict, predictor: Predictor, *, frames: Frames, scores: dict[str, list[dict]]
) -> dict[str, str]:
    """metrics.json, report.md, frames.csv and the galleries in the `output` folder; sets and returns
    result["outputs"], their paths."""
    paths = {
        "metrics": output / "metrics.json",
        "report": output / "report.md",
        "frames": output / "frames.csv",
    }
    best, worst = gallery_picks(scores["plain"])
    for name, picks in (("gallery_best", best), ("gallery_worst", worst)):
        if picks:  # none when no frame has a pupil in label or prediction
            paths[name] = output / f"{name}.png"
            write_gallery(
                paths[name],
                predictor,
                frames,
                picks=picks,
                scores=scores["plain"],
                threshold=result["threshold"],
                raw_mask=result["mask"] == "raw",
            )
    write_frames_csv(paths["frames"], frames.names, scores)
    result["outputs"] = {name: str(path) for name, path in paths.items()}
    write_text(paths["metrics"], json.dumps(result, indent=2) + "\n")
    write_text(paths["report"], markdown_report(result))
    return result["outputs"]
