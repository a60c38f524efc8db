"""--lsl: each frame's measurement as a Lab Streaming Layer stream, checked with an inlet in this
process (liblsl finds the outlet on the loopback interface, no network needed)."""

from __future__ import annotations

import csv
import math
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from config import PupillometryConfig
from data.synthetic import render_eye, write_sequence
from inference import load_predictor
from pipeline.batch import predict_recording
from pipeline.lsl import LiveBlink, LslOutlet, source_id
from pipeline.pupil_core import find_recording
from pipeline.run import predict
from predict import main
from tests.conftest import EASY, PRETRAINED_ONNX
from tests.test_pupil_core import START, pupil_core_recording
from tests.test_recording import Camera

pylsl = pytest.importorskip("pylsl")
FPS = 60.0


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """12 synthetic 96x96 frames at FPS, a blink-free stretch and a pupil in each."""
    root = write_sequence(tmp_path_factory.mktemp("lsl") / "seq", 12, seed=3, size=(96, 96), fps=FPS)
    return root / "eye.mp4"


def unique() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # no stream of another test or run answers


def open_inlet(source: str):
    """An inlet on the stream with this source id, open, so that it receives every sample pushed next."""
    [info] = pylsl.resolve_byprop("source_id", source, timeout=5)
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(timeout=5)
    return inlet


ARRIVALS: list[float] = []  # pull_all's last call: when each sample arrived, on LSL's clock


def pull_all(inlet, expected: int, sender: threading.Thread | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The samples waiting, and those to come until `expected` arrived (or `sender` has finished
    and nothing more comes), within 10 s; when each arrived goes to ARRIVALS."""
    samples, stamps, deadline = [], [], time.monotonic() + 10
    ARRIVALS.clear()
    while len(samples) < expected and time.monotonic() < deadline:
        chunk, times = inlet.pull_chunk(timeout=0.02)
        samples, stamps = samples + chunk, stamps + times
        ARRIVALS.extend([pylsl.local_clock()] * len(chunk))
        if not chunk and sender is not None and not sender.is_alive():
            break
    return np.array(samples, dtype=float), np.array(stamps)


def stream_from_the_command_line(argv: list[str], name: str, expected: int):
    """predict.py's main(argv) on a thread, an inlet on its stream `name` opened as soon as it is
    there; its exit status, the stream's info, and the samples and stamps that came."""
    result = {}
    run = threading.Thread(target=lambda: result.update(code=main(argv)))
    run.start()
    [info] = pylsl.resolve_byprop("name", name, timeout=10)
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(timeout=5)
    samples, stamps = pull_all(inlet, expected, sender=run)
    run.join()
    return result["code"], info, samples, stamps


def channel_labels(inlet) -> list[str]:
    channel = inlet.info().desc().child("channels").child("channel")
    labels = []
    while not channel.empty():
        labels.append(channel.child_value("label"))
        channel = channel.next_sibling()
    return labels


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_each_frame_arrives_in_order_stamped_at_its_time(video, tmp_path):
    source = unique()
    config = PupillometryConfig(mm_per_px=0.05)
    outlet = LslOutlet(source, source, config=config, rate=FPS, model={"model": "pretrained"})
    inlet = open_inlet(source)
    predictor = load_predictor(PRETRAINED_ONNX)
    predict(predictor, video, tmp_path / "out", config=config, live=outlet, overlay=False)
    samples, stamps = pull_all(inlet, 12)

    labels = channel_labels(inlet)
    assert labels == ["diameter_px", "diameter_mm", "centre_x", "centre_y", "confidence", "blink"]
    assert inlet.info().desc().child("acquisition").child_value("model") == "pretrained"
    assert inlet.info().nominal_srate() == FPS and inlet.info().type() == "Pupillometry"
    assert len(samples) == 12
    assert np.diff(stamps) == pytest.approx(np.full(11, 1 / FPS), abs=1e-6)  # the frames' own spacing
    rows = read_csv(tmp_path / "out" / "pupil.csv")
    column = dict(zip(labels, samples.T, strict=True))
    for row, x, diameter, mm, blink in zip(
        rows, column["centre_x"], column["diameter_px"], column["diameter_mm"], column["blink"], strict=True
    ):
        if not blink:  # the pupil's channels are what pupil.csv says of the frame
            assert x == pytest.approx(float(row["centre_x"]), abs=1e-3)
            assert diameter == pytest.approx(float(row["axis_major"]), abs=1e-3)
            assert mm == pytest.approx(diameter * 0.05, rel=1e-5)
        else:
            assert math.isnan(x) and math.isnan(diameter)
    assert column["blink"].sum() < 6 and np.isin(column["blink"], (0, 1)).all()
    assert column["confidence"] == pytest.approx([float(r["confidence"]) for r in rows], abs=1e-5)


def test_a_pupil_core_recording_streams_each_eye_on_the_recordings_clock(tmp_path):
    stamps = pupil_core_recording(tmp_path / "rec", eyes=(0,))[0]
    recording = find_recording(tmp_path / "rec")
    source = unique()
    outlet = LslOutlet(source, source, config=PupillometryConfig())
    inlet = open_inlet(source)
    outlet.begin(0.0)
    begun = pylsl.local_clock()
    predictor = load_predictor(PRETRAINED_ONNX)
    predict_recording(predictor, recording, tmp_path / "out", dataset=None, outlets={"eye0": outlet})
    _, times = pull_all(inlet, len(stamps))
    assert inlet.info().nominal_srate() == 0  # a Pupil Core camera's gaps vary: an irregular stream
    assert times - times[0] == pytest.approx(stamps - stamps[0], abs=1e-6)  # the gaps, unevened
    assert times[0] == pytest.approx(begun + stamps[0] - START, abs=0.05)  # time 0: the recording's start


def test_the_command_line_replays_a_file_at_its_own_pace(video, tmp_path, capsys):
    name = unique()
    args = ["--input", str(video), "--output", str(tmp_path / "out"), "--lsl", name, "--realtime"]
    code, info, samples, stamps = stream_from_the_command_line([*args, "--fps", "10"], name, 12)
    assert code == 0
    # paced: no sample before its time (unpaced, the last comes about a second early), 0.1 s apart
    assert (np.array(ARRIVALS) >= stamps - 0.01).all() and ARRIVALS[-1] - ARRIVALS[0] >= 0.1 * (
        len(stamps) - 2
    )
    assert info.source_id() == source_id(video) and f"{Path(video).resolve()}" in info.source_id()
    assert len(samples) >= 4  # those after the inlet opened, in order, 0.1 s apart
    assert np.diff(stamps) == pytest.approx(np.full(len(stamps) - 1, 0.1), abs=1e-6)
    assert f"streaming to LSL as '{name}'" in capsys.readouterr().out


def test_without_pylsl_lsl_is_one_line_saying_how_to_install_it(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pylsl", None)  # as if not installed
    code = main(["--input", str(video), "--output", str(tmp_path / "out"), "--lsl"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "pip install pylsl" in err
    assert not (tmp_path / "out" / "pupil.csv").exists()


def test_realtime_without_lsl_is_a_usage_error(video, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--input", str(video), "--output", str(tmp_path / "out"), "--realtime"])
    assert stopped.value.code == 2 and "give --lsl too" in capsys.readouterr().err


def test_a_folder_of_recordings_is_not_one_stream(video, tmp_path, capsys):
    folder = tmp_path / "many"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(video.read_bytes())
    code = main(["--input", str(folder), "--output", str(tmp_path / "out"), "--lsl"])
    assert code == 1 and "--lsl takes one recording, not a folder of 2" in capsys.readouterr().err


def test_the_blink_channel_is_decided_from_the_past_alone():
    blink = LiveBlink(PupillometryConfig(blink_share=0.5, min_confidence=0.3))
    pupil = {"found": True, "area_px": 100.0}
    assert [blink(t / 10, pupil, 0.9) for t in range(5)] == [False] * 5
    assert blink(0.5, pupil | {"area_px": 40.0}, 0.9)  # under half the open eye's area: lids closing
    assert blink(0.6, pupil, 0.1)  # not confident
    assert blink(0.7, {"found": False, "area_px": math.nan}, 0.0)
    assert not blink(0.8, pupil | {"area_px": 60.0}, 0.9)
    assert not blink(5.0, pupil | {"area_px": 10.0}, 0.9)  # nothing open in the last second to compare


class SlowCamera(Camera):
    """A camera giving a frame every CAMERA_GAP_S."""

    def read(self):
        time.sleep(CAMERA_GAP_S)
        return super().read()


CAMERA_GAP_S = 0.2


def test_a_camera_streams_without_a_display_stamped_when_each_frame_was_read(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(cv2, "VideoCapture", SlowCamera)
    monkeypatch.setattr(cv2, "imshow", lambda *args: pytest.fail("a window was asked for"))
    monkeypatch.setattr(SlowCamera, "frames", [render_eye(5, i, (100, 160), style=EASY)[0] for i in range(6)])
    name = unique()
    args = ["--checkpoint", str(PRETRAINED_ONNX), "--input", "0", "--output", str(tmp_path), "--lsl", name]
    code, info, samples, stamps = stream_from_the_command_line(args, name, 6)
    assert code == 0 and "no display, streaming without a window" in capsys.readouterr().out
    assert info.source_id().endswith(":camera0") and info.nominal_srate() == 0
    assert len(samples) >= 3 and (np.diff(stamps) >= CAMERA_GAP_S - 0.01).all()
    blink = samples[:, -1] == 1  # the pupil's channels are NaN on blink frames, and only there
    assert np.isnan(samples[blink, :3]).all() and np.isfinite(samples[~blink, :3]).all() and (~blink).any()
    assert stamps[-1] <= pylsl.local_clock()  # when read, not a time to come
