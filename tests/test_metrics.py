"""evaluation/metrics.py: pixel counts, IoU and Dice, centre errors, detection, pupils located, size buckets,
wrong frames and how well a confidence ranks them (AUROC, deciles)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import (
    auroc,
    centre_error,
    challenge_score,
    confidence_bins,
    confusion_metrics,
    detection_summary,
    diameter_buckets,
    error_summary,
    frame_wrong,
    located_share,
    mask_counts,
    set_metrics,
)
from inference import pupil_geometry
from tests.conftest import disc


def square(top: int, left: int, side: int = 10, shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top : top + side, left : left + side] = 1
    return mask


def frame_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return confusion_metrics(*mask_counts(pred, truth))


def test_overlapping_squares_give_known_counts_iou_and_dice():
    pred, truth = square(5, 5), square(5, 10)  # half of each square overlaps the other
    assert mask_counts(pred, truth) == (50, 50, 50, 40 * 60 - 150)
    assert frame_metrics(pred, truth)["pupil_iou"] == pytest.approx(1 / 3)
    assert frame_metrics(pred, truth)["pupil_dice"] == pytest.approx(0.5)


def test_iou_is_one_for_two_empty_masks_and_zero_for_disjoint_ones():
    empty = np.zeros((40, 60), np.uint8)
    assert frame_metrics(empty, empty)["pupil_iou"] == 1.0
    assert frame_metrics(square(0, 0), square(20, 30))["pupil_iou"] == 0.0


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


def test_challenge_score_caps_the_size_term_at_one():
    assert challenge_score(0.8, 500_000) == pytest.approx(0.9)  # 0.5 MB: the size term is 1
    assert challenge_score(0.8, 2_000_000) == pytest.approx(0.65)  # 2 MB: 1 / 2
    with pytest.raises(ValueError, match="positive"):
        challenge_score(0.8, 0)


def test_set_metrics_sum_pixels_over_frames_before_dividing():
    small, large = (1, 1, 0, 100), (90, 0, 10, 900)  # IoU 0.5 and 0.9 per frame
    assert set_metrics([small, large])["pupil_iou"] == pytest.approx(91 / 102)
    assert set_metrics([large]) == confusion_metrics(*large)


@pytest.mark.parametrize(
    ("label", "predicted", "centre", "located", "wrong"),
    [
        (True, True, 1.5, 2.0, False),  # both errors within 2 px
        (True, True, 2.5, 1.0, True),  # the ellipse centre off
        (True, True, 1.0, 2.5, True),  # the label's centroid off (a cut pupil)
        (True, False, math.nan, math.inf, True),  # missed
        (False, True, math.nan, math.nan, True),  # a pupil where there is none
        (False, False, math.nan, math.nan, False),  # nothing where there is nothing
    ],
)
def test_a_frame_is_wrong_when_its_pupil_is_off_missed_or_invented(label, predicted, centre, located, wrong):
    assert frame_wrong(label, predicted, centre_err=centre, located_err=located) is wrong


def test_auroc_is_one_for_a_perfect_ranking_zero_reversed_and_a_half_for_ties():
    positives = [False, False, True, True]
    assert auroc([0.1, 0.2, 0.8, 0.9], positives) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], positives) == 0.0
    assert auroc([0.5] * 4, positives) == 0.5
    # pairs (positive, negative): 0.5 > 0.1, 0.5 = 0.5 (a half), 0.9 > 0.1, 0.9 > 0.5
    assert auroc([0.1, 0.5, 0.5, 0.9], [False, True, False, True]) == pytest.approx(3.5 / 4)


def test_auroc_needs_both_classes_and_a_label_per_score():
    assert auroc([0.2, 0.4], [True, True]) is None and auroc([], []) is None
    with pytest.raises(ValueError, match="one label per score"):
        auroc([0.2, 0.4], [True])


def test_confidence_bins_rank_frames_least_confident_first_and_hold_every_frame():
    confidence = np.linspace(1, 0, 23)  # frame 22 the least confident
    iou = np.where(np.arange(23) >= 20, 0.25, 1.0)
    errors = np.where(np.arange(23) >= 20, math.nan, 0.5)
    rows = confidence_bins(confidence, pupil_iou=iou, centre_err=errors, wrong=np.arange(23) >= 20)
    assert [r["frames"] for r in rows] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2] and sum(
        r["frames"] for r in rows
    ) == 23
    first, second = rows[0], rows[1]
    assert (first["confidence_min"], first["pupil_iou"], first["wrong"]) == (0.0, 0.25, 1.0)
    assert first["median_centre_error_px"] is None  # no frame of it has an error
    assert (second["pupil_iou"], second["median_centre_error_px"], second["wrong"]) == (1.0, 0.5, 0.0)
    few = confidence_bins([0.3, 0.1], pupil_iou=[1, 1], centre_err=[0, 0], wrong=[False, True])
    assert len(few) == 2  # fewer frames than bins
