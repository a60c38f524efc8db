"""scripts/peers.py: the scoring every tool shares, on tiny hand-made masks, and the CLI with our model.

No peer package is needed: the peers' own adapters only run where requirements-peers.txt is installed.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from data.synthetic import render_eye
from evaluation.metrics import mask_centroid
from inference import PUPIL_THRESHOLD, load_predictor, model_file
from scripts import peers
from scripts.peers import (
    UNAVAILABLE,
    FrameScore,
    Tool,
    ellipse_mask,
    load_tools,
    main,
    markdown_table,
    score_frame,
    summarize,
    tool_pupil,
)
from tests.conftest import EASY, make_checkpoint

PRETRAINED_ONNX = model_file("pretrained", ".onnx")  # PRETRAINED_PT's export: faster here than torch


def disc(centre: tuple[int, int], radius: int, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    """(H, W) uint8 mask, 1 inside a disc at (x, y)."""
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 1, thickness=-1)
    return mask


def test_centroid_is_the_mean_pixel_and_none_for_an_empty_mask():
    mask = np.zeros((10, 10), np.uint8)
    mask[2:4, 6:10] = 255  # rows 2-3, columns 6-9
    assert mask_centroid(mask) == (7.5, 2.5)
    assert mask_centroid(np.zeros((4, 4), bool)) is None


def test_a_fitters_ellipse_is_drawn_filled_at_its_centre():
    mask = ellipse_mask((40, 60), ((30.0, 20.0), (20.0, 10.0), 0.0))  # full axes 20 x 10
    assert mask.dtype == bool
    assert mask.sum() == pytest.approx(math.pi * 10 * 5, rel=0.03)
    assert mask_centroid(mask) == pytest.approx((30.0, 20.0), abs=0.1)
    assert mask[20, 21] and mask[20, 39] and not mask[20, 41] and mask[16, 30] and not mask[26, 30]
    # OpenCV's angle turns the first axis clockwise on screen (y down); its drawing also fills edge pixels
    tilted = ((30.0, 20.0), (24.0, 10.0), 30.0)
    drawn = cv2.ellipse(np.zeros((40, 60), np.uint8), tilted, 1, thickness=-1) > 0
    mine = ellipse_mask((40, 60), tilted)
    assert (mine & ~drawn).sum() == 0 and mine.sum() > 0.8 * drawn.sum()


def test_a_segmenters_centre_is_the_ellipse_of_its_largest_blob():
    mask = disc((20, 15), 6) | disc((50, 30), 2)  # a speck elsewhere does not move the centre
    pupil, centre = tool_pupil(mask, mask.shape)
    assert pupil.sum() == mask.sum()  # the whole mask is scored for overlap
    assert centre == pytest.approx((20.0, 15.0), abs=0.1)


def test_a_perfect_mask_scores_full_overlap_and_no_error():
    truth = disc((30, 20), 8)
    score = score_frame(truth.astype(bool), truth)
    assert score.counts == (truth.sum(), 0, 0, truth.size - truth.sum())
    assert score.error == pytest.approx(0.0, abs=1e-6)


def test_an_ellipse_off_by_three_pixels_has_that_centre_error():
    truth = disc((30, 20), 8)
    score = score_frame(((33.0, 24.0), (16.0, 16.0), 0.0), truth)
    assert score.error == pytest.approx(5.0, abs=0.1)  # (3, 4) from the truth's centroid
    tp, fp, fn, _ = score.counts
    assert tp > 0 and fp > 0 and fn > 0


@pytest.mark.parametrize("output", [None, np.zeros((40, 60), bool)])
def test_finding_nothing_is_a_miss_with_infinite_error(output):
    truth = disc((30, 20), 8)
    score = score_frame(output, truth)
    assert (score.counts[:3], score.error) == ((0, 0, truth.sum()), math.inf)


def test_a_frame_without_pupil_has_no_centre_error():
    score = score_frame(disc((10, 10), 3).astype(bool), np.zeros((40, 60), np.uint8))
    assert score.counts[0] == 0 and score.counts[1] == 29 and math.isnan(score.error)  # a 29-pixel disc


def test_iou_is_summed_over_the_set_not_averaged_per_frame():
    scores = [FrameScore((10, 10, 0, 80), 1.0), FrameScore((90, 5, 5, 0), 2.0)]
    assert summarize(scores, 1.0, 1.0)["pupil_iou"] == pytest.approx(100 / 120)  # mean per frame: 0.7


def test_summary_counts_misses_in_median_share_within_5px_and_detection_rate():
    errors = [1.0, 2.0, 6.0, math.inf, math.nan]  # the nan frame has no pupil: left out
    summary = summarize([FrameScore((1, 1, 0, 8), e) for e in errors], seconds=0.5, cpu_seconds=0.25)
    assert summary["frames"] == 5 and summary["frames_with_pupil"] == 4
    assert summary["median_centre_error_px"] == pytest.approx(4.0)  # of 1, 2, 6, inf
    assert summary["within_5px"] == pytest.approx(0.5)
    assert summary["detection_rate"] == pytest.approx(0.75)
    assert (summary["ms_per_frame"], summary["cpu_ms_per_frame"]) == pytest.approx((100.0, 50.0))


def test_median_is_none_when_half_the_pupils_are_missed_and_the_table_says_inf():
    summary = summarize([FrameScore((0, 0, 5, 5), math.inf), FrameScore((5, 0, 0, 5), 0.0)], 0.01, 0.01)
    assert summary["median_centre_error_px"] is None
    row = {"tool": "fitter", "model_bytes": None, "params": None, **summary}
    line = markdown_table([row]).splitlines()[-1]
    assert line.split(" | ")[:5] == ["| fitter", "0.5000", "inf", "50.0%", "50.0%"]
    assert line.endswith("| n/a | n/a |")  # classical: no weights


def test_unknown_tools_are_refused_and_unavailable_ones_say_why(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path), "--tools", "ours,eyeball"])
    assert "eyeball" in capsys.readouterr().err
    tools, missing = load_tools(["pure", "ours"], tmp_path / "none.onnx", print)
    assert tools == {} and missing["pure"] == UNAVAILABLE["pure"]
    assert "none.onnx" in missing["ours"]


def write_mask_folder(root, n: int = 3, shape: tuple[int, int] = (80, 96)) -> None:
    """A validation split in the mask layout: dark discs on a grey frame, 255 in the masks."""
    for folder in ("images", "masks"):
        (root / "validation" / folder).mkdir(parents=True)
    for i in range(n):
        pupil = disc((40 + 5 * i, 40), 10, shape)
        image = np.where(pupil > 0, 30, 150).astype(np.uint8)
        cv2.imwrite(str(root / "validation" / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "validation" / "masks" / f"{i}.png"), pupil * 255)


def test_cli_scores_our_model_and_a_fitter_on_the_same_frames(tmp_path, monkeypatch):
    write_mask_folder(tmp_path / "ds")
    model = make_checkpoint(tmp_path / "best.pt")
    # a fitter that knows the answer: the label's own circle, found from the dark pixels
    perfect = Tool("oracle", lambda image: (mask_centroid(image < 90), (20.0, 20.0), 0.0), None, None)
    monkeypatch.setitem(peers.TOOLS, "pupil-labs", lambda model: perfect)
    argv = ["--data-dir", str(tmp_path / "ds"), "--checkpoint", str(model), "--out", str(tmp_path / "o")]
    threads = torch.get_num_threads()
    assert main([*argv, "--tools", "ours,pupil-labs", "--limit", "2"]) == 0
    assert torch.get_num_threads() == threads  # one thread while timing only
    result = json.loads((tmp_path / "o" / "results.json").read_text())
    rows = {r["name"]: r for r in result["results"]}
    assert result["data"]["frames"] == 2 and rows["ours"]["frames"] == 2
    assert rows["ours"]["model_bytes"] == model.stat().st_size
    assert rows["pupil-labs"]["pupil_iou"] > 0.9 and rows["pupil-labs"]["within_5px"] == 1.0
    assert "| oracle |" in (tmp_path / "o" / "table.md").read_text()
    assert main([*argv, "--tools", "ours,pure"]) == 1  # asked for by name, and could not run


def test_model_is_the_old_spelling_of_checkpoint(tmp_path, capsys):
    write_mask_folder(tmp_path / "ds", n=1)
    argv = ["--data-dir", str(tmp_path / "ds"), "--tools", "ours", "--model", str(tmp_path / "none.pt")]
    assert main(argv) == 1  # ours named by the old flag: its missing file is why it did not run
    out, err = capsys.readouterr()
    assert f"model file not found: {tmp_path / 'none.pt'}" in out
    assert err == "--model is deprecated, use --checkpoint\n"


def test_compare_runs_our_model_from_the_checkpoint_it_is_given(tmp_path):
    write_mask_folder(tmp_path / "ds", n=1)
    result = peers.compare(tmp_path / "ds", "validation", ["ours"], checkpoint=PRETRAINED_ONNX, log=print)
    (row,) = result["results"]
    assert row["name"] == "ours" and row["model_bytes"] == PRETRAINED_ONNX.stat().st_size


def test_ours_tta_is_our_model_with_the_flip():
    tools, missing = load_tools(["ours", "ours-tta"], PRETRAINED_ONNX, print)
    assert not missing and "flip TTA" in tools["ours-tta"].label and "TTA" not in tools["ours"].label
    frame = render_eye(3, 1, (96, 160), style=EASY)[0]
    expected = load_predictor(PRETRAINED_ONNX).probabilities([frame], tta=True)[0] > PUPIL_THRESHOLD
    assert np.array_equal(tools["ours-tta"].detect(frame), expected)
    assert not np.array_equal(tools["ours"].detect(frame), expected)  # the flip changes a few pixels
