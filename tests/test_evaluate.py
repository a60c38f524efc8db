"""Evaluation: metric functions on hand-made masks, .pt / .onnx agreement, native-size scoring, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import PreprocessConfig
from data.synthetic import write_openeds
from evaluate import FrameSet, evaluate, gallery_picks, main, score_frame, summarize, write_gallery
from export_onnx import export_onnx
from gallery import BACKGROUND, CAPTION_HEIGHT, FONT, FONT_SCALE, GAP, TILE_SIZE, fit_text, fit_tile
from inference import load_predictor, pupil_geometry
from metrics import (
    centre_error,
    challenge_score,
    confusion_metrics,
    detection_summary,
    diameter_buckets,
    error_summary,
    located_share,
    mask_counts,
    mask_iou,
)
from models import build_model
from models.checkpoint import save_checkpoint

FRAMES = 6


def square(top: int, left: int, side: int = 10, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def disc(x: int, y: int, radius: int = 8, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    return cv2.circle(np.zeros(shape, np.uint8), (x, y), radius, 1, -1)


# metric functions


def test_overlapping_squares_give_known_counts_iou_and_dice():
    pred, truth = square(5, 5), square(5, 10)  # half of each square overlaps the other
    assert mask_counts(pred, truth) == (50, 50, 50, 40 * 60 - 150)
    assert mask_iou(pred, truth) == pytest.approx(1 / 3)
    assert confusion_metrics(*mask_counts(pred, truth))["pupil_dice"] == pytest.approx(0.5)


def test_iou_is_one_for_two_empty_masks_and_zero_for_disjoint_ones():
    empty = np.zeros((40, 60), np.uint8)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(square(0, 0), square(20, 30)) == 0.0


def test_mask_counts_refuses_masks_of_different_sizes():
    with pytest.raises(ValueError, match="differs"):
        mask_counts(np.zeros((40, 60)), np.zeros((60, 40)))


def test_centre_error_of_two_discs_is_their_offset():
    mine, truth = pupil_geometry(disc(33, 24).astype(bool)), pupil_geometry(disc(30, 20).astype(bool))
    for x, y in (("centre_x", "centre_y"), ("centroid_x", "centroid_y")):
        assert centre_error((mine[x], mine[y]), (truth[x], truth[y])) == pytest.approx(5.0, abs=0.05)


def test_error_summary_gives_mean_median_p95_and_none_without_errors():
    assert error_summary([1, 2, 3, 4, 100]) == {
        "n": 5,
        "mean": 22.0,
        "median": 3.0,
        "p95": pytest.approx(80.8),
    }
    assert error_summary([]) == {"n": 0, "mean": None, "median": None, "p95": None}


def test_detection_counts_missed_pupils_and_false_positives_on_closed_eyes():
    summary = detection_summary([True, True, False, False, False], [True, False, True, False, False])
    assert summary == {
        "frames": 5,
        "accuracy": pytest.approx(0.6),
        "with_pupil": 2,
        "missed": 1,
        "without_pupil": 3,
        "false_positives": 1,
    }


def test_located_share_counts_misses_as_never_located():
    assert located_share([0.5, 5.0, 5.1, math.inf]) == pytest.approx(0.5)
    assert located_share([]) is None


def test_diameter_buckets_sum_pixels_per_size_range_and_skip_empty_ones():
    counts = [(8, 1, 1, 90), (2, 4, 4, 90), (50, 0, 0, 50)]  # IoU 0.8, 0.2 (sums to 0.5), 1.0
    rows = diameter_buckets([10, 19.9, 40], counts, (0, 20, 30, 50))
    assert rows == [
        {"min_px": 0, "max_px": 20, "frames": 2, "pupil_iou": pytest.approx(0.5)},
        {"min_px": 30, "max_px": 50, "frames": 1, "pupil_iou": pytest.approx(1.0)},
    ]


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
    summary = summarize(scores[2:], seconds=1.0, file_bytes=1000)
    assert summary["located"] == {"within_px": 5.0, "share": 0.0, "median_error_px": None}  # all missed


def test_challenge_score_caps_the_size_term_at_one():
    assert challenge_score(0.8, 500_000) == pytest.approx(0.9)  # 0.5 MB: the size term is 1
    assert challenge_score(0.8, 2_000_000) == pytest.approx(0.65)  # 2 MB: 1 / 2
    with pytest.raises(ValueError, match="positive"):
        challenge_score(0.8, 0)


def test_galleries_rank_by_iou_and_skip_frames_empty_in_both():
    scores = [
        {"pupil_iou": iou, "label_pupil": found, "predicted_pupil": found}
        for iou, found in ((0.9, True), (1.0, False), (0.2, True), (0.5, True))
    ]
    assert gallery_picks(scores, n=2) == ([0, 3], [2, 3])


def test_fit_tile_scales_and_pads_without_stretching():
    crop = np.full((200, 200), 255, np.uint8)
    tile = fit_tile(crop, (300, 480))
    rows, cols = np.nonzero(tile == 255)
    assert tile.shape == (300, 480)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 299, 90, 389)  # 300x300, centred
    assert (tile[:, :90] == BACKGROUND).all() and (tile[:, 390:] == BACKGROUND).all()
    frame = np.full((400, 640), 255, np.uint8)
    assert (fit_tile(frame, (300, 480)) == 255).all()  # the same aspect ratio fills the tile
    mask = fit_tile(np.eye(200, dtype=np.uint8), (300, 480), fill=0, nearest=True)
    assert set(np.unique(mask)) == {0, 1}  # masks stay masks


def test_long_frame_names_are_cut_in_the_middle_to_fit():
    name = "recording_2024-05-01_left_camera_subject_17_session_3_frame_000123.png"
    short = fit_text(name, 200)
    assert cv2.getTextSize(short, FONT, FONT_SCALE, 1)[0][0] <= 200
    assert "..." in short and short.endswith("000123.png") and short.startswith("rec")
    assert fit_text("000001.png", 200) == "000001.png"


class ShiftedLabels:
    """Predicts each frame's own label shifted 5 px right: a known, imperfect prediction."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]):
        self.labels = {id(image): label for image, label in pairs}

    def probabilities(self, images: list[np.ndarray], tta: bool = False, batch_size: int = 8):
        return [np.roll(self.labels[id(image)], 5, axis=1).astype(np.float32) for image in images]


def test_gallery_is_a_screen_sized_grid_of_mixed_frames(tmp_path):
    sizes = [(200, 200), (400, 640)] * 4  # crops next to full frames
    pairs = [(np.full(size, 128, np.uint8), disc(size[1] // 2, size[0] // 2, 30, size)) for size in sizes]
    frames = FrameSet([f"{i:06d}.png" for i in range(8)], lambda i: pairs[i], "mixed")
    predictor = ShiftedLabels(pairs)
    scores = [score_frame(predictor.probabilities([image])[0], label) for image, label in pairs]
    write_gallery(tmp_path / "g.png", predictor, frames, list(range(8)), scores)
    gallery = cv2.imread(str(tmp_path / "g.png"))
    height, width = 2 * (CAPTION_HEIGHT + TILE_SIZE[0]) + GAP, 4 * TILE_SIZE[1] + 3 * GAP
    assert gallery.shape == (height, width, 3) and width <= 1920 and width > height  # 4 x 2 tiles
    crop_tile = gallery[CAPTION_HEIGHT : CAPTION_HEIGHT + TILE_SIZE[0], : TILE_SIZE[1]]
    columns = np.nonzero((crop_tile != BACKGROUND).any(axis=(0, 2)))[0]
    assert columns.max() - columns.min() + 1 == TILE_SIZE[0]  # the 200x200 crop stays square


# evaluate on the briefly trained checkpoint


@pytest.fixture(scope="module")
def result(trained_checkpoint, tmp_path_factory):
    return evaluate(trained_checkpoint, synthetic_n=FRAMES, tta=True, out=tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def onnx_file(trained_checkpoint, tmp_path_factory):
    return export_onnx(trained_checkpoint, tmp_path_factory.mktemp("onnx") / "best.onnx", calib_n=3).fp32.path


def test_reports_every_figure_for_plain_and_tta(result):
    assert result["data"]["frames"] == FRAMES
    for mode in ("plain", "tta"):
        figures = result[mode]
        assert set(figures) >= {"background_iou", "pupil_iou", "miou", "pupil_dice", "precision", "recall"}
        assert figures["pupil_iou"] > 0.5  # the fixture's model finds pupils
        assert figures["centre_error_px"]["ellipse"]["n"] >= 1
        assert 0 < figures["located"]["share"] <= 1
        buckets = figures["iou_by_pupil_diameter"]
        assert sum(b["frames"] for b in buckets) == figures["detection"]["with_pupil"]
        assert figures["detection"]["frames"] == FRAMES
        assert 0.5 < figures["challenge_score"] <= 1.0
        assert figures["images_per_s"] > 0


def test_out_folder_has_metrics_report_and_galleries(result):
    outputs = result["outputs"]
    assert json.loads(Path(outputs["metrics"]).read_text()) == json.loads(json.dumps(result))
    report = Path(outputs["report"]).read_text()
    assert "| pupil IoU |" in report and "gallery_worst.png" in report
    for name in ("gallery_best", "gallery_worst"):
        gallery = cv2.imread(outputs[name])
        # 6 frames: a row of 4 and a row of 2, a full screen's width
        assert gallery.shape == (2 * (CAPTION_HEIGHT + TILE_SIZE[0]) + GAP, 1920, 3)
    assert len(Path(outputs["frames"]).read_text().splitlines()) == 1 + FRAMES


def test_onnx_export_scores_like_its_checkpoint(result, onnx_file):
    exported = evaluate(onnx_file, synthetic_n=FRAMES)
    assert exported["model"]["backend"] == "onnxruntime"
    assert exported["data"]["description"] == result["data"]["description"]
    plain, other = result["plain"], exported["plain"]
    for key in ("background_iou", "pupil_iou", "miou", "pupil_dice", "precision", "recall"):
        assert other[key] == pytest.approx(plain[key], abs=1e-3)
    for kind in ("ellipse", "centroid"):
        assert other["centre_error_px"][kind]["mean"] == pytest.approx(
            plain["centre_error_px"][kind]["mean"], abs=0.05
        )
    assert other["detection"] == plain["detection"]


def test_folder_frames_are_scored_at_the_label_size(trained_checkpoint, tmp_path):
    root = write_openeds(tmp_path / "ds", 5, seed=3, size=(120, 200), val_fraction=0.4)
    figures = evaluate(trained_checkpoint, data_dir=root)
    predictor = load_predictor(trained_checkpoint)
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(root.glob("validation/images/*"))]
    labels = [(np.load(p) == 3) for p in sorted(root.glob("validation/labels/*.npy"))]
    probs = predictor.probabilities(images)
    counts = np.sum([mask_counts(p > 0.5, label) for p, label in zip(probs, labels, strict=True)], axis=0)
    assert figures["data"]["frames"] == 2
    assert sum(counts) == 2 * 120 * 200  # every pixel of the labels, at their own size
    assert figures["plain"]["pupil_iou"] == pytest.approx(confusion_metrics(*counts)["pupil_iou"])


def test_cli_writes_json_and_prints_the_table(trained_checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "--checkpoint",
                str(trained_checkpoint),
                "--synthetic-n",
                "2",
                "--json",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert "| mIoU |" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["data"]["frames"] == 2


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
def test_bad_input_is_a_one_line_error(trained_checkpoint, tmp_path, capsys, args, named):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    argv = [a.format(tmp=tmp_path, ckpt=trained_checkpoint) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and named in err and "\n" not in err


def test_model_trained_on_a_folder_is_not_scored_on_synthetic_eyes(tmp_path, capsys):
    model = build_model("tiny_efficientvit_xs")
    state = {
        "model_name": "tiny_efficientvit_xs",
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "preprocess": PreprocessConfig().to_dict(),
        "img_size": [48, 64],
        "train_config": {"seed": 0, "data": {"data_dir": "/data/eyes"}},
    }
    path = save_checkpoint(state, tmp_path / "best.pt")
    with pytest.raises(ValueError, match="pass --data-dir"):
        evaluate(path)
    assert main(["--checkpoint", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {path} was trained on /data/eyes; pass --data-dir "
        "(synthetic eyes would not be its validation frames)\n"
    )


def test_evaluate_does_not_import_the_predict_cli():
    code = "import sys, evaluate; sys.exit('predict' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, timeout=120).returncode == 0
