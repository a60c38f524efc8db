"""benchmark.py's camera-rate section: predict.py's frames/s end to end on a small eye-camera
recording, where the time goes per stage, and frame by frame on one thread beside Pupil Labs' 2D
detector (`pupil_detectors.Detector2D`, Pupil Capture's classical ellipse fitter) on the same frames.

    python benchmark.py --only camera-rate --recording eye0.mp4    # or a Pupil Core recording folder
    section = camera_rate(Path("eye0.mp4"), ("auto", "native"))    # without a recording: synthetic eyes

The shipped model (pretrained/) runs as predict.py runs it (all threads, no spinning, batches of
BATCH, overlay off) at each --img-size, end to end the median of a few runs interleaved across the
sizes; the stages are timed each alone, one after another, on the same frames. What the figures
mean and how they print: reports/benchmark.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from config import PupillometryConfig
from config.flags import argument_type, run_size_argument
from data.synthetic import write_sequence
from inference import (
    AUTO,
    NATIVE,
    PUPIL_THRESHOLD,
    Predictor,
    RunSize,
    load_predictor,
    model_file,
    prepare_batch,
    pupil_probability,
)
from pipeline.pupil_core import find_recording
from pipeline.recording import Recording
from pipeline.run import predict, video_fps
from pipeline.streams import Frame, InputError, batches, read_video

BATCH = 8  # predict.py's default --batch-size
MAX_FRAMES = 5_000  # a recording's first frames at most: the stages hold them all decoded
SYNTHETIC_SIZE, SYNTHETIC_FPS = (192, 192), 120.0  # (H, W) of a Pupil Core eye camera, and a rate it runs at
WARM_UP_FRAMES = 2 * BATCH  # a short untimed run first: matplotlib loads, onnxruntime's first runs allocate
PEERS_HINT = "pip install -r requirements-peers.txt"
DEFAULT_SIZES: tuple[RunSize, ...] = (AUTO, NATIVE)


def add_camera_rate_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's flags: --recording and --img-sizes."""
    parser.add_argument(
        "--recording",
        type=Path,
        help="camera rate: a video or a Pupil Core recording folder (default: synthetic 192x192 eyes)",
    )
    parser.add_argument(
        "--img-sizes",
        type=argument_type(run_sizes),
        default=DEFAULT_SIZES,
        help="camera rate: comma-separated predict.py --img-size values, auto, native or HxW "
        "(default: auto,native)",
    )


def run_sizes(text: str) -> tuple[RunSize, ...]:
    """--img-sizes: one or more of auto, native, HxW, comma-separated; a ValueError names a bad one."""
    sizes = tuple(run_size_argument(size) for size in text.split(",") if size.strip())
    if not sizes:
        raise ValueError(f"--img-sizes {text!r}: give auto, native or HxW, comma-separated")
    return sizes


@dataclass(frozen=True)
class Clip:
    """One eye video and its frames' times in seconds (a Pupil Core recording's own, else frame i
    at i / its rate), MAX_FRAMES at most: predict stops where they do."""

    video: Path
    times: np.ndarray

    @property
    def fps(self) -> float:
        return 1.0 / float(np.median(np.diff(self.times)))


def recording_clip(path: Path) -> Clip:
    """--recording: a video file, or a Pupil Core recording folder (its first eye); InputError
    (a ValueError) naming what cannot be used."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        recording = find_recording(path)
        if recording is None:
            raise InputError(
                f"{path}: neither a video nor a Pupil Core recording (eye0.mp4 with its timestamps)"
            )
        eye = recording.eyes[0]
        return Clip(eye.video, (eye.timestamps - recording.start)[:MAX_FRAMES])
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot open as a video (not a video file OpenCV can decode)")
        return Clip(path, np.arange(MAX_FRAMES) / video_fps(capture, path))
    finally:
        capture.release()


def decode(clip: Clip) -> list[Frame]:
    """The clip's frames, grey, as predict reads them (`pipeline.streams.read_video`)."""
    capture = cv2.VideoCapture(str(clip.video))
    try:
        return list(itertools.islice(read_video(capture, clip.video), len(clip.times)))
    finally:
        capture.release()


@contextlib.contextmanager
def clock(seconds: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall-clock seconds spent inside to seconds[stage]."""
    start = time.perf_counter()
    yield
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def end_to_end(predictor: Predictor, clip: Clip, output: Path) -> dict[str, float]:
    """predict.predict on the clip with the overlay off: frames/s of wall-clock time, and the
    process's CPU ms per frame (all its threads')."""
    start, cpu = time.perf_counter(), time.process_time()
    summary = predict(predictor, clip.video, output, batch_size=BATCH, overlay=False, timestamps=clip.times)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"frames_per_s": summary.frames / seconds, "cpu_ms_per_frame": 1000 * cpu / summary.frames}


def stage_seconds(predictor: Predictor, frames: list[Frame], clip: Clip, output: Path) -> dict[str, float]:
    """Seconds of each stage after decoding over all `frames`, in batches, each alone: fitting and
    preprocessing, then the model (`Predictor.model_probabilities`, split in two to tell them
    apart), back onto the frame with ellipse, confidence and mask (`Recording.record`), the time
    series and its files (`Recording.finish`)."""
    recording = Recording(output, PupillometryConfig(), threshold=PUPIL_THRESHOLD)
    recording.timestamps = clip.times
    seconds: dict[str, float] = {}
    for batch in batches(frames, BATCH):
        images = [image for *_, image in batch]
        with clock(seconds, "preprocess"):
            inputs = prepare_batch(
                images, predictor.run_size, predictor.preprocess_config, predictor.img_size
            )
        with clock(seconds, "model"):
            prob = pupil_probability(predictor.logits(inputs))
        with clock(seconds, "measure"):
            recording.record(predictor, batch, prob)
    with clock(seconds, "write"):
        recording.finish(clip.fps)
    return seconds


Detector = tuple[str, Callable[[Frame], object]]  # its label; a frame in, its ellipse and confidence out


def pupil_labs_2d() -> Detector:
    """Pupil Labs' 2D detector with its default settings; ImportError without pupil-detectors."""
    import pupil_detectors

    detector = pupil_detectors.Detector2D()
    return f"Pupil Labs 2D (pupil-detectors {pupil_detectors.__version__})", lambda f: detector.detect(f[2])


def ours(size: RunSize, recording: Recording) -> tuple[str, Detector]:
    """The shipped model at `size` on one onnxruntime thread, a frame as predict.py runs a batch
    (`Recording.record`, pupil.csv's row kept in `recording`), and its name: ours_<size>."""
    predictor = load_predictor(model_file("pretrained"), threads=1).use_size(size)

    def detect(frame: Frame) -> None:
        recording.record(predictor, [frame], predictor.model_probabilities([frame[2]]))

    label = f"ours, --img-size {predictor.size_name} ({predictor.backend})"
    return f"ours_{predictor.size_name}", (label, detect)


OPENCV_THREADS = "OPENCV_FOR_THREADS_NUM"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """OpenCV on one thread inside: cv2's, restored after, and the copy pupil-detectors bundles,
    which reads OPENCV_THREADS when its thread pool starts (at its first detection: inside);
    onnxruntime's threads are set as a session opens."""
    threads, before = cv2.getNumThreads(), os.environ.get(OPENCV_THREADS)  # cv2's read before it is set
    cv2.setNumThreads(1)
    os.environ[OPENCV_THREADS] = "1"
    try:
        yield
    finally:
        cv2.setNumThreads(threads)
        if before is None:
            del os.environ[OPENCV_THREADS]
        else:
            os.environ[OPENCV_THREADS] = before


def one_thread_rows(
    frames: list[Frame], sizes: Sequence[RunSize], output: Path
) -> tuple[list[dict], list[str]]:
    """Frame in, ellipse and confidence out, on one thread: Pupil Labs' 2D detector (a note instead
    where pupil_detectors does not import) and ours at each size, interleaved frame by frame on the
    same frames, each one's first frame run once untimed before (first runs allocate). A row per
    detector: its wall-clock and CPU ms per frame, and frames/s."""
    detectors: dict[str, Detector] = {}
    notes = []
    with one_thread(), contextlib.ExitStack() as stack:
        try:
            detectors["pupil_labs_2d"] = pupil_labs_2d()
        except ImportError as exc:
            notes.append(f"Pupil Labs 2D not run: {exc} ({PEERS_HINT})")
        for index, size in enumerate(sizes):
            config = PupillometryConfig()
            recording = stack.enter_context(Recording(output / str(index), config, threshold=PUPIL_THRESHOLD))
            name, detector = ours(size, recording)
            detectors[name] = detector
        seconds = {name: np.zeros(2) for name in detectors}  # wall-clock, CPU
        for index, frame in enumerate(frames):
            for name, (_, detect) in detectors.items():
                if index == 0:
                    detect(frame)
                tick = np.array([time.perf_counter(), time.process_time()])
                detect(frame)
                seconds[name] += np.array([time.perf_counter(), time.process_time()]) - tick
    n = len(frames)
    rows = [
        {"name": name, "label": label, "ms_per_frame": 1000 * seconds[name][0] / n,
         "cpu_ms_per_frame": 1000 * seconds[name][1] / n, "frames_per_s": n / seconds[name][0]}
        for name, (label, _) in detectors.items()
    ]  # fmt: skip
    return rows, notes


def camera_rate(
    recording: Path | None,
    sizes: Sequence[RunSize] = DEFAULT_SIZES,
    *,
    reps: int = 1,
    synthetic_frames: int = 1_200,
    log: Callable[[str], None] | None = None,
) -> dict:
    """The section's figures (see the module docstring) on `recording` (`recording_clip`), or on a
    synthetic SYNTHETIC_SIZE recording of `synthetic_frames` frames in a temporary folder; end to
    end, the median of `reps` runs at each size, interleaved."""
    log = log or (lambda _: None)
    predictor = load_predictor(model_file("pretrained"), spin=False)  # as predict.py loads it
    names = [predictor.use_size(size).size_name for size in sizes]  # one it cannot run fails now
    with tempfile.TemporaryDirectory() as workdir:
        work, source = Path(workdir), recording
        if source is None:
            log(f"camera rate: writing a synthetic recording of {synthetic_frames} frames...")
            written = write_sequence(work / "eyes", synthetic_frames, size=SYNTHETIC_SIZE, fps=SYNTHETIC_FPS)
            source = written / "eye.mp4"
        clip = recording_clip(source)
        log(f"camera rate: decoding {clip.video.name}...")
        seconds: dict[str, float] = {}
        with clock(seconds, "decode"):
            frames = decode(clip)
        if len(frames) < 2:
            raise InputError(f"{clip.video}: {len(frames)} frames decoded; the camera rate needs two or more")
        # untimed: a short run first (imports, threads), and the model's first run at each size
        end_to_end(predictor, dataclasses.replace(clip, times=clip.times[:WARM_UP_FRAMES]), work / "warm-up")
        for size in sizes:
            predictor.use_size(size).model_probabilities([image for *_, image in frames[:BATCH]])
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for rep in range(reps):
            log(f"camera rate: predict end to end at each --img-size, repetition {rep + 1} of {reps}...")
            for size, name in zip(sizes, names, strict=True):
                runs[name].append(end_to_end(predictor.use_size(size), clip, work / "end-to-end"))
        figures = {}
        for size, name in zip(sizes, names, strict=True):
            log(f"camera rate, --img-size {name}: each stage alone...")
            stages = seconds | stage_seconds(predictor.use_size(size), frames, clip, work / "stages")
            figures[name] = {
                "frames_per_s": statistics.median(run["frames_per_s"] for run in runs[name]),
                "cpu_ms_per_frame": statistics.median(run["cpu_ms_per_frame"] for run in runs[name]),
                "frames_per_s_runs": [run["frames_per_s"] for run in runs[name]],
                "input_size": list(predictor.input_size(frames[0][2].shape)),
                "stage_ms": {stage: 1000 * s / len(frames) for stage, s in stages.items()},
            }
        log("camera rate: one thread, frame by frame, beside Pupil Labs' 2D detector...")
        rows, notes = one_thread_rows(frames, sizes, work / "one-thread")
    if len(frames) == MAX_FRAMES:
        notes.append(f"the recording's first {MAX_FRAMES:,} frames only: the stages hold them all decoded")
    return {
        "recording": str(clip.video) if recording else "synthetic eyes (data.synthetic.write_sequence)",
        "frames": len(frames),
        "frame_size": list(frames[0][2].shape),
        "fps": clip.fps,
        "model": f"{predictor.source.name} ({predictor.backend})",
        "batch": BATCH,
        "sizes": figures,
        "one_thread": rows,
        "notes": notes,
    }
