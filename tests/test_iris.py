"""pupillometry.iris: the iris radius around a pupil, and mm per pixel from it over a recording."""

import math

import cv2
import numpy as np
import pytest

from data.synthetic.render import PUPIL
from data.synthetic.sequence import eye_sequence
from inference import pupil_geometry
from pupillometry.iris import IRIS_DIAMETER_MM, iris_radius, mm_per_px_from_iris, recording_iris_radius


def drawn_eye(
    iris: tuple[float, float], pupil: tuple[float, float], *, pupil_at: tuple[int, int] = (320, 200)
) -> np.ndarray:
    """A 400x640 frame: bright sclera, a grey iris ellipse centred in the frame and a dark pupil
    ellipse at `pupil_at`, (horizontal, vertical) full axes each, and a little noise."""
    image = np.full((400, 640), 200, np.uint8)
    cv2.ellipse(image, ((320, 200), iris, 0), 90, -1)
    cv2.ellipse(image, (pupil_at, pupil, 0), 20, -1)
    noise = np.random.default_rng(0).normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("seed", "size"), [(1, (200, 320)), (7, (400, 640))])
def test_recording_estimate_is_within_8_percent_of_the_true_iris(seed, size):
    radii, true_radii = [], []
    for image, label, truth in eye_sequence(30, seed=seed, size=size):
        pupil = pupil_geometry(label == PUPIL)  # as predict measures a pupil mask
        if truth["blink"] or not pupil["found"]:
            continue
        centre, ellipse = (pupil["centre_x"], pupil["centre_y"]), {"axis_minor": pupil["axis_minor"]}
        radii.append(iris_radius(image, centre, pupil["axis_major"], **ellipse, angle=pupil["angle"]))
        true_radii.append(truth["diameter_px"] / truth["pupil_ratio"] / 2)
    assert np.ptp(true_radii) < 1e-6  # one person: one iris
    assert np.mean(np.isnan(radii)) < 0.2
    estimate = recording_iris_radius(radii)
    assert estimate == pytest.approx(true_radii[0], rel=0.08)
    assert mm_per_px_from_iris(radii) == pytest.approx(IRIS_DIAMETER_MM / (2 * estimate))


def test_a_drawn_iris_is_measured_from_an_off_centre_pupil():
    image = drawn_eye((150, 150), (50, 50), pupil_at=(326, 203))  # the pupil 6 px right of centre
    assert iris_radius(image, (326, 203), 50) == pytest.approx(75, abs=1.5)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    assert iris_radius(bgr, (326, 203), 50) == iris_radius(image, (326, 203), 50)


def test_the_pupil_ellipse_undoes_a_sideways_gaze():
    image = drawn_eye((120, 150), (40, 50))  # both flattened horizontally to 0.8: a gaze aside
    assert iris_radius(image, (320, 200), 50) < 0.85 * 75  # as seen
    assert iris_radius(image, (320, 200), 50, axis_minor=40, angle=90) == pytest.approx(75, rel=0.03)


@pytest.mark.parametrize(
    "image",
    [
        np.full((400, 640), 128, np.uint8),  # flat grey: no edge anywhere
        drawn_eye((0, 0), (50, 50)),  # a pupil on bare sclera
        drawn_eye((400, 400), (50, 50)),  # an edge 8 pupil radii out: no iris is that large
    ],
    ids=["flat", "no-iris", "too-far"],
)
def test_no_iris_edge_gives_nan(image):
    assert math.isnan(iris_radius(image, (320, 200), 50))


def test_an_iris_cut_by_the_frame_gives_nan():
    image = drawn_eye((150, 150), (50, 50))
    assert math.isnan(iris_radius(image[:, 260:], (60, 200), 50))  # its left side is out of view
    assert math.isnan(iris_radius(image, (320, 200), math.nan))


def test_mm_per_px_needs_enough_frames_that_agree():
    assert mm_per_px_from_iris([60.0, 61.0, 59.5, 60.5, 60.0]) == pytest.approx(IRIS_DIAMETER_MM / 120)
    assert mm_per_px_from_iris([60.0, 61.0, 59.5, 60.5]) is None  # too few frames
    assert mm_per_px_from_iris([60.0] * 5 + [math.nan] * 30) is None  # under a fifth of them
    assert mm_per_px_from_iris([40.0, 50.0, 60.0, 70.0, 80.0, 90.0]) is None  # they disagree
    assert mm_per_px_from_iris([]) is None
