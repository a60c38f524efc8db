"""scripts/stride_ceiling.py: the ideal coarse prediction loses what its stride cannot draw."""

import cv2
import numpy as np

from metrics import mask_iou
from scripts.stride_ceiling import main, stride_prediction


def disc(radius: int, shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, (shape[1] // 2 + 3, shape[0] // 2 - 5), radius, 1, thickness=-1)
    return mask.astype(bool)


def test_full_resolution_is_exact_and_coarser_strides_lose_small_pupils_first():
    small, large = disc(6), disc(40)
    assert mask_iou(stride_prediction(small, (200, 200), 1), small) == 1.0
    ious = [mask_iou(stride_prediction(small, (200, 200), s), small) for s in (2, 4, 8, 16)]
    assert ious == sorted(ious, reverse=True) and ious[-1] < 0.8
    assert mask_iou(stride_prediction(large, (200, 200), 8), large) > 0.95


def test_a_crop_is_fitted_into_a_wide_input_and_mapped_back_onto_its_pixels():
    label = disc(30, (120, 120))
    back = stride_prediction(label, (64, 160), 4)
    assert back.shape == label.shape and mask_iou(back, label) > 0.9


def test_cli_prints_one_row_per_stride(tmp_path, capsys):
    for folder in ("images", "masks"):
        (tmp_path / "validation" / folder).mkdir(parents=True)
    for i in range(2):
        mask = disc(10 + 5 * i, (60, 80))
        cv2.imwrite(str(tmp_path / "validation" / "images" / f"{i}.png"), np.full((60, 80), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "validation" / "masks" / f"{i}.png"), 255 * mask.astype(np.uint8))
    assert main([str(tmp_path), "--img-size", "64x96", "--strides", "1,4"]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 1 ") or line.startswith("| 4 ")
    ]
    assert len(rows) == 2 and rows[0].startswith("| 1 | 1.0000")
