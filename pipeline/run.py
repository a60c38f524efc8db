"""One recording through the model: `predict` runs an image, a folder of images or a video file
(reading, the model and the rest overlapping on threads, `pipeline.streams`) into a `Recording`'s
files; `live_view` runs a camera frame by frame with a window (or, streaming to LSL, without one).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np

from config import PupillometryConfig
from core.runfolder import stop_signal
from data.folders import IMAGE_SUFFIXES
from inference import PUPIL_THRESHOLD, Predictor
from pipeline.lsl import LslOutlet
from pipeline.recording import PredictSummary, Recording, SavedDataset
from pipeline.streams import InputError, batches, image_files, read_ahead, read_images, read_video
from reports.gallery import ELLIPSE_COLOUR, FONT, paint

FOLDER_FPS = 30.0  # an image folder's frame rate unless --fps says otherwise


MAX_FPS = 10_000  # a video header's frame rate above this is a broken header, not a camera


def header_fps(capture: cv2.VideoCapture) -> float | None:
    """A video's frame rate from its header; None where it has none or an implausible one."""
    header = capture.get(cv2.CAP_PROP_FPS)
    return header if math.isfinite(header) and 1 <= header <= MAX_FPS else None


def video_fps(capture: cv2.VideoCapture, source: Path) -> float:
    """A video's frame rate from its header; FOLDER_FPS, with a warning, where the header has none
    or an implausible one (--fps overrides both)."""
    if (fps := header_fps(capture)) is not None:
        return fps
    header = capture.get(cv2.CAP_PROP_FPS)
    print(
        f"warning: {source}: frame rate {header} in its header; taking {FOLDER_FPS} (give --fps)",
        file=sys.stderr,
    )
    return FOLDER_FPS


def predict(
    predictor: Predictor,
    source: str | Path,
    output: str | Path,
    *,
    threshold: float = PUPIL_THRESHOLD,
    tta: bool = False,
    batch_size: int = 8,
    video_masks: bool = False,
    raw_mask: bool = False,
    config: PupillometryConfig | None = None,
    dataset: SavedDataset | None = None,
    timestamps: np.ndarray | None = None,
    overlay: bool = True,
    progress: Callable[[int], object] | None = None,
    live: LslOutlet | None = None,
    columns: tuple[int, int] | None = None,
) -> PredictSummary:
    """Run `predictor` on an image, a folder of images or a video file and write the results:
    pupil.csv, and for more than one frame blinks.csv and timeseries.png (`config`'s settings).
    Masks hold the pupil's blob alone, or with `raw_mask` every pixel above `threshold`.
    `timestamps`: a video's frames' own times in seconds (a Pupil Core recording's), which then
    set the time series' and the rate the time rules use. Without `overlay`, no overlay video or
    images; `progress(n)` is told of each batch of n frames done; `live` is sent each frame's
    measurement as it comes (`lsl`); `columns`: a video's frames cut to these (first, end) pixel
    columns (one eye of a video that holds two side by side).

    Raises InputError when the input cannot be opened or none of its frames can be read.
    """
    source, output, config = Path(source), Path(output), config or PupillometryConfig()
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    failures: list[Path] = []
    capture = None
    if source.is_file() and source.suffix.lower() not in IMAGE_SUFFIXES:
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise InputError(f"{source}: cannot open as a video (not a video file OpenCV can decode)")
        frames = read_video(capture, source)
        if columns is not None:
            first, end = columns
            frames = ((index, name, np.ascontiguousarray(grey[:, first:end])) for index, name, grey in frames)
        if timestamps is not None:  # a header's count can be an estimate: no frame without a time
            frames = itertools.islice(frames, len(timestamps))
        own = (
            1.0 / float(np.median(np.diff(timestamps)))
            if timestamps is not None and len(timestamps) > 1
            else None
        )
        fps = config.fps or own or video_fps(capture, source)
        if dataset is not None:
            # the video's name in the frames', for merging datasets; never a hidden file's leading dot
            dataset.prefix = f"{source.stem.lstrip('.') or 'video'}_"
        outputs = {"masks": video_masks, "video_fps": fps if overlay else None}
    else:
        frames = read_images(image_files(source, failures), failures)
        fps = config.fps or FOLDER_FPS
        outputs = {"masks": True, "overlays": overlay}
    try:  # the capture is released however this ends, after closing stops the threads
        recording = Recording(
            output, config, threshold=threshold, raw_mask=raw_mask, dataset=dataset, **outputs
        )
        recording.timestamps, recording.fps, recording.live = timestamps, fps, live
        # three stages on their own threads: decoding, the model, the rest (and writing, on a fourth)
        decoded = read_ahead(batches(frames, batch_size), depth=2)
        inferred = ((batch, recording.infer(predictor, batch, tta=tta)) for batch in decoded)
        with closing(decoded), recording, closing(read_ahead(inferred, depth=2)) as ahead:
            for batch, prob in ahead:
                recording.record(predictor, batch, prob)
                if progress is not None:
                    progress(len(batch))
                if stop_signal():  # Ctrl-C or SIGTERM (`core.runfolder.stop_on_signals`): write what we have
                    break
    finally:
        if capture is not None:
            capture.release()
    if len(recording.frames) == recording.unread and capture is not None:
        raise InputError(f"{source}: opened as a video, but no frame could be decoded")
    if len(recording.frames) == recording.unread:
        raise InputError(f"{source}: none of its {len(failures)} images could be read")
    stopped = stop_signal()
    return recording.finish(fps, failed=len(failures), stopped_by=stopped.name if stopped else None)


def live_view(
    predictor: Predictor,
    camera: int,
    output: Path,
    *,
    threshold: float = PUPIL_THRESHOLD,
    tta: bool = False,
    raw_mask: bool = False,
    config: PupillometryConfig | None = None,
    dataset: SavedDataset | None = None,
    live: LslOutlet | None = None,
) -> PredictSummary:
    """Show camera `camera` with the pupil overlay and frames/s until q or Esc; pupil.csv (filtered
    causally, as it could have been live), blinks.csv and timeseries.png in `output`. With `live`
    (an LSL outlet) each frame is also sent, stamped when it was read, and no display is needed:
    without one, it runs without a window until Ctrl-C.

    Raises InputError when the camera cannot be opened, shows no frame or no window can be shown.
    """
    unix = sys.platform.startswith(("linux", "freebsd", "openbsd"))  # macOS and Windows have a display
    show = not unix or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))  # X11, Wayland
    if not show and live is None:
        raise InputError(
            f"camera {camera}: a live view needs a display (DISPLAY is not set); record a video instead"
        )
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise InputError(f"camera {camera}: cannot be opened")
    if not show:
        print(f"camera {camera}: no display, streaming without a window (Ctrl-C stops)", flush=True)
    fps, start = 0.0, time.perf_counter()
    if live is not None:
        live.begin(0.0)  # the recording's time 0 is now, on LSL's clock
    recording = Recording(
        output, config or PupillometryConfig(), threshold=threshold, raw_mask=raw_mask, dataset=dataset
    )
    recording.live = live
    try:
        with recording:
            for frame in read_video(capture):
                tick = time.perf_counter()
                prob = predictor.probabilities([frame[2]], tta=tta)[0]
                mask, geometry = recording.measure(frame, prob, time_s=tick - start)
                if not show:
                    if stop_signal():
                        break
                    continue
                overlay = paint(frame[2], pred=mask, geometry=geometry)
                fps = 0.9 * fps + 0.1 / max(time.perf_counter() - tick, 1e-6)  # smoothed over ~10 frames
                cv2.putText(overlay, f"{fps:.0f} fps", (10, 30), FONT, 1.0, ELLIPSE_COLOUR, 2)
                cv2.imshow("pupil (q or Esc to stop)", overlay)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27) or stop_signal():
                    break
    except cv2.error as exc:  # an OpenCV build without GUI support
        reason = str(exc).strip().splitlines()[-1]
        raise InputError(f"camera {camera}: cannot show a window ({reason})") from None
    finally:
        capture.release()
        cv2.destroyAllWindows()
    if not recording.frames:
        raise InputError(f"camera {camera}: opened, but no frame could be read")
    span = recording.frames[-1]["time_s"] - recording.frames[0]["time_s"]
    rate = (len(recording.frames) - 1) / span if span > 0 else FOLDER_FPS
    stopped = stop_signal()
    return recording.finish(rate, causal=True, stopped_by=stopped.name if stopped else None)
