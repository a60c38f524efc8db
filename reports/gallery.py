"""Every picture of frames and pupils, drawn by one painter with one set of colours: `paint` tints
and outlines a predicted pupil in red, outlines a label in green and draws a fitted ellipse and its
centre in yellow. predict.py's overlays, evaluate.py's galleries (`gallery_tile`, `tile_grid`: each
frame fitted unstretched into an equal tile under a caption band, tiles in a grid as wide as a
full-HD screen) and training's prediction grids (`prediction_grid`) are all made with it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.folders import write_image
from data.preprocess import fit_image
from data.synthetic import PUPIL, SyntheticEyes

Colour = tuple[int, int, int]  # BGR

LABEL_COLOUR, PREDICTION_COLOUR, ELLIPSE_COLOUR = (0, 200, 0), (0, 0, 255), (0, 255, 255)
TINT = 0.4  # weight of the prediction colour over a predicted pupil's pixels
GALLERY_COLUMNS = 4
GALLERY_WIDTH = 1920  # as wide as a full-HD screen: 16 frames make 1920x1364
GAP = 4  # pixels between tiles
TILE_WIDTH = (GALLERY_WIDTH - (GALLERY_COLUMNS - 1) * GAP) // GALLERY_COLUMNS
TILE_SIZE = (TILE_WIDTH * 5 // 8, TILE_WIDTH)  # (H, W) = (298, 477): a 640x400 frame fills it
CAPTION_HEIGHT = 40  # the dark band above each frame: name, then IoU
BACKGROUND, CAPTION_BACKGROUND = 48, (16, 16, 16)  # grey between and around frames, near-black band
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.55
NAME_COLOUR, IOU_COLOUR = (240, 240, 240), (0, 220, 255)
GRID_WIDTH = 1200  # prediction grids wider than this are scaled down to it


def line_width(width: int) -> int:
    """Line thickness on a picture `width` pixels wide: 1 up to 480 px (a gallery tile), 2 at 640."""
    return max(1, round(width / 320))


def _outline(picture: np.ndarray, mask: np.ndarray, colour: Colour, thickness: int) -> None:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))  # traced in the box around the mask: fast
    box = np.ascontiguousarray(mask[y : y + h, x : x + w], dtype=np.uint8)
    contours, _ = cv2.findContours(box, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(x, y))
    cv2.drawContours(picture, contours, -1, colour, thickness)


def paint(
    image: np.ndarray,
    *,
    pred: np.ndarray | None = None,
    label: np.ndarray | None = None,
    geometry: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """(H, W) uint8 grey frame -> (H, W, 3) BGR picture with what is given drawn on it, in this
    order: the predicted pupil `pred` ((H, W) mask, nonzero = pupil) tinted and outlined in red,
    the `label` mask outlined in green, and the ellipse and centre of a `geometry`
    (`pupillometry.geometry.pupil_geometry`) in yellow when it found a pupil."""
    picture = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    thickness = line_width(image.shape[1])
    if pred is not None:
        mask = pred.astype(bool)
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        box, inside = picture[y : y + h, x : x + w], mask[y : y + h, x : x + w]
        box[inside] = ((1 - TINT) * box[inside] + TINT * np.array(PREDICTION_COLOUR)).astype(np.uint8)
        _outline(picture, mask, PREDICTION_COLOUR, thickness)
    if label is not None:
        _outline(picture, label, LABEL_COLOUR, thickness)
    if geometry is not None and geometry["found"]:
        centre = (geometry["centre_x"], geometry["centre_y"])
        box = (centre, (geometry["axis_major"], geometry["axis_minor"]), geometry["angle"])
        cv2.ellipse(picture, box, ELLIPSE_COLOUR, thickness, cv2.LINE_AA)
        cross = max(6, image.shape[1] // 40)
        point = (round(centre[0]), round(centre[1]))
        cv2.drawMarker(picture, point, ELLIPSE_COLOUR, cv2.MARKER_CROSS, cross, thickness)
    return picture


def fit_tile(
    image: np.ndarray, size: tuple[int, int] = TILE_SIZE, fill: int = BACKGROUND, *, nearest: bool = False
) -> np.ndarray:
    """`image` fitted into (H, W) `size` as model inputs are (`fit_image`), the rest `fill`: a
    200x200 crop and a 640x400 frame get equal tiles, neither stretched. `nearest` for masks."""
    return fit_image(image, size, interpolation=cv2.INTER_NEAREST if nearest else None, fill=fill)[0]


def fit_text(text: str, width: int) -> str:
    """`text` in at most `width` pixels of the gallery font, its middle cut to '...' if need be:
    the end of a frame name (index, extension) is what tells frames apart."""
    text = text.encode("ascii", "replace").decode()  # the Hershey fonts draw ASCII only
    short = text
    for keep in range(len(text) - 1, -1, -1):
        if cv2.getTextSize(short, FONT, FONT_SCALE, 1)[0][0] <= width:
            break
        head = keep // 3
        short = f"{text[:head]}...{text[len(text) - keep + head :]}"
    return short


def gallery_tile(
    image: np.ndarray, label: np.ndarray, pred: np.ndarray, *, caption: list[tuple[str, Colour]]
) -> np.ndarray:
    """One frame fitted into TILE_SIZE and painted (prediction red, label green), under a dark band
    with the caption lines (text, colour): legible on any frame."""
    picture = paint(
        fit_tile(image),
        pred=fit_tile(pred.astype(np.uint8), fill=0, nearest=True),
        label=fit_tile(label.astype(np.uint8), fill=0, nearest=True),
    )
    band = np.full((CAPTION_HEIGHT, TILE_SIZE[1], 3), CAPTION_BACKGROUND, np.uint8)
    for line, (text, colour) in enumerate(caption):
        text = fit_text(text, TILE_SIZE[1] - 12)
        cv2.putText(band, text, (6, 15 + 18 * line), FONT, FONT_SCALE, colour, 1, cv2.LINE_AA)
    return np.vstack([band, picture])


def tile_grid(tiles: list[np.ndarray], columns: int = GALLERY_COLUMNS) -> np.ndarray:
    """Equal-size tiles in rows of `columns` (fewer when there are fewer tiles), GAP pixels apart."""
    columns = min(columns, len(tiles))
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, 3), BACKGROUND, np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (h + GAP), (i % columns) * (w + GAP)
        grid[top : top + h, left : left + w] = tile
    return grid


def prediction_grid(images: np.ndarray, labels: np.ndarray, preds: np.ndarray, *, path: Path) -> Path:
    """A row per frame of arrays (N, H, W): the frame, then the frame painted with its prediction
    and label; at most GRID_WIDTH wide, written to `path` (`data.folders.write_image`)."""
    rows = [
        np.hstack([paint(image), paint(image, pred=pred, label=label)])
        for image, label, pred in zip(images, labels, preds, strict=True)
    ]
    grid = np.vstack(rows)
    scale = min(1.0, GRID_WIDTH / grid.shape[1])
    if scale < 1.0:
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return write_image(path, grid)


def write_synthetic_preview(
    out: str | Path, n: int = 16, *, seed: int = 0, size: tuple[int, int] = (400, 640), style: str = "full"
) -> Path:
    """Write n frames at half size, 4 to a row (`tile_grid`), the pupil label outlined in
    green by `paint` and the index noted on each, "closed" when no pupil shows (PNG; JPEG
    for a .jpg `out`)."""
    eyes = SyntheticEyes(n, seed, size, style)
    half = (size[1] // 2, size[0] // 2)  # (W, H), as cv2 takes it
    tiles = []
    for index in range(n):
        image, label, info = eyes.render(index)
        pupil = cv2.resize((label == PUPIL).astype(np.uint8), half, interpolation=cv2.INTER_NEAREST)
        tile = paint(cv2.resize(image, half, interpolation=cv2.INTER_AREA), label=pupil)
        note = f"{index}{' closed' if info['closed'] else ''}"
        cv2.putText(tile, note, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 255), 1)
        tiles.append(tile)
    path = Path(out).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, tile_grid(tiles, columns=4))
    return path
