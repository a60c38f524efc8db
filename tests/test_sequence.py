"""data.synthetic.sequence: a synthetic eye video with a known diameter track and known blinks."""

import csv

import cv2
import numpy as np
import pytest

from data.synthetic.render import PUPIL
from data.synthetic.sequence import Blink, eye_sequence, truth_blinks
from pupillometry.series import BLINK_COLUMNS

SIZE, N, FPS = (64, 96), 40, 30.0
BLINKS = [Blink(8), Blink(26, closing=2, closed=4, opening=6)]


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    return list(eye_sequence(N, seed=3, size=SIZE, fps=FPS, blinks=BLINKS))


def test_diameter_follows_a_smooth_curve_and_the_label_tracks_it(frames):
    diameters = np.array([t["diameter_px"] for _, _, t in frames])
    assert np.abs(np.diff(diameters)).max() < 0.05 * diameters.mean()  # smooth, no jumps
    ratios = np.array([t["pupil_ratio"] for _, _, t in frames])
    assert ratios.min() >= 0.3 - 1e-9 and ratios.max() <= 0.55 + 1e-9
    assert np.ptp(diameters / ratios) < 1e-6  # the major axis is the iris diameter times the ratio
    open_frames = [(label, t) for _, label, t in frames if t["visible_fraction"] == 1]
    assert len(open_frames) > N // 2
    for label, t in open_frames:
        area = np.count_nonzero(label == PUPIL)
        expected = np.pi / 4 * t["diameter_px"] ** 2  # upper bound: the minor axis is <= the major
        assert 0.6 * expected < area < 1.3 * expected  # small ellipses fill their border pixels


def test_blink_frames_hide_the_pupil_and_open_ones_show_it(frames):
    blink = [np.count_nonzero(label == PUPIL) for _, label, t in frames if t["blink"]]
    shown = [np.count_nonzero(label == PUPIL) for _, label, t in frames if not t["blink"]]
    assert len(blink) >= 8 and max(blink) < 0.5 * min(shown)
    closed = [t for _, _, t in frames if t["openness"] == 0]
    assert closed and all(t["blink"] and t["visible_fraction"] == 0 for t in closed)
    events = truth_blinks([t for _, _, t in frames], FPS)
    assert len(events) == 2
    for event, given in zip(events, BLINKS, strict=True):  # inside the lids' movement
        end = given.start + given.closing + given.closed + given.opening - 1
        assert given.start < event["start_frame"] <= event["end_frame"] < end
        assert 0.1 <= event["duration_s"] <= 0.4


def test_the_look_stays_the_same_from_frame_to_frame(frames):
    images = np.stack([image for image, _, _ in frames]).astype(np.float32)
    edge = images[:, :, :8]  # skin at the frame's side, away from lids and lashes
    assert np.abs(edge - edge[0]).mean(axis=(1, 2)).max() < 1  # (a new look per frame: tens)
    a, b = eye_sequence(2, seed=3, size=SIZE, blinks=[]), eye_sequence(2, seed=4, size=SIZE, blinks=[])
    assert not np.array_equal(next(a)[0], next(b)[0])  # another seed, another person


def test_same_seed_same_video():
    one = [f[0] for f in eye_sequence(12, seed=5, size=SIZE)]
    two = [f[0] for f in eye_sequence(12, seed=5, size=SIZE)]
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))


def test_cli_writes_video_truth_and_blinks_and_refuses_a_full_folder(tmp_path, capsys):
    from data.synthetic.__main__ import main

    out = tmp_path / "video"
    assert main(["--sequence", str(N), "--out", str(out), "--size", "64x96", "--seed", "3"]) == 0
    with (out / "truth.csv").open() as f:
        truth = list(csv.DictReader(f))
    with (out / "blinks.csv").open() as f:
        blinks = list(csv.DictReader(f))
    assert [int(row["frame"]) for row in truth] == list(range(N))
    assert len(blinks) == len(truth_blinks([{k: float(v) for k, v in r.items()} for r in truth], FPS))
    assert blinks and list(blinks[0]) == list(BLINK_COLUMNS)
    video, count = cv2.VideoCapture(str(out / "eye.mp4")), 0
    while video.read()[0]:
        count += 1
    assert count == N
    assert main(["--sequence", "4", "--out", str(out), "--size", "64x96"]) == 1
    assert "folder is not empty" in capsys.readouterr().err
    assert main(["--sequence", "4", "--out", str(out), "--size", "64x96", "--overwrite"]) == 0
    assert len((out / "truth.csv").read_text().splitlines()) == 5
