"""pupillometry.confidence: a clean pupil is trusted, each way a prediction goes wrong is trusted
less, and the number stays in [0, 1] whatever the map and whatever the frame's size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference import PUPIL_THRESHOLD, pupil_geometry
from pupillometry.confidence import PLAUSIBLE_DIAMETER, confidence_features, frame_confidence, size_factor


def soft_disc(
    x: float, y: float, radius: float, shape: tuple[int, int] = (60, 80), blur: float = 0.3
) -> np.ndarray:
    """A (H, W) float32 pupil probability: a disc whose edge softens over about `blur` px."""
    rows, columns = np.indices(shape, dtype=np.float32)
    inside = radius - np.hypot(columns - x, rows - y)  # signed distance to the rim, px
    return 0.5 + 0.5 * np.tanh(inside / (2 * blur))  # the logistic of inside / blur


def confidence_of(prob: np.ndarray) -> float:
    mask = prob > PUPIL_THRESHOLD
    return frame_confidence(prob, mask, pupil_geometry(mask, prob))


def features_of(prob: np.ndarray) -> dict[str, float]:
    mask = prob > PUPIL_THRESHOLD
    return confidence_features(prob, mask, pupil_geometry(mask, prob))


CLEAN = soft_disc(40, 30, 10)


def test_a_clean_disc_is_trusted():
    assert confidence_of(CLEAN) > 0.8


def with_fragments() -> np.ndarray:
    return np.maximum(CLEAN, np.maximum(soft_disc(10, 10, 5), soft_disc(68, 50, 6)))


def merged_with_a_dark_patch() -> np.ndarray:
    patch = np.zeros_like(CLEAN)
    patch[26:35, 40:72] = 1.0  # a bar from the pupil's centre to beyond its rim: no ellipse
    return np.maximum(CLEAN, cv2.GaussianBlur(patch, (3, 3), 0.5))


@pytest.mark.parametrize(
    ("make", "feature", "direction"),
    [
        (with_fragments, "fragments", 1),
        (lambda: soft_disc(40, 30, 10, blur=3.0), "uncertain", 1),
        (lambda: soft_disc(40, 30, 10, blur=3.0), "mean_prob", -1),
        (merged_with_a_dark_patch, "ellipse_misfit", 1),
        (lambda: soft_disc(100, 100, 2, shape=(200, 200)), "diameter", -1),
        (lambda: soft_disc(40, 30, 28), "diameter", 1),
    ],
    ids=["fragments", "blurry-uncertain", "blurry-mean-prob", "not-an-ellipse", "tiny", "huge"],
)
def test_each_flaw_shows_in_its_feature_and_lowers_the_confidence(make, feature, direction):
    prob = make()
    assert direction * (features_of(prob)[feature] - features_of(CLEAN)[feature]) > 0
    assert confidence_of(prob) < confidence_of(CLEAN)


def test_size_is_plausible_within_its_range_and_falls_as_a_square_outside():
    low, high = PLAUSIBLE_DIAMETER
    assert size_factor(low) == size_factor(high) == size_factor((low + high) / 2) == 1.0
    assert size_factor(low / 2) == pytest.approx(0.25) and size_factor(2 * high) == pytest.approx(0.25)
    assert size_factor(0.0) == 0.0


def test_no_pupil_gives_zero():
    assert confidence_of(np.full((48, 64), 0.2, np.float32)) == 0.0


def test_confidence_stays_in_zero_one_for_any_map():
    rng = np.random.default_rng(0)
    for _ in range(20):
        noise = cv2.GaussianBlur(rng.random((48, 64), dtype=np.float32), (0, 0), rng.uniform(0.5, 4))
        prob = np.clip((noise - noise.mean()) * rng.uniform(2, 40) + 0.5, 0, 1).astype(np.float32)
        assert 0.0 <= confidence_of(prob) <= 1.0
    edge, dot, line = (np.zeros((48, 64), np.float32) for _ in range(3))
    edge[0, :], dot[47, 63] = 0.7, 1.0  # a sliver along the frame's edge; one pixel in a corner
    cv2.line(line, (0, 47), (63, 0), 0.8, 1)  # ellipse fits go wild on lines
    for prob in (np.ones((48, 64), np.float32), edge, dot, line):
        assert 0.0 <= confidence_of(prob) <= 1.0


def test_a_frame_twice_the_size_reads_the_same():
    # a soft pupil and a fragment, upsampled as inference maps a model's output onto a larger frame
    prob = np.maximum(soft_disc(40, 30, 10, blur=1.0), soft_disc(12, 12, 4, blur=1.0))
    big = cv2.resize(prob, (160, 120), interpolation=cv2.INTER_LINEAR)
    small, large = features_of(prob), features_of(big)
    for name in ("mean_prob", "uncertain", "ellipse_misfit", "fragments", "aspect", "diameter"):
        assert large[name] == pytest.approx(small[name], abs=0.03), name
    assert confidence_of(big) == pytest.approx(confidence_of(prob), abs=0.08)


def test_features_need_a_found_pupil_measured_with_its_probability():
    mask = CLEAN > PUPIL_THRESHOLD
    with pytest.raises(ValueError, match="pupil_geometry"):
        confidence_features(CLEAN, mask, pupil_geometry(mask))  # no prob: no mean_prob
