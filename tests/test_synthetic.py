"""data.synthetic: deterministic, plausible synthetic eyes with OpenEDS-style labels."""

import cv2
import numpy as np
import pytest

from data import parse_size
from data.synthetic import SyntheticEyes, render_eye, write_preview
from data.synthetic.render import IRIS, PUPIL

SIZE = (100, 160)  # (H, W)


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    return [render_eye(7, i, SIZE) for i in range(150)]


def test_same_seed_and_index_same_pixels():
    image, label, info = render_eye(3, 11, SIZE)
    again, label_again, info_again = render_eye(3, 11, SIZE)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label_again)
    assert info == info_again
    assert not np.array_equal(image, render_eye(3, 12, SIZE)[0])
    assert not np.array_equal(image, render_eye(4, 11, SIZE)[0])


def test_types_shapes_and_classes(frames):
    image, label, _ = frames[0]
    assert image.shape == label.shape == SIZE
    assert image.dtype == label.dtype == np.uint8
    assert set(np.unique(np.concatenate([f[1].ravel() for f in frames]))) == {0, 1, 2, 3}


def test_pupil_darker_than_iris(frames):
    pupil = [f[0][f[1] == PUPIL].mean() for f in frames if (f[1] == PUPIL).sum() > 20]
    iris = [f[0][f[1] == IRIS].mean() for f in frames if (f[1] == PUPIL).sum() > 20]
    assert len(pupil) > 100
    assert np.mean(pupil) + 30 < np.mean(iris)


def test_closed_eyes_have_no_pupil(frames):
    closed = [f for f in frames if f[2]["closed"]]
    assert 0.03 <= len(closed) / len(frames) <= 0.15
    for _, label, info in closed:
        assert not (label == PUPIL).any() and info["pupil_visible_fraction"] == 0


def test_info_describes_the_pupil_ellipse(frames):
    checked = 0
    for _, label, info in frames:
        area = np.pi * info["pupil_axes"][0] * info["pupil_axes"][1] / 4
        if info["pupil_visible_fraction"] < 1 or area < 300:
            continue
        ys, xs = np.nonzero(label == PUPIL)
        assert (xs.mean(), ys.mean()) == pytest.approx(info["pupil_center"], abs=0.2)
        assert len(xs) == pytest.approx(area, rel=0.12)  # rasterising adds a rim
        checked += 1
    assert checked > 20


def test_glints_stay_out_of_the_label():
    for index in range(300):
        image, label, info = render_eye(1, index, SIZE)
        on_pupil = [(x, y) for x, y in info["glints"] if label[int(y), int(x)] == PUPIL]
        if on_pupil:
            x, y = on_pupil[0]
            assert image[int(y), int(x)] > image[label == PUPIL].mean() + 50
            return
    pytest.fail("no glint on a pupil in 300 frames")


def test_synthetic_eyes_read_and_render():
    eyes = SyntheticEyes(3, seed=2, size=SIZE)
    image, mask = eyes.read(1)
    full_image, label, _ = eyes.render(1)
    np.testing.assert_array_equal(image, full_image)
    np.testing.assert_array_equal(mask, label == PUPIL)
    assert len(eyes) == 3
    with pytest.raises(IndexError):
        eyes.read(3)
    with pytest.raises(ValueError, match="n >= 1"):
        SyntheticEyes(0)


def test_parse_size():
    assert parse_size("400x640") == (400, 640)
    with pytest.raises(ValueError, match="'400'"):
        parse_size("400")
    with pytest.raises(ValueError, match="at least 32x32"):
        parse_size("16x640")


def test_preview_grid(tmp_path):
    path = write_preview(tmp_path / "grid.png", n=5, seed=0, size=SIZE)
    grid = cv2.imread(str(path))
    assert grid.shape == (2 * SIZE[0] // 2, 4 * SIZE[1] // 2, 3)
    assert (grid[..., 1] > grid[..., 0] + 100).any()  # the green pupil outline
