"""The time series of predict.py: blink frames and events, the One Euro filter, interpolation
across blinks, millimetres, and the end-to-end check on a synthetic eye video with known blinks
and a known diameter track."""

from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest

from config import PupillometryConfig
from data.synthetic import write_sequence
from predict import main
from pupillometry.iris import IRIS_DIAMETER_MM
from pupillometry.series import (
    blink_events,
    blink_frames,
    interpolate,
    one_euro,
    running_median,
    runs,
    smooth,
    time_series,
)
from tests.conftest import PRETRAINED_ONNX

FPS = 30.0


def frame(
    area: float, *, found: bool = True, confidence: float = 0.9, x: float = 50.0, d: float = 20.0
) -> dict:
    nan = math.nan
    if not found:
        return {"pupil_found": False, "confidence": 0.0, "centre_x": nan, "centre_y": nan, "axis_major": nan,
                "area_px": nan}  # fmt: skip
    return {"pupil_found": True, "confidence": confidence, "centre_x": x, "centre_y": 40.0, "axis_major": d,
            "area_px": area}  # fmt: skip


def test_running_median_skips_nan_and_is_nan_where_the_window_is_empty():
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 10.0])
    medians = running_median(values, np.arange(7.0), 1.0)  # three frames
    assert medians[0] == 1.0 and medians[1] == 2.0 and medians[2] == 3.0
    assert math.isnan(medians[4]) and medians[6] == 10.0


def test_runs_gives_first_and_last_index_of_each_run():
    assert runs(np.array([1, 1, 0, 0, 1, 0, 1], bool)) == [(0, 1), (4, 4), (6, 6)]
    assert runs(np.zeros(4, bool)) == []


def test_a_shrinking_area_and_a_lost_pupil_are_blink_frames():
    area = np.full(60, 400.0)
    area[20:23] = (150.0, 100.0, 250.0)  # lids over the pupil: under half of the open area
    area[40] = 300.0  # three quarters: still open
    usable = np.ones(60, bool)
    usable[23] = False  # no pupil found
    blink = blink_frames(area, usable, np.arange(60) / FPS, fps=FPS, config=PupillometryConfig())
    assert np.flatnonzero(blink).tolist() == [20, 21, 22, 23]


def test_blink_runs_two_frames_apart_are_one_blink_but_three_apart_are_two():
    area = np.full(60, 400.0)
    area[[10, 11, 14, 15, 30, 31, 35, 36]] = 50.0  # gaps of 2 and of 3 open frames
    blink = blink_frames(area, np.ones(60, bool), np.arange(60) / FPS, fps=FPS, config=PupillometryConfig())
    events = blink_events(blink, np.arange(60) / FPS, FPS)
    assert [(e["start_frame"], e["end_frame"]) for e in events] == [(10, 15), (30, 31), (35, 36)]
    assert events[0]["duration_s"] == pytest.approx(6 / FPS)
    assert events[0]["start_s"] == pytest.approx(10 / FPS)


def test_one_euro_holds_a_constant_and_follows_a_fast_step_with_a_high_beta():
    times = np.arange(40) / FPS
    step = np.where(np.arange(40) < 20, 0.0, 5.0)[:, None]
    assert np.allclose(one_euro(times, np.full((40, 1), 3.0), min_cutoff=1.0, beta=0.0), 3.0)
    slow = one_euro(times, step, min_cutoff=1.0, beta=0.0)[25, 0]
    fast = one_euro(times, step, min_cutoff=1.0, beta=10.0)[25, 0]
    assert slow < 4.0 < fast <= 5.0


def test_one_euro_skips_rows_with_nan():
    values = np.array([[1.0], [np.nan], [1.0]])
    out = one_euro(np.arange(3) / FPS, values, min_cutoff=1.0, beta=0.0)
    assert math.isnan(out[1, 0]) and out[2, 0] == 1.0


def test_both_ways_smoothing_does_not_lag_a_ramp_where_the_causal_filter_does():
    times = np.arange(90) / FPS
    ramp = times[:, None] * 10
    causal = smooth(times, ramp, min_cutoff=0.5, beta=0.0, causal=True)
    both = smooth(times, ramp, min_cutoff=0.5, beta=0.0)
    assert causal[45, 0] < ramp[45, 0] - 1.0  # lags by more than 0.1 s of ramp
    assert abs(both[45, 0] - ramp[45, 0]) < 0.05


def test_smoothing_brings_a_noisy_track_closer_to_the_truth():
    times = np.arange(300) / FPS
    truth = 40 + 3 * np.sin(2 * math.pi * times / 5)
    noisy = truth + np.random.default_rng(0).normal(0, 0.8, times.size)
    filtered = smooth(times, noisy[:, None] / 40, min_cutoff=1.0, beta=0.5)[:, 0] * 40  # in diameters
    assert np.abs(filtered - truth).mean() < 0.6 * np.abs(noisy - truth).mean()


def test_interpolate_fills_inner_gaps_linearly_in_time_and_leaves_the_ends():
    times = np.array([0.0, 1.0, 2.0, 4.0, 5.0])
    values = np.array([np.nan, 10.0, np.nan, 30.0, np.nan])
    out = interpolate(times, values)
    assert math.isnan(out[0]) and math.isnan(out[4])
    assert out[2] == pytest.approx(10 + 20 / 3)


def test_time_series_marks_blinks_leaves_them_unfiltered_and_interpolates_the_diameter():
    frames = [frame(314.0, d=20.0) for _ in range(30)] + [frame(0, found=False)] * 5
    frames += [frame(314.0, d=22.0) for _ in range(30)]
    times, config = np.arange(len(frames)) / FPS, PupillometryConfig(mm_per_px=0.1)
    rows, events = time_series(frames, times, fps=FPS, config=config)
    assert [(e["start_frame"], e["end_frame"]) for e in events] == [(30, 34)]
    assert [r["blink"] for r in rows[29:36]] == [0, 1, 1, 1, 1, 1, 0]
    assert math.isnan(rows[32]["diameter_filtered_px"]) and math.isnan(rows[32]["centre_x_filtered"])
    assert 20.0 < rows[32]["diameter_interpolated_px"] < 22.0
    assert rows[10]["diameter_filtered_px"] == pytest.approx(20.0, abs=0.01)
    assert rows[10]["diameter_mm"] == pytest.approx(2.0) and rows[32]["diameter_interpolated_mm"] > 2.0


def test_a_low_confidence_frame_is_lost_not_a_blink_and_no_smooth_leaves_out_the_filtered_columns():
    frames = (
        [frame(314.0) for _ in range(10)] + [frame(314.0, confidence=0.1)] + [frame(314.0) for _ in range(10)]
    )
    rows, events = time_series(frames, np.arange(21) / FPS, fps=FPS, config=PupillometryConfig(smooth=False))
    assert rows[10]["blink"] == 1 and events == []  # one lost frame (33 ms) is no blink
    assert "diameter_filtered_px" not in rows[0] and rows[10]["diameter_interpolated_px"] == pytest.approx(
        20.0
    )


def test_a_recording_without_any_pupil_is_one_long_blink():
    frames = [frame(0, found=False)] * 6
    rows, events = time_series(frames, np.arange(6) / FPS, fps=FPS, config=PupillometryConfig())
    assert all(r["blink"] for r in rows) and len(events) == 1
    assert all(math.isnan(r["diameter_interpolated_px"]) for r in rows)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float:
    return float(text) if text else math.nan


@pytest.fixture(scope="module")
def eye_video(tmp_path_factory):
    """A 6-second 200x320 synthetic eye video with its truth, and predict.py's results on it."""
    root = write_sequence(tmp_path_factory.mktemp("sequence"), 180, seed=3, size=(200, 320))
    out = root / "out"
    assert (
        main(["--checkpoint", str(PRETRAINED_ONNX), "--input", str(root / "eye.mp4"), "--output", str(out)])
        == 0
    )
    return root, out


@pytest.mark.slow
def test_blinks_of_a_synthetic_eye_video_are_found_within_two_frames(eye_video):
    root, out = eye_video
    truth = read_rows(root / "blinks.csv")
    found = read_rows(out / "blinks.csv")
    assert len(truth) >= 3 and len(found) == len(truth)
    for true, mine in zip(truth, found, strict=True):
        assert abs(int(mine["start_frame"]) - int(true["start_frame"])) <= 2
        assert abs(int(mine["end_frame"]) - int(true["end_frame"])) <= 2


@pytest.mark.slow
def test_the_filtered_diameter_of_a_synthetic_eye_video_is_closer_to_the_truth_than_the_raw(eye_video):
    root, out = eye_video
    truth, rows = read_rows(root / "truth.csv"), read_rows(out / "pupil.csv")
    open_eye = [(t, r) for t, r in zip(truth, rows, strict=True) if t["blink"] == "0" and r["blink"] == "0"]
    assert len(open_eye) > 100
    raw = np.mean([abs(number(r["axis_major"]) - float(t["diameter_px"])) for t, r in open_eye])
    filtered = np.mean(
        [abs(number(r["diameter_filtered_px"]) - float(t["diameter_px"])) for t, r in open_eye]
    )
    assert filtered < raw


@pytest.mark.slow
def test_a_video_gets_pupil_csv_blinks_csv_and_a_timeseries_plot(eye_video):
    _, out = eye_video
    rows = read_rows(out / "pupil.csv")
    assert len(rows) == 180 and float(rows[30]["time_s"]) == pytest.approx(1.0)
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)
    plot = cv2.imread(str(out / "timeseries.png"))
    assert plot is not None and plot.shape[1] > 1000
    assert (out / "overlay.mp4").is_file() or (out / "overlay.avi").is_file()


@pytest.mark.slow
def test_mm_from_iris_on_a_synthetic_eye_video_is_within_8_percent_and_marked_an_estimate(eye_video):
    root, _ = eye_video
    out = root / "iris"
    assert main(["--input", str(root / "eye.mp4"), "--output", str(out), "--mm-from-iris"]) == 0
    truth = read_rows(root / "truth.csv")[0]
    true_mm_per_px = IRIS_DIAMETER_MM / (float(truth["diameter_px"]) / float(truth["pupil_ratio"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mm_source"].startswith("estimate from the iris")
    assert summary["mm_per_px"] == pytest.approx(true_mm_per_px, rel=0.08)
    row = read_rows(out / "pupil.csv")[0]
    assert float(row["diameter_mm"]) == pytest.approx(
        float(row["axis_major"]) * summary["mm_per_px"], abs=1e-4
    )


def test_the_interpolated_diameter_also_replaces_the_lid_covered_frames_next_to_a_blink():
    frames = [frame(314.0, d=20.0) for _ in range(28)] + [frame(300.0, d=15.0)] * 2  # a lid coming down
    frames += [frame(0, found=False)] * 5 + [frame(314.0, d=20.0) for _ in range(30)]
    rows, _ = time_series(
        frames, np.arange(len(frames)) / FPS, fps=FPS, config=PupillometryConfig(smooth=False)
    )
    assert [r["blink"] for r in rows[27:31]] == [0, 0, 0, 1]
    assert rows[29]["diameter_interpolated_px"] == pytest.approx(20.0)  # 2 frames = 50 ms at 30 frames/s
    assert rows[29]["axis_major"] == 15.0


def test_the_time_rules_follow_the_frames_own_times_not_their_count():
    # 10 ms frames, but the camera stalled over two blink frames: 30 ms each
    gaps = np.full(60, 0.01)
    gaps[30:32] = 0.03
    times = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    blink = np.zeros(60, bool)
    blink[30:32] = True  # two frames: 20 ms at the median rate, 60 ms as they were recorded
    events = blink_events(blink, times, fps=100.0)
    assert len(events) == 1 and events[0]["duration_s"] == pytest.approx(0.06)
    # the open area's reference is the median over +-0.5 s of time, however many frames that is
    reference = running_median(np.array([1.0, 2.0, 3.0, 100.0, 200.0]), np.array([0, 0.1, 0.2, 5, 5.1]), 0.5)
    assert reference.tolist() == [2.0, 2.0, 2.0, 150.0, 150.0]
