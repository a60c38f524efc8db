"""Pictures: the one painter (prediction red, label green, ellipse yellow), gallery tiles and grids,
and training's prediction grids."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inference import pupil_geometry
from reports.gallery import (
    BACKGROUND,
    CAPTION_HEIGHT,
    ELLIPSE_COLOUR,
    FONT,
    FONT_SCALE,
    GAP,
    GRID_WIDTH,
    LABEL_COLOUR,
    NAME_COLOUR,
    PREDICTION_COLOUR,
    TILE_SIZE,
    fit_text,
    fit_tile,
    gallery_tile,
    paint,
    prediction_grid,
    tile_grid,
)

GREY = 100


def disc(shape, centre, radius):
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask.astype(bool)


def coloured(picture, colour):
    """Where `picture` is exactly `colour` (BGR)."""
    return (picture == np.array(colour, np.uint8)).all(axis=2)


def closer_to(picture, colour):
    """Where `picture` is nearer `colour` than the GREY frame (anti-aliased lines)."""
    pixels = picture.astype(float)
    return np.linalg.norm(pixels - colour, axis=2) < np.linalg.norm(pixels - GREY, axis=2)


def border(mask):
    """The mask's pixels next to (4-neighbours of) the outside: where an outline goes."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return mask & ~cv2.erode(mask.astype(np.uint8), cross).astype(bool)


def test_nothing_to_paint_gives_the_grey_frame_in_colour():
    frame = np.random.default_rng(0).integers(0, 256, (40, 60), dtype=np.uint8)
    picture = paint(frame)
    assert picture.shape == (40, 60, 3) and (picture == frame[..., None]).all()


def test_prediction_is_tinted_and_outlined_in_red_and_the_rest_untouched():
    frame = np.full((80, 120), GREY, np.uint8)
    pred = disc(frame.shape, (60, 40), 15)
    picture = paint(frame, pred=pred).astype(int)
    inside = picture[pred & ~border(pred)]
    assert (inside[:, 2] > GREY + 50).all() and (inside[:, 0] < GREY).all()  # tinted towards red
    assert coloured(picture, PREDICTION_COLOUR)[border(pred)].all()  # outlined
    assert (picture[~cv2.dilate(pred.astype(np.uint8), np.ones((3, 3))).astype(bool)] == GREY).all()


def test_label_is_outlined_in_green_over_the_prediction():
    frame = np.full((80, 120), GREY, np.uint8)
    label, pred = disc(frame.shape, (50, 40), 20), disc(frame.shape, (70, 40), 20)
    picture = paint(frame, pred=pred, label=label)
    green = coloured(picture, LABEL_COLOUR)
    assert green.sum() > 2 * np.pi * 20 * 0.8  # about the label's circumference
    assert (green <= border(label)).all()  # on the label's own outline, nowhere else
    assert green[pred].any()  # drawn over the tinted prediction


def test_ellipse_and_centre_are_drawn_when_a_pupil_was_found():
    frame = np.full((100, 160), GREY, np.uint8)
    mask = np.zeros(frame.shape, np.uint8)
    cv2.ellipse(mask, ((90, 45), (50, 30), 20), 1, -1)
    geometry = pupil_geometry(mask.astype(bool))
    yellow = closer_to(paint(frame, geometry=geometry), ELLIPSE_COLOUR)
    assert yellow[45, 90]  # the centre cross
    assert yellow[45, 62:72].any() and not yellow[45, 75:85].any()  # the outline, not the inside
    assert yellow.sum() > 2 * np.pi * 20  # all the way round
    nothing = paint(frame, geometry=pupil_geometry(np.zeros(frame.shape, bool)))
    assert (nothing == GREY).all()


def test_gallery_tile_is_a_caption_band_over_the_painted_frame():
    image = np.full((200, 200), GREY, np.uint8)
    label, pred = disc(image.shape, (90, 100), 30), disc(image.shape, (110, 100), 30)
    tile = gallery_tile(image, label, pred, caption=[("frame.png", NAME_COLOUR)])
    assert tile.shape == (CAPTION_HEIGHT + TILE_SIZE[0], TILE_SIZE[1], 3)
    assert coloured(tile[:CAPTION_HEIGHT], NAME_COLOUR).any()  # the caption
    picture = tile[CAPTION_HEIGHT:]
    assert coloured(picture, LABEL_COLOUR).any() and coloured(picture, PREDICTION_COLOUR).any()


def test_tile_grid_fills_rows_of_columns():
    tiles = [np.full((10, 20, 3), i, np.uint8) for i in range(5)]
    grid = tile_grid(tiles, columns=3)
    assert grid.shape == (2 * 10 + GAP, 3 * 20 + 2 * GAP, 3)
    assert (grid[10 + GAP :, 20 + GAP : 40 + GAP] == 4).all()  # the fifth tile: second row, second column


def test_prediction_grid_shows_each_frame_and_its_painted_prediction(tmp_path):
    images = np.full((3, 40, 64), GREY, np.uint8)
    labels = np.stack([disc((40, 64), (32, 20), 8)] * 3).astype(np.uint8)
    preds = np.roll(labels, 4, axis=2)
    path = prediction_grid(images, labels, preds, path=tmp_path / "grid.png")
    grid = cv2.imread(str(path))
    assert path == tmp_path / "grid.png" and grid.shape == (3 * 40, 2 * 64, 3)  # a row per frame
    assert (grid[:, :64] == GREY).all()  # the frame as it is
    painted = grid[:40, 64:]
    assert coloured(painted, LABEL_COLOUR).any() and coloured(painted, PREDICTION_COLOUR).any()


def test_a_wide_prediction_grid_is_scaled_down(tmp_path):
    images = np.full((2, 100, 1000), GREY, np.uint8)
    grid = cv2.imread(str(prediction_grid(images, images * 0, images * 0, path=tmp_path / "grid.png")))
    assert grid.shape == (2 * 100 * GRID_WIDTH // 2000, GRID_WIDTH, 3)


def test_prediction_grid_to_an_unwritable_path_is_an_error_naming_it(tmp_path):
    """Written by data.folders.write_image, which raises where cv2.imwrite would return False."""
    images = np.full((1, 40, 64), GREY, np.uint8)
    with pytest.raises(OSError, match="no-such-folder"):
        prediction_grid(images, images * 0, images * 0, path=tmp_path / "no-such-folder" / "grid.png")


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
