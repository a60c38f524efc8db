"""Pupil Core recordings in (both eyes, their own timestamps) and Pupil Player's exports out, on a
tiny recording generated in Pupil Capture's layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from data.synthetic import write_sequence
from pipeline.pupil_core import PLAYER_BLINK_COLUMNS, PUPIL_POSITIONS_COLUMNS, binocular_blinks
from predict import main as predict_main

START = 1000.0  # the recording's start on Pupil time
FRAMES = 20


def pupil_core_recording(root: Path, eyes: tuple[int, ...] = (0, 1)) -> dict[int, np.ndarray]:
    """eye<id>.mp4 and eye<id>_timestamps.npy (irregular gaps of 5-30 ms, as real ones) and
    info.player.json in `root`; returns each eye's timestamps."""
    root.mkdir(parents=True)
    stamps = {}
    for eye in eyes:
        sequence = write_sequence(root.parent / f"sequence{eye}", FRAMES, seed=eye, size=(192, 192), fps=60)
        (sequence / "eye.mp4").rename(root / f"eye{eye}.mp4")
        gaps = np.random.default_rng(eye).uniform(0.005, 0.03, FRAMES)
        stamps[eye] = START + 0.5 + np.cumsum(gaps)
        np.save(root / f"eye{eye}_timestamps.npy", stamps[eye])
    info = {
        "start_time_synced_s": START,
        "start_time_system_s": 1.7e9,
        "recording_software_name": "Pupil Capture",
    }
    (root / "info.player.json").write_text(json.dumps(info))
    return stamps


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_each_eye_runs_with_its_own_timestamps_and_player_exports_hold_both(tmp_path, capsys):
    stamps = pupil_core_recording(tmp_path / "rec")
    out = tmp_path / "out"
    assert predict_main(["--input", str(tmp_path / "rec"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"Pupil Core recording {tmp_path / 'rec'}: eye0 {FRAMES} frames over" in printed
        and "; eye1 " in printed
    )
    for eye, times in stamps.items():
        rows = read_csv(out / f"eye{eye}" / "pupil.csv")
        assert [float(r["time_s"]) for r in rows] == pytest.approx(times - START, abs=1e-6)
        assert (out / f"eye{eye}" / "summary.json").is_file()

    pandas = pytest.importorskip("pandas")  # as Pupil Labs' tutorials read a Player export
    positions = pandas.read_csv(out / "pupil_player" / "pupil_positions.csv")
    assert tuple(positions.columns) == PUPIL_POSITIONS_COLUMNS
    for eye, times in stamps.items():
        eye_df = positions[positions["eye_id"] == eye]
        assert eye_df["pupil_timestamp"].to_numpy() == pytest.approx(times, abs=1e-6)
        confident = eye_df[eye_df["confidence"] > 0.6]
        assert len(confident) > FRAMES // 2 and confident["diameter"].between(1, 192).all()
        assert confident["norm_pos_x"].between(0, 1).all() and confident["norm_pos_y"].between(0, 1).all()
        # norm_pos is Player's: y from the bottom of the frame
        assert confident["norm_pos_y"].to_numpy() == pytest.approx(
            1 - confident["ellipse_center_y"] / 192, abs=1e-5
        )
    assert positions["method"].str.contains("2d").all() and positions["diameter_3d"].isna().all()
    assert positions["pupil_timestamp"].is_monotonic_increasing
    blinks = pandas.read_csv(out / "pupil_player" / "blinks.csv")
    assert tuple(blinks.columns) == PLAYER_BLINK_COLUMNS


def test_timestamps_that_do_not_match_the_video_are_refused_in_one_line(tmp_path, capsys):
    stamps = pupil_core_recording(tmp_path / "rec", eyes=(0,))
    np.save(tmp_path / "rec" / "eye0_timestamps.npy", stamps[0][:-1])
    assert predict_main(["--input", str(tmp_path / "rec"), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'rec' / 'eye0.mp4'} holds {FRAMES} frames but eye0_timestamps.npy has "
        f"{FRAMES - 1} timestamps: which frame is when cannot be told"
    ]
    (tmp_path / "rec" / "eye0_timestamps.npy").unlink()
    assert predict_main(["--input", str(tmp_path / "rec"), "--output", str(tmp_path / "out")]) == 1
    assert "eye0.mp4: no eye0_timestamps.npy beside it" in capsys.readouterr().err


def test_a_binocular_blink_is_where_both_eyes_blink():
    events = {
        0: [{"start_s": 1.0, "end_s": 1.2}, {"start_s": 3.0, "end_s": 3.2}],
        1: [{"start_s": 1.05, "end_s": 1.25}, {"start_s": 5.0, "end_s": 5.2}],  # eye 0 is open at 5 s
    }
    assert binocular_blinks(events, 0.05) == [(1.05, 1.2)]
    assert binocular_blinks({0: events[0]}, 0.05) == [(1.0, 1.2), (3.0, 3.2)]


def test_a_raw_mjpeg_eye_video_is_counted_by_decoding(tmp_path):
    import cv2

    from pipeline.pupil_core import find_recording

    frames = [np.full((64, 64), 60 + 10 * i, np.uint8) for i in range(5)]
    (tmp_path / "eye0.mjpeg").write_bytes(b"".join(cv2.imencode(".jpg", f)[1].tobytes() for f in frames))
    np.save(tmp_path / "eye0_timestamps.npy", np.arange(5) / 120)  # its header has no frame count
    recording = find_recording(tmp_path)
    assert recording is not None and len(recording.eyes[0].timestamps) == 5


def test_a_folder_of_recordings_runs_each_once_and_resumes(tmp_path, capsys):
    batch = tmp_path / "batch"
    pupil_core_recording(batch / "rec", eyes=(0,))
    for name in ("a", "b"):
        (write_sequence(tmp_path / name, 6, seed=3, size=(128, 128)) / "eye.mp4").rename(
            batch / f"{name}.mp4"
        )
    out = tmp_path / "out"
    assert predict_main(["--input", str(batch), "--output", str(out), "--no-overlay"]) == 0
    assert "3 recordings in" in capsys.readouterr().out
    rows = read_csv(out / "recordings.csv")
    assert [r["recording"] for r in rows] == ["a", "b", "rec/eye0"]
    assert [int(r["frames"]) for r in rows] == [6, 6, FRAMES]
    assert (out / "rec" / "pupil_player" / "pupil_positions.csv").is_file()
    first = (out / "a" / "pupil.csv").stat().st_mtime_ns
    (out / "b" / ".complete").unlink()  # as if b had been cut short
    assert predict_main(["--input", str(batch), "--output", str(out), "--no-overlay"]) == 0
    printed = capsys.readouterr().out
    assert "3 recordings in" in printed and "2 done before, 1 to run" in printed and "b: " in printed
    assert (out / "a" / "pupil.csv").stat().st_mtime_ns == first  # not run again
    assert len(read_csv(out / "recordings.csv")) == 3


def test_a_batch_names_recordings_apart_and_runs_past_a_broken_one(tmp_path, capsys):
    from pipeline.batch import batch_inputs

    batch = tmp_path / "batch"
    batch.mkdir()
    for i, name in enumerate(("P01.s1", "P01.s2")):  # a dot in a folder's name is no suffix
        pupil_core_recording(tmp_path / f"made{i}" / name, eyes=(0,))
        (tmp_path / f"made{i}" / name).rename(batch / name)
    (batch / "broken").mkdir()
    (batch / "broken" / "eye0.mp4").write_bytes((batch / "P01.s1" / "eye0.mp4").read_bytes())  # no timestamps
    out = tmp_path / "out"
    assert predict_main(["--input", str(batch), "--output", str(out), "--no-overlay"]) == 0
    captured = capsys.readouterr()
    assert (
        "2 recordings in" in captured.out
        and "skipped: " in captured.err
        and "eye0_timestamps" in captured.err
    )
    assert [r["recording"] for r in read_csv(out / "recordings.csv")] == ["P01.s1/eye0", "P01.s2/eye0"]
    (batch / "P01.s1.mp4").write_bytes((batch / "P01.s1" / "eye0.mp4").read_bytes())  # also into P01.s1/
    with pytest.raises(
        ValueError, match=r"P01\.s1 and .*P01\.s1\.mp4 would both write to P01\.s1/: rename one"
    ):
        batch_inputs(batch)


def neon_recording(root: Path, frames: int = 12) -> np.ndarray:
    """A Neon recording folder as the Companion app writes it: the eye video of both eye cameras
    side by side (an eye in the left half, the right half blank), its int64 nanosecond .time file
    with two stamps more than frames, info.json; returns the frames' stamps in seconds."""
    import cv2

    sequence = write_sequence(root.parent / "neon-sequence", frames, seed=4, size=(192, 192), fps=200)
    capture = cv2.VideoCapture(str(sequence / "eye.mp4"))
    root.mkdir(parents=True)
    writer = cv2.VideoWriter(
        str(root / "Neon Sensor Module v1 ps1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 200, (384, 192)
    )
    while (read := capture.read())[0]:
        writer.write(np.concatenate([read[1], np.full_like(read[1], 200)], axis=1))
    writer.release()
    capture.release()
    start_ns = 1_700_000_000_000_000_000
    gaps = np.random.default_rng(4).integers(4_000_000, 6_000_000, frames + 2)
    stamps = start_ns + 300_000_000 + np.cumsum(gaps)
    stamps.astype("<i8").tofile(root / "Neon Sensor Module v1 ps1.time")
    (root / "info.json").write_text(json.dumps({"start_time": start_ns, "recording_id": "test"}))
    return stamps[:frames] / 1e9


def test_a_neon_recordings_eye_video_is_split_into_its_two_eyes(tmp_path, capsys):
    stamps = neon_recording(tmp_path / "neon")
    out = tmp_path / "out"
    assert predict_main(["--input", str(tmp_path / "neon"), "--output", str(out), "--no-overlay"]) == 0
    assert f"Neon recording {tmp_path / 'neon'}: eye0 12 frames over" in capsys.readouterr().out
    left, right = read_csv(out / "eye0" / "pupil.csv"), read_csv(out / "eye1" / "pupil.csv")
    for rows in (right, left):  # each eye on the recording's clock, the .time file's extra stamps dropped
        assert [float(r["time_s"]) for r in rows] == pytest.approx(stamps - 1_700_000_000.0, abs=1e-6)
    assert sum(r["pupil_found"] == "1" for r in left) >= 10  # the left half holds the eye
    assert not any(r["pupil_found"] == "1" for r in right)  # the right half is blank
    found = [float(r["centre_x"]) for r in left if r["pupil_found"] == "1"]
    assert max(found) < 192  # the half's own pixels
    positions = read_csv(out / "pupil_player" / "pupil_positions.csv")
    assert {r["eye_id"] for r in positions} == {"0", "1"} and len(positions) == 24


def test_a_neon_recording_with_fewer_stamps_than_frames_is_refused(tmp_path, capsys):
    neon_recording(tmp_path / "neon")
    times = tmp_path / "neon" / "Neon Sensor Module v1 ps1.time"
    times.write_bytes(times.read_bytes()[: 8 * 5])
    assert predict_main(["--input", str(tmp_path / "neon"), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds 12 frames but Neon Sensor Module v1 ps1.time has 5 stamps" in err
