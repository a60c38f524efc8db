"""Evaluation: metric functions on hand-made masks, .pt / .onnx agreement, native-size scoring, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import PreprocessConfig
from data.synthetic import write_openeds
from evaluate import GALLERY_FRAMES, TILE_WIDTH, evaluate, gallery_picks, main
from export_onnx import export_onnx
from inference import load_predictor, pupil_geometry
from metrics import (
    centre_error,
    challenge_score,
    confusion_metrics,
    detection_summary,
    error_summary,
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
        assert figures["detection"]["frames"] == FRAMES
        assert 0.5 < figures["challenge_score"] <= 1.0
        assert figures["images_per_s"] > 0


def test_out_folder_has_metrics_report_and_galleries(result):
    outputs = result["outputs"]
    assert json.loads(Path(outputs["metrics"]).read_text()) == json.loads(json.dumps(result))
    report = Path(outputs["report"]).read_text()
    assert "| pupil IoU |" in report and "gallery_worst.png" in report
    rows = min(GALLERY_FRAMES, FRAMES)
    for name in ("gallery_best", "gallery_worst"):
        gallery = cv2.imread(outputs[name])
        assert gallery.shape[1] == 3 * TILE_WIDTH  # input, label, prediction
        assert gallery.shape[0] == rows * round(96 * TILE_WIDTH / 160)
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
