"""Galleries of scored frames for a person to look at: each frame fitted unstretched into an
equal tile under a caption band, label outlined in green, prediction tinted and outlined in red,
tiles in a grid as wide as a full-HD screen (evaluate.py's best and worst frames)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from data.preprocess import fit_image
from tracking import overlay

GALLERY_COLUMNS = 4
GALLERY_WIDTH = 1920  # as wide as a full-HD screen: 16 frames make 1920x1364
GAP = 4  # pixels between tiles
TILE_WIDTH = (GALLERY_WIDTH - (GALLERY_COLUMNS - 1) * GAP) // GALLERY_COLUMNS
TILE_SIZE = (TILE_WIDTH * 5 // 8, TILE_WIDTH)  # (H, W) = (298, 477): a 640x400 frame fills it
CAPTION_HEIGHT = 40  # the dark band above each frame: name, then IoU
BACKGROUND, CAPTION_BACKGROUND = 48, (16, 16, 16)  # grey between and around frames, near-black band
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.55
LABEL_COLOUR, PREDICTION_COLOUR = (0, 200, 0), (0, 0, 255)  # BGR
NAME_COLOUR, IOU_COLOUR = (240, 240, 240), (0, 220, 255)


def fit_tile(
    image: np.ndarray, size: tuple[int, int] = TILE_SIZE, fill: int = BACKGROUND, nearest: bool = False
) -> np.ndarray:
    """`image` fitted into (H, W) `size` as model inputs are (`fit_image`), the rest `fill`: a
    200x200 crop and a 640x400 frame get equal tiles, neither stretched. `nearest` for masks."""
    return fit_image(image, size, cv2.INTER_NEAREST if nearest else None, fill)[0]


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
    image: np.ndarray, label: np.ndarray, pred: np.ndarray, caption: list[tuple[str, tuple[int, int, int]]]
) -> np.ndarray:
    """One frame fitted into TILE_SIZE as BGR, prediction tinted and outlined in red, label outlined
    in green on top, under a dark band with the caption lines (text, colour): legible on any frame."""
    predicted = fit_tile(pred.astype(np.uint8), fill=0, nearest=True)
    picture = overlay(fit_tile(image), predicted, PREDICTION_COLOUR)
    truth = fit_tile(label.astype(np.uint8), fill=0, nearest=True)
    contours, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, LABEL_COLOUR, 1)
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
