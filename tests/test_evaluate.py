"""Evaluation: metric functions on hand-made masks, the report files, .pt / .onnx agreement,
native-size scoring and the CLI, with the shipped pretrained model (it finds pupils) or an untrained one."""

from __future__ import annotations

import ast
import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.frames import Frames, frames_for
from data.synthetic import write_openeds
from evaluate import build_parser, evaluate, main, score_frame, summarize
from evaluation.metrics import (
    MB,
    confusion_metrics,
    mask_counts,
    set_metrics,
)
from inference import load_predictor, pupil_geometry, pupil_mask
from pupillometry.confidence import frame_confidence
from reports.evaluation import gallery_picks, markdown_report, write_gallery
from reports.gallery import BACKGROUND, CAPTION_HEIGHT, GAP, TILE_SIZE
from tests.conftest import (
    PRETRAINED_ONNX,
    PRETRAINED_PT,
    disc,
    diverged_checkpoint,
    diverged_onnx,
    make_checkpoint,
)

FRAMES = 4  # of the pretrained model's synthetic validation frames: one gallery row


def test_summary_locates_pupils_against_the_label_centroid_and_buckets_by_diameter():
    label = disc(40, 30, radius=12)  # 25 px across
    frames = [(np.roll(label, 3, axis=1), label), (np.roll(label, 8, axis=1), label)]
    frames += [(np.zeros_like(label), label), (np.zeros_like(label), np.zeros_like(label))]
    scores = [score_frame(pred.astype(np.float32), truth) for pred, truth in frames]
    assert [round(s["located_error"], 1) for s in scores[:2]] == [3.0, 8.0]
    assert scores[2]["located_error"] == math.inf and math.isnan(scores[3]["located_error"])
    summary = summarize(scores, seconds=1.0, file_bytes=1000)
    assert summary["located"]["share"] == pytest.approx(1 / 3)  # 3 px of 3 labelled pupils
    assert summary["located"]["median_error_px"] == pytest.approx(8.0)
    (bucket,) = summary["iou_by_pupil_diameter"]
    assert (bucket["min_px"], bucket["frames"]) == (20, 3)
    assert summary["challenge_score"] == pytest.approx(0.5 * (summary["miou"] + 1))  # under 1 MB
    big = summarize(scores, seconds=1.0, file_bytes=2 * MB)["challenge_score"]
    assert big == pytest.approx(0.5 * (summary["miou"] + 0.5))
    summary = summarize(scores[2:], seconds=1.0, file_bytes=1000)
    assert summary["located"] == {"within_px": 5.0, "share": 0.0, "median_error_px": None}  # all missed


def test_summary_ranks_wrong_frames_by_confidence():
    label, empty = disc(40, 30, radius=12), np.zeros((60, 80), np.uint8)
    blurred_off = cv2.GaussianBlur(np.roll(label, 4, axis=1).astype(np.float32), (9, 9), 2)
    frames = [(label.astype(np.float32), label), (blurred_off, label)]  # right, 4 px off
    frames += [(empty.astype(np.float32), label), (empty.astype(np.float32), empty)]  # missed; right
    scores = [score_frame(prob, truth) for prob, truth in frames]
    assert [s["wrong"] for s in scores] == [False, True, True, False]
    assert scores[0]["confidence"] > scores[1]["confidence"] > 0 == scores[2]["confidence"]
    summary = summarize(scores, seconds=1.0, file_bytes=1000)["confidence"]
    # the frame rightly left empty has no pupil to trust: left out, the sure frame ranks over both wrong
    assert summary["auroc"] == 1.0 and summary["wrong"] == 2 and summary["frames"] == 3
    assert [d["frames"] for d in summary["deciles"]] == [1, 1, 1]
    assert summary["deciles"][-1]["confidence_min"] == scores[0]["confidence"]


def test_galleries_rank_by_iou_and_skip_frames_empty_in_both():
    scores = [
        {"pupil_iou": iou, "label_pupil": found, "predicted_pupil": found}
        for iou, found in ((0.9, True), (1.0, False), (0.2, True), (0.5, True))
    ]
    assert gallery_picks(scores, n=2) == ([0, 3], [2, 3])


class ShiftedLabels:
    """Predicts each frame's own label shifted 5 px right: a known, imperfect prediction."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]):
        self.labels = {id(image): label for image, label in pairs}

    def probabilities(self, images: list[np.ndarray], tta: bool = False, batch_size: int = 8):
        return [np.roll(self.labels[id(image)], 5, axis=1).astype(np.float32) for image in images]


def test_gallery_is_a_screen_sized_grid_of_mixed_frames(tmp_path):
    sizes = [(200, 200), (400, 640)] * 4  # crops next to full frames
    pairs = [(np.full(size, 128, np.uint8), disc(size[1] // 2, size[0] // 2, 30, size)) for size in sizes]
    frames = Frames(tuple(f"{i:06d}.png" for i in range(8)), pairs.__getitem__, "mixed", "masks")
    predictor = ShiftedLabels(pairs)
    scores = [score_frame(predictor.probabilities([image])[0], label) for image, label in pairs]
    write_gallery(tmp_path / "g.png", predictor, frames, picks=list(range(8)), scores=scores, threshold=0.5)
    gallery = cv2.imread(str(tmp_path / "g.png"))
    height, width = 2 * (CAPTION_HEIGHT + TILE_SIZE[0]) + GAP, 4 * TILE_SIZE[1] + 3 * GAP
    assert gallery.shape == (height, width, 3) and width <= 1920 and width > height  # 4 x 2 tiles
    crop_tile = gallery[CAPTION_HEIGHT : CAPTION_HEIGHT + TILE_SIZE[0], : TILE_SIZE[1]]
    columns = np.nonzero((crop_tile != BACKGROUND).any(axis=(0, 2)))[0]
    assert columns.max() - columns.min() + 1 == TILE_SIZE[0]  # the 200x200 crop stays square


def mode_figures(**located) -> dict:
    """One mode's figures as summarize gives them, every pupil found 3 px off."""
    errors = {"n": 2, "mean": 3.0, "median": 3.0, "p95": 3.0}
    detection = {"accuracy": 1.0, "missed": 0, "with_pupil": 2, "false_positives": 0, "without_pupil": 0}
    buckets = [
        {"min_px": 20, "max_px": 30, "frames": 1, "pupil_iou": 0.5},
        {"min_px": 70, "max_px": 10_000, "frames": 1, "pupil_iou": 0.75},
    ]
    overlap = dict.fromkeys(("background_iou", "pupil_iou", "miou", "pupil_dice", "precision", "recall"), 0.9)
    return {
        **overlap,
        "centre_error_px": {"ellipse": errors, "centroid": errors},
        "located": {"within_px": 5.0, "share": 1.0, "median_error_px": 3.0, **located},
        "iou_by_pupil_diameter": buckets,
        "detection": detection,
        "confidence": {
            "wrong_px": 2.0,
            "wrong": 1,
            "auroc": 0.75,
            "auroc_mean_prob": None,
            "deciles": [
                {
                    "frames": 1,
                    "confidence_min": 0.1,
                    "confidence_max": 0.1,
                    "pupil_iou": 0.5,
                    "median_centre_error_px": None,
                    "wrong": 1.0,
                },
                {
                    "frames": 1,
                    "confidence_min": 0.9,
                    "confidence_max": 0.9,
                    "pupil_iou": 0.75,
                    "median_centre_error_px": 1.25,
                    "wrong": 0.0,
                },
            ],
        },
        "challenge_score": 0.95,
        "images_per_s": 12.34,
    }


def test_report_leaves_the_last_diameter_bucket_open_and_says_n_a_for_missing_figures():
    result = {
        "model": {
            "file": "m/best.onnx",
            "model_name": "tiny",
            "backend": "onnxruntime",
            "device": "CPU",
            "file_bytes": 250_000,
        },
        "data": {"description": "2 frames", "with_pupil": 2, "without_pupil": 0},
        "threshold": 0.5,
        "diameter_edges_px": [0, 20, 30, 45, 70, 10_000],
        "batch_size": 8,
        "plain": mode_figures(share=None, median_error_px=None),
        "tta": mode_figures(),
    }
    report = markdown_report(result)
    assert "| 20-30 | 1 | 0.5000 |" in report and "| 70- | 1 | 0.7500 |" in report
    assert "| median located error, px (misses infinite) | n/a | 3.00 |" in report
    assert "0.250 MB" in report and "training state" not in report  # an .onnx is what ships
    assert "| 1 | 1 | 0.10-0.10 | 0.500 | n/a | 100% |" in report
    assert "| 2 | 1 | 0.90-0.90 | 0.750 | 1.25 | 0% |" in report
    assert "wrong pupil: 0.750 (mean pupil probability alone: n/a)" in report
    assert "gallery_best.png" not in report  # no galleries written


# evaluate with the pretrained model on its own synthetic validation frames


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return evaluate(PRETRAINED_ONNX, synthetic_n=FRAMES, tta=True, output=tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """An untrained model file, trained (says its card) with seed 3 on synthetic eyes."""
    return make_checkpoint(tmp_path_factory.mktemp("untrained") / "best.pt", train_seed=3)


def test_reports_every_figure_for_plain_and_tta(result):
    assert result["data"]["frames"] == FRAMES
    assert result["data"]["seed"] == 0  # the pretrained model's training seed
    assert result["model"]["file_bytes"] == PRETRAINED_ONNX.stat().st_size
    for mode in ("plain", "tta"):
        figures = result[mode]
        assert figures["pupil_iou"] > 0.85  # the model finds pupils on the frames it validated on
        assert figures["located"]["share"] == 1.0 and figures["located"]["median_error_px"] < 2
        assert figures["centre_error_px"]["ellipse"]["n"] == figures["detection"]["with_pupil"] == FRAMES
        assert sum(b["frames"] for b in figures["iou_by_pupil_diameter"]) == FRAMES
        assert sum(b["frames"] for b in figures["confidence"]["deciles"]) == FRAMES
        size_term = min(1.0, MB / PRETRAINED_ONNX.stat().st_size)
        assert figures["challenge_score"] == pytest.approx(0.5 * (figures["miou"] + size_term))


def test_out_folder_has_metrics_report_frames_and_galleries(result):
    outputs = result["outputs"]
    assert json.loads(Path(outputs["metrics"]).read_text()) == json.loads(json.dumps(result))
    row = f"| pupil IoU | {result['plain']['pupil_iou']:.4f} | {result['tta']['pupil_iou']:.4f} |"
    report = Path(outputs["report"]).read_text()
    assert row in report and "![worst](gallery_worst.png)" in report
    for name in ("gallery_best", "gallery_worst"):
        assert cv2.imread(outputs[name]).shape == (CAPTION_HEIGHT + TILE_SIZE[0], 1920, 3)  # a row of 4
    with open(outputs["frames"], newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [
        "pupil_iou",
        "predicted_pupil",
        "ellipse_error",
        "centroid_error",
        "located_error",
        "confidence",
        "wrong",
    ]
    assert list(rows[0]) == ["frame", "label_pupil", *columns, *(f"{c}_tta" for c in columns)]
    assert [r["frame"] for r in rows] == [f"synthetic_{i:05d}" for i in range(FRAMES)]
    image, label = frames_for(None, "validation", n=FRAMES, seed=0, size=(256, 416), style="full").read(1)
    prob = load_predictor(PRETRAINED_ONNX).probabilities([image])[0]
    mask = pupil_mask(prob)  # the pupil's blob, as scored
    assert float(rows[1]["pupil_iou"]) == pytest.approx(
        set_metrics([mask_counts(mask, label)])["pupil_iou"], abs=1e-4
    )
    confidence = frame_confidence(prob, mask, pupil_geometry(mask, prob))
    assert confidence > 0.5 and float(rows[1]["confidence"]) == pytest.approx(confidence, abs=1e-4)
    assert "## Pupil by confidence decile (plain)" in report


def test_onnx_export_scores_like_its_checkpoint():
    exported, checkpoint = evaluate(PRETRAINED_ONNX, synthetic_n=2), evaluate(PRETRAINED_PT, synthetic_n=2)
    assert (checkpoint["model"]["backend"], exported["model"]["backend"]) == ("pytorch", "onnxruntime")
    assert checkpoint["data"]["description"] == exported["data"]["description"]
    plain, other = checkpoint["plain"], exported["plain"]
    for key in ("background_iou", "pupil_iou", "miou", "pupil_dice", "precision", "recall"):
        assert other[key] == pytest.approx(plain[key], abs=1e-3)
    for kind in ("ellipse", "centroid"):
        assert other["centre_error_px"][kind]["mean"] == pytest.approx(
            plain["centre_error_px"][kind]["mean"], abs=0.05
        )
    assert other["detection"] == plain["detection"]


def test_folder_frames_are_scored_at_the_label_size(tmp_path):
    root = write_openeds(tmp_path / "ds", 5, seed=3, size=(120, 200), val_fraction=0.4)
    figures = evaluate(PRETRAINED_ONNX, data_dir=root)
    predictor = load_predictor(PRETRAINED_ONNX)
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(root.glob("validation/images/*"))]
    labels = [(np.load(p) == 3) for p in sorted(root.glob("validation/labels/*.npy"))]
    probs = predictor.probabilities(images)
    counts = [mask_counts(pupil_mask(p), label) for p, label in zip(probs, labels, strict=True)]
    counts = np.sum(counts, axis=0)
    assert figures["data"]["frames"] == 2 and figures["data"]["seed"] is None
    assert figures["plain"]["pupil_iou"] > 0.5  # pupils found, so the comparison below says something
    assert figures["plain"]["pupil_iou"] == pytest.approx(confusion_metrics(*counts)["pupil_iou"])


def test_synthetic_frames_follow_the_models_training_seed(untrained):
    figures = evaluate(untrained, synthetic_n=1)
    assert figures["data"]["seed"] == 3
    assert (
        figures["data"]["description"] == "1 synthetic validation frames of a training run with seed 3, 64x96"
    )


def test_cli_writes_json_and_prints_the_table(tmp_path, capsys):
    argv = ["--checkpoint", str(PRETRAINED_ONNX), "--synthetic-n", "2", "--json", str(tmp_path / "m.json")]
    assert main(argv) == 0
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["data"]["frames"] == 2 and "tta" not in written
    assert f"| mIoU | {written['plain']['miou']:.4f} |" in capsys.readouterr().out


def test_out_is_the_old_spelling_of_output_and_says_so(tmp_path, capsys):
    argv = ["--checkpoint", str(PRETRAINED_ONNX), "--synthetic-n", "1", "--out", str(tmp_path / "old")]
    assert main(argv) == 0
    assert capsys.readouterr().err == "--out is deprecated, use --output\n"
    assert (tmp_path / "old" / "metrics.json").is_file() and (tmp_path / "old" / "report.md").is_file()
    assert build_parser().parse_args(["--output", "new"]).output == Path("new")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--checkpoint", "{tmp}/missing.pt"], "missing.pt"),
        (["--checkpoint", "{tmp}/bad.onnx"], "bad.onnx"),
        (["--checkpoint", "{ckpt}", "--data-dir", "{tmp}/no_data"], "no_data"),
        (["--checkpoint", "{ckpt}", "--split", "test"], "'test'"),
        (["--checkpoint", "{ckpt}", "--device", "gpu0"], "'gpu0'"),
    ],
)
def test_bad_input_is_a_one_line_error(untrained, tmp_path, capsys, args, named):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    argv = [a.format(tmp=tmp_path, ckpt=untrained) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and named in err and "\n" not in err


@pytest.mark.parametrize(
    ("write", "name"),
    [(diverged_checkpoint, "best.pt"), (lambda path: diverged_onnx(path, math.inf), "best.onnx")],
)
def test_non_finite_weights_are_refused_not_scored(tmp_path, capsys, write, name):
    path = write(tmp_path / name)
    assert main(["--checkpoint", str(path), "--synthetic-n", "1", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} holds non-finite weights (1 tensor, e.g. ") and err.count("\n") == 1
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_model_trained_on_a_folder_is_not_scored_on_synthetic_eyes(tmp_path, capsys):
    path = make_checkpoint(tmp_path / "best.pt", train_seed=0, train_data_dir="/data/eyes")
    with pytest.raises(ValueError, match="pass --data-dir"):
        evaluate(path)
    assert main(["--checkpoint", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {path} was trained on /data/eyes; pass --data-dir "
        "(synthetic eyes would not be its validation frames)\n"
    )


ROOT = Path(__file__).resolve().parents[1]


def project_imports(module: str) -> set[str]:
    """The project's modules that importing `module` can load: every import statement of it and of
    those, followed (packages' __init__ included); third-party and standard modules left out."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        files = [ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
        files += [ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")]
        files = [f for f in files if f.is_file()]
        if name in seen or not files:
            continue
        seen.add(name)
        for node in (n for f in files for n in ast.walk(ast.parse(f.read_text()))):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return seen


def test_evaluate_does_not_import_the_predict_cli():
    imported = project_imports("evaluate")
    assert {"inference", "reports.evaluation", "data.frames"} <= imported  # it follows imports
    assert "predict" not in imported
