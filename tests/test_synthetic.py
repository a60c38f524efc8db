"""data.synthetic: deterministic, plausible synthetic eyes with OpenEDS-style labels."""

import cv2
import numpy as np
import pytest

from config.flags import parse_size
from data.synthetic import SyntheticEyes, render_eye, write_openeds
from data.synthetic.render import IRIS, PUPIL, STYLES, Randomisation
from reports.gallery import GAP, LABEL_COLOUR, write_synthetic_preview

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


def iris_minus_pupil(frames) -> np.ndarray:
    """Median iris minus median pupil grey level of each frame showing both (medians: glints aside)."""
    shown = [f for f in frames if (f[1] == PUPIL).sum() > 20 and (f[1] == IRIS).sum() > 20]
    return np.array([np.median(f[0][f[1] == IRIS]) - np.median(f[0][f[1] == PUPIL]) for f in shown])


def test_pupil_darker_than_iris_from_bright_to_nearly_as_dark(frames):
    contrast = iris_minus_pupil(frames)
    assert len(contrast) > 100
    assert np.mean(contrast > 0) > 0.85
    assert np.mean(contrast < 10) > 0.15  # real infrared irises: nearly as dark as the pupil
    assert np.mean(contrast > 40) > 0.1


def test_framing_runs_from_wide_frames_to_tight_crops(frames):
    iris_width = np.array([f[2]["iris_axes"][1] / SIZE[1] for f in frames])
    assert iris_width.min() < 0.15 and iris_width.max() > 0.45


def test_exposure_runs_from_dark_to_bright(frames):
    means = np.array([f[0].mean() for f in frames])
    assert means.min() < 35 and means.max() > 120


def test_styles_take_back_one_randomisation_each():
    assert STYLES["full"] == Randomisation()
    narrow = np.array(
        [render_eye(7, i, SIZE, style=STYLES["fixed-framing"])[2]["iris_axes"][1] for i in range(40)]
    )
    assert narrow.min() / SIZE[1] > 0.2
    plain = [render_eye(7, i, SIZE, style=STYLES["no-camera"])[0].mean() for i in range(40)]
    full = [render_eye(7, i, SIZE)[0].mean() for i in range(40)]
    assert np.std(plain) < np.std(full)  # no exposure or gamma of its own
    with pytest.raises(ValueError, match="unknown synthetic style 'nope'"):
        SyntheticEyes(2, style="nope")


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


def test_preview_outlines_each_pupil_label_in_a_grid(tmp_path):
    n, (h, w) = 5, (SIZE[0] // 2, SIZE[1] // 2)
    grid = cv2.imread(str(write_synthetic_preview(tmp_path / "grid.png", n=n, seed=0, size=SIZE)))
    assert grid.shape == (2 * h + GAP, 4 * w + 3 * GAP, 3)  # half-size frames, 4 to a row
    eyes, shown = SyntheticEyes(n, seed=0, size=SIZE), 0
    for index in range(n):
        top, left = index // 4 * (h + GAP), index % 4 * (w + GAP)
        outline = np.all(grid[top : top + h, left : left + w] == LABEL_COLOUR, axis=-1)
        ys, xs = np.nonzero(eyes.render(index)[1] == PUPIL)
        if len(xs) == 0:
            assert not outline.any()
            continue
        assert outline.any(), f"frame {index}: no label outline"
        oy, ox = np.nonzero(outline)
        assert xs.min() // 2 - 1 <= ox.min() and ox.max() <= xs.max() // 2 + 1  # around the pupil
        assert ys.min() // 2 - 1 <= oy.min() and oy.max() <= ys.max() // 2 + 1
        shown += 1
    assert 0 < shown < n  # frame 1 is closed


def test_cli_writes_preview_and_dataset_in_the_style_asked(tmp_path, capsys):
    from data.synthetic.__main__ import main

    main(["--preview", str(tmp_path / "narrow.png"), "--n", "4", "--size", "64x96", "--style", "narrow"])
    main(["--preview", str(tmp_path / "full.png"), "--n", "4", "--size", "64x96"])
    narrow, full = (cv2.imread(str(tmp_path / f"{s}.png")) for s in ("narrow", "full"))
    assert narrow.shape == full.shape and not np.array_equal(narrow, full)
    main(["--out", str(tmp_path / "set"), "--n", "2", "--size", "64x96", "--style", "narrow"])
    image = cv2.imread(str(tmp_path / "set" / "train" / "images" / "000000.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(image, SyntheticEyes(2, 0, (64, 96), "narrow").render(0)[0])
    with pytest.raises(SystemExit):
        main(["--preview", str(tmp_path / "x.png"), "--style", "cartoon"])
    assert "invalid choice: 'cartoon'" in capsys.readouterr().err


def test_out_folder_that_is_not_empty_is_refused_unless_overwrite(tmp_path, capsys):
    from data.synthetic.__main__ import main

    real = tmp_path / "eyes" / "train" / "images" / "000000.png"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a real frame")
    args = ["--out", str(tmp_path / "eyes"), "--n", "2", "--size", "64x96"]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path / 'eyes'}: folder is not empty" in error
    assert real.read_bytes() == b"a real frame" and list(tmp_path.rglob("*.npy")) == []
    with pytest.raises(FileExistsError, match=str(tmp_path / "eyes")):  # the library call too
        write_openeds(tmp_path / "eyes", 2, size=(64, 96))
    with pytest.raises(NotADirectoryError, match=str(real)):
        write_openeds(real, 2, size=(64, 96))
    assert main([*args, "--overwrite"]) == 0
    assert real.read_bytes() != b"a real frame" and len(list(tmp_path.rglob("*.npy"))) == 2
