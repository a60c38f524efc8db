"""One run of predict.py when something goes wrong: the threads stop before the video is released,
the error that ended a run is the one raised, a failed run leaves --save-dataset's folder usable,
and a camera (a stand-in capture) that shows no frame, or whose frames are saved as a dataset."""

from __future__ import annotations

import csv
import threading

import cv2
import numpy as np
import pytest

import pipeline.recording
from config import PupillometryConfig
from data.synthetic import render_eye
from pipeline.recording import PredictSummary, Recording
from pipeline.run import predict
from predict import main
from tests.conftest import EASY, PRETRAINED_ONNX
from tests.test_predict import dark_is_pupil, stand_in


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cannot_write(path, image):
    raise OSError(f"{path}: no space left on device")


@pytest.fixture
def video(tmp_path):
    """A 40-frame 64x96 MJPG video."""
    path = tmp_path / "eyes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(40):
        writer.write(cv2.cvtColor(render_eye(7, i, (64, 96), style=EASY)[0], cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("failing", ["model", "writing"])
def test_an_error_mid_video_stops_every_thread_before_predict_returns(video, tmp_path, monkeypatch, failing):
    """The decoding thread must not read on from a capture that predict releases."""
    batches = []

    def model(batch):
        batches.append(batch)
        if failing == "model" and len(batches) == 2:
            raise RuntimeError("model failed")
        return dark_is_pupil(batch)

    if failing == "writing":
        monkeypatch.setattr(pipeline.recording, "write_image", cannot_write)
    before = set(threading.enumerate())
    error = RuntimeError if failing == "model" else OSError
    with pytest.raises(error):  # its traceback keeps predict's variables, and so its stages, alive
        predict(stand_in(model), video, tmp_path / "out", batch_size=2, video_masks=True)
    assert [t.name for t in threading.enumerate() if t not in before] == []


def test_the_error_that_ended_a_recording_is_raised_not_a_failed_write_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline.recording, "write_image", cannot_write)
    image = np.full((40, 60), 120, np.uint8)
    prob = np.zeros((40, 60), np.float32)
    recording = Recording(tmp_path, PupillometryConfig(), threshold=0.5, masks=True)
    with pytest.raises(RuntimeError, match="model failed"), recording:
        recording.measure(("0", "000000", image), prob)  # its mask cannot be written
        raise RuntimeError("model failed")
    recording = Recording(tmp_path, PupillometryConfig(), threshold=0.5, masks=True)
    with pytest.raises(OSError, match="no space left"), recording:  # nothing else went wrong: raised
        recording.measure(("0", "000000", image), prob)


def test_a_run_that_fails_on_its_input_leaves_the_dataset_folder_for_the_next(tmp_path, capsys):
    dataset = tmp_path / "to_correct"
    args = ["--checkpoint", str(PRETRAINED_ONNX), "--output", str(tmp_path / "out"), "--save-dataset"]
    assert main([*args, str(dataset), "--input", str(tmp_path / "no-such.mp4")]) == 1
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "eye.png"), render_eye(5, 0, (100, 160), style=EASY)[0])
    assert main([*args, str(dataset), "--input", str(folder)]) == 0, capsys.readouterr().err
    assert (dataset / "train" / "images" / "eye.png").is_file()


class Camera:
    """A stand-in for cv2.VideoCapture(index) that shows `frames` and then nothing."""

    frames: list[np.ndarray] = []

    def __init__(self, index: int) -> None:
        self.left = list(self.frames)

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return -1.0  # a camera announces no frame count

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, cv2.cvtColor(self.left.pop(0), cv2.COLOR_GRAY2BGR)) if self.left else (False, None)

    def release(self) -> None:
        self.left = []


@pytest.fixture
def camera(monkeypatch):
    """Camera 0 is a stand-in; no window opens; set Camera.frames."""
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "VideoCapture", Camera)
    monkeypatch.setattr(cv2, "imshow", lambda *args: None)
    monkeypatch.setattr(cv2, "waitKey", lambda delay: -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    monkeypatch.setattr(Camera, "frames", [])
    return Camera


def test_a_camera_that_shows_no_frame_is_a_one_line_error(camera, tmp_path, capsys):
    code = main(["--checkpoint", str(PRETRAINED_ONNX), "--input", "0", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err == "error: camera 0: opened, but no frame could be read\n"


def test_a_camera_saves_its_frames_as_a_dataset_when_asked(camera, tmp_path, capsys):
    camera.frames = [render_eye(5, i, (100, 160), style=EASY)[0] for i in range(3)]
    dataset = tmp_path / "to_correct"
    args = ["--input", "0", "--output", str(tmp_path / "out"), "--save-dataset", str(dataset)]
    assert main(["--checkpoint", str(PRETRAINED_ONNX), *args]) == 0
    assert len(read_csv(tmp_path / "out" / "pupil.csv")) == 3
    assert [row["split"] for row in read_csv(dataset / "confidence.csv")] == ["train", "train", "validation"]
    assert (dataset / "validation" / "images" / "000002.png").is_file()


def test_the_summary_counts_one_blink_in_the_singular():
    summary = PredictSummary(30, 0, seconds=1.0, model_seconds=0.5, tracked_share=0.9, blinks=1, minutes=0.5)
    assert "pupil tracked in 90.0% of frames, 1 blink (2.0 a minute)" in str(summary)
