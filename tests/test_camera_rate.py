"""benchmark.py's camera-rate section: predict end to end, each stage alone and the one-thread rows
beside Pupil Labs' 2D detector, on a tiny synthetic recording; the recordings it takes, its flags
and its report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import benchmark
from data.synthetic import write_sequence
from pipeline.speed import OPENCV_THREADS, PEERS_HINT, one_thread, one_thread_rows, recording_clip, run_sizes
from reports.benchmark import CAMERA_RATE_TARGET, STAGES, camera_rate_lines, markdown_report
from tests.test_pupil_core import START, pupil_core_recording

FRAMES = 6


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """FRAMES synthetic 96x96 frames at 60 frames/s."""
    return (
        write_sequence(tmp_path_factory.mktemp("camera") / "eyes", FRAMES, seed=1, size=(96, 96), fps=60)
        / "eye.mp4"
    )


def frames(n: int = 3) -> list[tuple[str, str, np.ndarray]]:
    """n grey 96x96 frames with a dark disc for a pupil, as `pipeline.streams.read_video` gives them."""
    image = np.full((96, 96), 170, np.uint8)
    cv2.circle(image, (48, 44), 12, 20, -1)
    return [(str(i), f"{i:06d}", image.copy()) for i in range(n)]


def section(**overrides) -> dict:
    """A camera-rate section as benchmark.py's JSON holds it."""
    stage_ms = {"decode": 0.25, "preprocess": 0.25, "model": 4.0, "measure": 0.25, "write": 0.25}
    auto = {"frames_per_s": 165.0, "frames_per_s_runs": [160.0, 165.0, 170.0], "cpu_ms_per_frame": 9.8,
            "input_size": [256, 256], "stage_ms": stage_ms}  # fmt: skip
    native = auto | {
        "frames_per_s": 210.0,
        "frames_per_s_runs": [205.0, 210.0, 212.0],
        "input_size": [192, 192],
    }
    pupil_labs = {
        "name": "pupil_labs_2d",
        "label": "Pupil Labs 2D (pupil-detectors 2.0.2)",
        "ms_per_frame": 2.0,
        "cpu_ms_per_frame": 2.0,
        "frames_per_s": 500.0,
    }
    values = {
        "recording": "eye0.mp4", "frames": 3445, "frame_size": [192, 192], "fps": 120.0,
        "model": "pupil.onnx (onnxruntime)", "batch": 8, "target_frames_per_s": CAMERA_RATE_TARGET,
        "sizes": {"auto": auto, "native": native}, "one_thread": [pupil_labs], "notes": [],
    }  # fmt: skip
    return values | overrides


def test_the_section_runs_predict_end_to_end_then_each_stage_and_one_thread_rows(video, tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = ["--only", "camera-rate", "--recording", str(video), "--img-sizes", "native", "--json", str(path)]
    assert benchmark.main(argv) == 0
    result = json.loads(path.read_text())
    assert "models" not in result and result["settings"]["sections"] == ["camera-rate"]
    measured = result["camera_rate"]
    assert measured["frames"] == FRAMES and measured["fps"] == pytest.approx(60)
    (run,) = measured["sizes"].values()
    assert run["frames_per_s"] > 0 and run["cpu_ms_per_frame"] > 0
    assert list(run["stage_ms"]) == list(STAGES) and all(ms > 0 for ms in run["stage_ms"].values())
    names = [row["name"] for row in measured["one_thread"]]
    assert names[-1] == "ours_native" and all(row["ms_per_frame"] > 0 for row in measured["one_thread"])
    out = capsys.readouterr().out
    assert "Camera rate: tiny_efficientvit.onnx" in out and "| --img-size native (128x128) |" in out


def test_without_pupil_detectors_its_row_is_left_out_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pupil_detectors", None)  # import pupil_detectors fails
    rows, notes = one_thread_rows(frames(), (), tmp_path)
    assert rows == []
    (note,) = notes
    assert note.startswith("Pupil Labs 2D not run") and PEERS_HINT in note


def test_with_pupil_detectors_its_row_is_timed_on_one_thread(tmp_path):
    pytest.importorskip("pupil_detectors")
    (row,), notes = one_thread_rows(frames(), (), tmp_path)
    assert notes == [] and row["name"] == "pupil_labs_2d" and row["label"].startswith("Pupil Labs 2D")
    assert row["ms_per_frame"] > 0 and row["frames_per_s"] == pytest.approx(1000 / row["ms_per_frame"])


def test_one_thread_restores_opencv_threads_and_the_environment(monkeypatch):
    monkeypatch.delenv(OPENCV_THREADS, raising=False)
    threads = cv2.getNumThreads()
    with one_thread():
        assert cv2.getNumThreads() == 1 and os.environ[OPENCV_THREADS] == "1"
    assert cv2.getNumThreads() == threads and OPENCV_THREADS not in os.environ


def test_a_pupil_core_recording_is_measured_on_its_first_eye_by_its_own_timestamps(tmp_path):
    stamps = pupil_core_recording(tmp_path / "rec")
    clip = recording_clip(tmp_path / "rec")
    assert clip.video.name == "eye0.mp4"
    assert clip.times == pytest.approx(stamps[0] - START)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recording", "{tmp}"], "neither a video nor a Pupil Core recording"),
        (["--recording", "{tmp}/nothing.mp4"], "no such file or folder"),
        (["--img-sizes", "64x64"], "64x64: this file takes 128 or more a side"),
    ],
    ids=["empty folder", "missing", "too small"],
)
def test_what_the_section_cannot_run_is_an_error_naming_it(tmp_path, capsys, argv, message):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert benchmark.main(["--only", "camera-rate", *argv]) == 1
    assert message in capsys.readouterr().err


def test_a_recording_without_the_camera_rate_section_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--only", "models", "--recording", "eye0.mp4"])
    assert (
        exit_info.value.code == 2 and "--recording is for the camera-rate section" in capsys.readouterr().err
    )


def test_img_sizes_are_predict_sizes_comma_separated():
    assert run_sizes("auto, native,224x224") == ("auto", "native", (224, 224))
    with pytest.raises(ValueError, match="give auto, native or HxW"):
        run_sizes(",")


def test_the_report_gives_each_stage_its_share_and_says_where_the_target_is_met():
    lines = "\n".join(camera_rate_lines(section()))
    assert "| | --img-size auto (256x256) | --img-size native (192x192) |" in lines
    assert "| end to end (predict.predict): frames/s, median (range) of 3 runs | 165.0 (160-170) |" in lines
    assert "| model (onnxruntime, softmax): ms per frame (share) | 4.00 (80%) | 4.00 (80%) |" in lines
    assert "| stages' sum: ms per frame (frames/s) | 5.00 (200) | 5.00 (200) |" in lines
    assert (
        f"Target: >= {CAMERA_RATE_TARGET} frames/s" in lines
        and "auto 165.0 (not met), native 210.0 (met)" in lines
    )
    assert "| Pupil Labs 2D (pupil-detectors 2.0.2) | 2.00 (2.00) | 500 |" in lines


def test_a_report_of_the_camera_rate_alone_has_no_model_table_and_gives_its_notes():
    note = f"Pupil Labs 2D not run: No module named 'pupil_detectors' ({PEERS_HINT})"
    result = {
        "machine": {"cpu": "a CPU", "logical_cpus": 2, "os": "Linux x86_64", "python": "3.11", "torch": "2",
                    "onnxruntime": "1", "gpu": None, "load_average": None},
        "settings": {"threads": 2},
        "camera_rate": section(one_thread=[], notes=[note]),
    }  # fmt: skip
    text = markdown_report(result)
    assert text.startswith("Machine: a CPU") and "Peak" not in text and "Targets" not in text
    assert text.endswith(f"Note: {note}.")
