"""Track the pupil in an image, a folder of images, a video or a camera with a trained model, and
turn what it finds into measurements over time.

    python predict.py --input eye.mp4 --output out/                      # the shipped pretrained model
    python predict.py --checkpoint best.onnx --input frames/ --output out/ --fps 120 --mm-per-px 0.05
    python predict.py --input eye.mp4 --output out/ --save-dataset my_eyes/  # masks to correct
    python predict.py --checkpoint best.onnx --input 0                   # camera 0, live view
    python predict.py --input recordings/000/ --output out/              # a Pupil Core recording
    python predict.py --input 0 --lsl                                    # camera 0 to Lab Streaming Layer

--checkpoint is a `.onnx` export or a `.pt` checkpoint (default: the pretrained model in
pretrained/; --model, its old name, still works for one release and says so on stderr). Frames run
in their own shape (a checkpoint or a cpu-profile export takes any size: padded to a multiple of
16; --img-size auto, the default, at the scale the model was trained at; native at their own
pixels), or fitted into an HxW without stretching (`data.fit_image`; a file of a fixed size, its
own), preprocessed as stored in the model; results are mapped back onto the frame's
own pixels. The mask is the pupil's blob alone (`inference.pupil_mask`: a stray glint cluster or
dark iris patch beside it is dropped), or with --raw-mask every pixel above --threshold. A video,
or a folder in name order, is a recording: frame i is at i / fps seconds (--fps; default: a
video's own frame rate, 30 for a folder; a folder's images in natural name order, frame_9 before
frame_10). Written to --output:
    pupil.csv            a row per frame: frame (file name or video frame index), time_s,
                         pupil_found, confidence (0-1, `pupillometry.confidence`), blink (eye
                         closed or pupil lost), the ellipse's centre_x, centre_y, axis_major (the
                         diameter), axis_minor, angle, area_px, mean_prob (`inference.pupil_geometry`),
                         centre_x_filtered, centre_y_filtered, diameter_filtered_px (One Euro, empty
                         on blink frames; not with --no-smooth), diameter_interpolated_px (filled
                         across blinks), and with --mm-per-px (or an --mm-from-iris estimate) the
                         diameters in mm: diameter_mm, diameter_filtered_mm,
                         diameter_interpolated_mm; empty: no value
    blinks.csv           a row per blink: start_frame, end_frame (0-based rows of pupil.csv, the
                         first and the last blink frame), start_s, end_s, duration_s
    timeseries.png       diameter and centre over time, blinks shaded, low-confidence frames marked
    summary.json         what the terminal shows, and the mm scale and where it came from
                         (these three for more than one frame; `pupillometry.series` says how)
    masks/<name>.png     255 = pupil (images; video frames with --masks); <name> is the file's
                         stem, or its full name where two inputs share a stem (a.png -> a.png.png)
    overlays/<name>.png  the frame painted (`gallery.paint`): pupil tinted, its ellipse and centre
    overlay.mp4          the same for a video (mp4v; overlay.avi with MJPG where mp4v is missing);
                         --no-overlay writes neither overlays nor the video
A Pupil Core recording folder (eye0.mp4 / eye1.mp4 with eye<id>_timestamps.npy) gives each eye's
files in --output/eye<id>, timed by its timestamps, and Pupil Player's pupil_positions.csv and
blinks.csv of both eyes in --output/pupil_player (`pupillometry.pupil_core`); a Neon recording
folder, its eye video split into its two eyes, the same (`pupillometry.neon`). A folder that holds
no images but videos and / or such recordings is a batch: each into --output/<its name>,
one progress bar, --output/recordings.csv summing them up; a re-run skips those finished.
--lsl [NAME] also sends each frame's measurement, stamped with its capture time, as a Lab Streaming
Layer stream (`lsl`; --realtime replays a file at its own pace; a camera then needs no display).
--save-dataset DIR writes the frames at or above --save-confidence with their predicted masks in
the mask-folder layout (DIR/train, the last --val-fraction of them in DIR/validation), and
DIR/confidence.csv; correct the masks, then `train_efficientvit.py --init-from pretrained
--data-dir DIR`. Reading, the model and writing overlap (`streams`). A camera shows the overlay
and frames/s in a window (q or Esc stops), a frame at a time, and writes pupil.csv,
blinks.csv, timeseries.png and summary.json, its time series filtered causally. An unreadable
image in a folder is named on stderr and skipped, and the failures are counted; a video that ends
before the frame count its header announces (truncated) gets a warning there. Exit status 2 for a
bad flag, 1 when the run fails (bad model or input, every image unreadable, an unwritable output),
else 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cli import (
    add_checkpoint_argument,
    add_settings,
    add_size_arguments,
    build,
    deprecated_alias,
    flags,
    fraction_argument,
    given,
    positive_int_argument,
    share_argument,
)
from config import PreprocessConfig, PupillometryConfig
from data.folders import IMAGE_SUFFIXES, list_images, natural_key, new_folder, write_csv
from gallery import ELLIPSE_COLOUR, FONT, paint
from inference import PUPIL_THRESHOLD, MissingMetadataError, Predictor, load_predictor, model_file
from lsl import STREAM_NAME, LslOutlet, source_id
from pupillometry.neon import find_eye_recording
from pupillometry.pupil_core import PLAYER_EXPORT, PupilCoreRecording, write_player_exports
from pupillometry.recording import PredictSummary, Recording, SavedDataset
from runfolder import hold_results, stop_on_signals, stop_signal
from streams import InputError, batches, image_files, read_ahead, read_images, read_video

FOLDER_FPS = 30.0  # an image folder's frame rate unless --fps says otherwise
MAX_FPS = 10_000  # a video header's frame rate above this is a broken header, not a camera
MAX_CAMERA = 1000  # camera indices run from 0
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mjpeg", ".webm")  # a batch folder's videos
PREPROCESS_FLAGS = flags(PreprocessConfig)  # --gamma, --clahe-clip, --clahe-tiles, --mean, --std
PUPILLOMETRY_FLAGS = flags(PupillometryConfig)  # --fps, --blink-share, ..., --mm-per-px
MISSING_METADATA_HINT = (
    f"; pass the preprocessing it was trained with ({', '.join(f.name for f in PREPROCESS_FLAGS)}; any "
    "one given makes the rest take their defaults) and --img-size HxW if its input size is dynamic"
)


def video_fps(capture: cv2.VideoCapture, source: Path) -> float:
    """A video's frame rate from its header; FOLDER_FPS, with a warning, where the header has none
    or an implausible one (--fps overrides both)."""
    header = capture.get(cv2.CAP_PROP_FPS)
    if math.isfinite(header) and 1 <= header <= MAX_FPS:
        return header
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
                if stop_signal():  # Ctrl-C or SIGTERM (`runfolder.stop_on_signals`): write what was measured
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Segment the pupil and fit its ellipse in images, a folder, a video or a camera; "
        "for a recording, also blinks, a filtered diameter track and a plot."
    )
    checkpoint = add_checkpoint_argument(
        parser,
        convert=model_file,
        default="pretrained",
        help="a .pt checkpoint or a .onnx export, or pretrained: the model in pretrained/",
    )
    deprecated_alias(parser, "--model", checkpoint)  # the old name, for one release
    parser.add_argument("--input", required=True, help="image, folder of images, video file or camera index")
    parser.add_argument(
        "--output", type=Path, default=Path("predictions"), help="results folder (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace another run's results in --output (default: refuse)"
    )
    parser.add_argument(
        "--threshold",
        type=fraction_argument,
        default=PUPIL_THRESHOLD,
        help="pupil probability (default: %(default)s, at which confidence was fitted)",
    )
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored frame")
    add_size_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int_argument, default=8, help="frames per batch (default: %(default)s)"
    )
    parser.add_argument("--masks", action="store_true", help="also write a mask PNG per video frame")
    parser.add_argument(
        "--no-overlay", dest="overlay", action="store_false", help="no overlay video or images (faster)"
    )
    add_settings(parser.add_argument_group("time series of a video or folder"), PupillometryConfig)
    streaming = parser.add_argument_group("live to the lab: Lab Streaming Layer (needs pylsl)")
    streaming.add_argument(
        "--lsl",
        nargs="?",
        const=STREAM_NAME,
        metavar="NAME",
        help="send each frame's diameter, centre, confidence and blink as an LSL stream (default "
        "name: %(const)s; a camera needs no display then)",
    )
    streaming.add_argument(
        "--realtime", action="store_true", help="with --lsl on a file: replay it at its own pace"
    )
    labelling = parser.add_argument_group("labelling: predictions to correct and fine-tune on")
    labelling.add_argument(
        "--save-dataset",
        type=Path,
        metavar="DIR",
        help="write frames and predicted masks to DIR (new or empty)",
    )
    labelling.add_argument(
        "--save-confidence",
        type=share_argument,
        default=0.0,
        help="save only frames at or above this confidence (default: %(default)s, all)",
    )
    labelling.add_argument(
        "--val-fraction",
        type=fraction_argument,
        default=0.2,
        help="the last share of saved frames that goes to validation/ (default: %(default)s)",
    )
    legacy = parser.add_argument_group(
        "ONNX files without this project's metadata",
        "the preprocessing the model was trained with; any one given makes the rest take their defaults",
    )
    add_settings(legacy, PreprocessConfig)  # PREPROCESS_FLAGS; --img-size HxW is its input size
    return parser


RESULTS = (  # what a run writes in --output: another run's are refused unless --overwrite
    "pupil.csv", "blinks.csv", "timeseries.png", "summary.json",
    "masks", "overlays", "overlay.mp4", "overlay.avi", "eye0", "eye1", PLAYER_EXPORT,
)  # fmt: skip


def predict_recording(
    predictor: Predictor,
    recording: PupilCoreRecording,
    output: Path,
    *,
    dataset: Path | None,
    progress: Callable[[int], object] | None = None,
    save_confidence: float = 0.0,
    val_fraction: float = 0.2,
    outlets: dict[str, LslOutlet] | None = None,
    **settings: Any,
) -> dict[str, PredictSummary]:
    """Each eye of a Pupil Core recording into output/eye<id> (`predict` with its timestamps,
    times counted from the recording's start), then Pupil Player's two exports of both eyes in
    output/PLAYER_EXPORT; `dataset`: --save-dataset, a dataset per eye in dataset/eye<id>;
    `outlets`: an LSL outlet per eye<id>. A run stopped by a signal stops after the eye in hand,
    its exports written."""
    if dataset is not None:
        new_folder(dataset, overwrite=False, flag=None)
    summaries = {}
    for eye in recording.eyes:
        name = f"eye{eye.eye_id}"
        saved = None
        if dataset is not None:
            saved = SavedDataset(dataset / name, min_confidence=save_confidence, val_fraction=val_fraction)
        summaries[name] = predict(
            predictor,
            eye.video,
            output / name,
            dataset=saved,
            timestamps=eye.timestamps - recording.start,
            progress=progress,
            live=(outlets or {}).get(name),
            columns=eye.columns,
            **settings,
        )
        if summaries[name].stopped_by:
            break
    write_player_exports(recording, output, list(summaries))
    return summaries


DONE = ".complete"  # in a recording's folder of a batch: its results are whole, a re-run skips it
RECORDINGS_COLUMNS = (
    "recording", "frames", "tracked_share", "blinks_per_minute", "median_diameter_px", "median_confidence",
)  # fmt: skip


def batch_inputs(folder: Path) -> dict[Path, PupilCoreRecording | None]:
    """The recordings a folder holds when it holds no images itself, in natural name order: its
    videos (None) and its Pupil Core recording folders (found once, here); {} for a folder of
    frames (one recording)."""
    if list_images(folder):
        return {}
    inputs: dict[Path, PupilCoreRecording | None] = {}
    for path in sorted(folder.iterdir(), key=natural_key):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            inputs[path] = None
        elif path.is_dir() and (recording := find_eye_recording(path)) is not None:
            inputs[path] = recording
    return inputs


def predict_many(
    predictor: Predictor, inputs: dict[Path, PupilCoreRecording | None], output: Path, **settings: Any
) -> dict[str, PredictSummary]:
    """Each of `inputs` (`batch_inputs`: videos, Pupil Core recordings) into output/<its name>,
    with one progress bar over all their frames; one whose folder holds DONE is skipped, so a
    batch stopped or failed part way resumes where it was. output/recordings.csv sums up every
    finished one."""
    from tqdm import tqdm

    todo = {p: recording for p, recording in inputs.items() if not (output / p.stem / DONE).exists()}
    before, first = len(inputs) - len(todo), next(iter(inputs))
    print(f"{len(inputs)} recordings in {first.parent}: {before} done before, {len(todo)} to run")
    total = sum(frame_count(p, recording) for p, recording in todo.items())
    summaries: dict[str, PredictSummary] = {}
    with tqdm(total=total, unit="frame", dynamic_ncols=True) as bar:
        for path, recording in todo.items():
            folder = output / path.stem
            shutil.rmtree(folder, ignore_errors=True)  # a run cut short before: its partial results go
            if recording is not None:
                done = predict_recording(
                    predictor, recording, folder, dataset=None, progress=bar.update, **settings
                )
                summaries |= {f"{path.stem}/{eye}": s for eye, s in done.items()}
            else:
                summaries[path.stem] = predict(predictor, path, folder, progress=bar.update, **settings)
            if any(s.stopped_by for s in summaries.values()):
                break
            (folder / DONE).touch()
    write_recordings_csv(output, inputs)
    return summaries


def frame_count(path: Path, recording: PupilCoreRecording | None) -> int:
    """A video's frames by its header, or a Pupil Core recording's by its timestamps (for progress)."""
    if recording is not None:
        return sum(len(eye.timestamps) for eye in recording.eyes)
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return max(count, 0)


def write_recordings_csv(output: Path, inputs: Iterable[Path]) -> None:
    """output/recordings.csv: a row per finished recording (per eye for a Pupil Core one), from
    the summary.json each wrote."""
    rows = []
    for path in inputs:
        folder = output / path.stem
        if not (folder / DONE).exists():
            continue
        for summary in sorted(folder.glob("summary.json")) + sorted(folder.glob("eye*/summary.json")):
            figures = json.loads(summary.read_text())
            name = path.stem if summary.parent == folder else f"{path.stem}/{summary.parent.name}"
            minutes = figures["minutes"] or math.nan
            per_minute = figures["blinks"] / minutes
            rows.append(
                {"recording": name, "frames": figures["frames"], "tracked_share": figures["tracked_share"],
                 "blinks_per_minute": per_minute, "median_diameter_px": figures["median_diameter_px"],
                 "median_confidence": figures["median_confidence"]}
            )  # fmt: skip
    write_csv(
        output / "recordings.csv",
        RECORDINGS_COLUMNS,
        [{k: math.nan if v is None else v for k, v in r.items()} for r in rows],
    )


def open_outlet(
    args: argparse.Namespace,
    config: PupillometryConfig,
    predictor: Predictor,
    *,
    rate: float | None,
    eye: str = "",
) -> LslOutlet | None:
    """--lsl's outlet for the input (an eye of it: `eye`), or None without --lsl."""
    if args.lsl is None:
        return None
    model = {"model": args.checkpoint.name, "backend": predictor.backend, "img_size": predictor.size_name}
    name = f"{args.lsl} {eye}" if eye else args.lsl
    outlet = LslOutlet(
        name, source_id(args.input, eye), config=config, rate=rate, model=model, realtime=args.realtime
    )
    pace = ", at the file's own pace" if args.realtime else ""
    print(f"streaming to LSL as {name!r} (source id {outlet.source_id}){pace}", flush=True)
    return outlet


def nominal_rate(source: Path, config: PupillometryConfig) -> float | None:
    """The frame rate an LSL stream of `source` declares: --fps, a video's own, FOLDER_FPS for
    images, None (irregular) where a video's header has no plausible one."""
    if config.fps is not None:
        return config.fps
    if source.is_file() and source.suffix.lower() not in IMAGE_SUFFIXES:
        capture = cv2.VideoCapture(str(source))
        header = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        return header if math.isfinite(header) and 1 <= header <= MAX_FPS else None
    return FOLDER_FPS


def run(
    args: argparse.Namespace, preprocess: PreprocessConfig | None, config: PupillometryConfig
) -> dict[str, PredictSummary]:
    """What the parsed command line asks for, in an --output it holds (`runfolder.hold_results`):
    a summary per input ("" for one, eye0 and eye1 for a Pupil Core recording's eyes); raises
    ValueError or OSError with a one-line message."""
    source = () if args.input.isdigit() and not Path(args.input).exists() else (Path(args.input),)
    with hold_results(args.output, RESULTS, overwrite=args.overwrite, program="predict.py", inputs=source):
        return _run(args, preprocess, config)


def _run(
    args: argparse.Namespace, preprocess: PreprocessConfig | None, config: PupillometryConfig
) -> dict[str, PredictSummary]:
    # no spinning: decoding, the model and writing overlap on their own threads (spinning: -15% frames/s)
    fixed = args.img_size if isinstance(args.img_size, tuple) else None  # a metadata-less file's input
    predictor = load_predictor(args.checkpoint, img_size=fixed, preprocess_config=preprocess, spin=False)
    predictor.use_size(args.img_size)
    size = {"auto": "each in its own shape at the model's scale", "native": "each at its own pixels"}.get(
        predictor.size_name, f"fitted into {predictor.size_name}"
    )
    recording = find_eye_recording(Path(args.input)) if Path(args.input).is_dir() else None
    folder = Path(args.input).is_dir() and recording is None
    order = ", in natural name order (frame_9 before frame_10)" if folder else ""
    print(f"{args.checkpoint.name} ({predictor.backend}) on {args.input}{order}, frames {size}", flush=True)
    settings = {
        "threshold": args.threshold, "tta": args.tta, "batch_size": args.batch_size,
        "video_masks": args.masks, "raw_mask": args.raw_mask, "config": config, "overlay": args.overlay,
    }  # fmt: skip
    many = batch_inputs(Path(args.input)) if folder else []
    if many:
        for flag, value in (("--save-dataset", args.save_dataset), ("--lsl", args.lsl)):
            if value is not None:
                raise InputError(f"{flag} takes one recording, not a folder of {len(many)}")
        return predict_many(predictor, many, args.output, **settings)
    if recording is not None:
        print(recording.describe(), flush=True)
        if args.lsl is not None and args.realtime and len(recording.eyes) > 1:
            raise InputError(
                f"{args.input}: --realtime replays one eye video at a time, and this recording has "
                f"{len(recording.eyes)}; stream it without --realtime (each sample keeps its time)"
            )
        eyes = [f"eye{eye.eye_id}" for eye in recording.eyes]
        outlets = {eye: open_outlet(args, config, predictor, rate=None, eye=eye) for eye in eyes}
        for outlet in outlets.values():  # both eyes on one clock: the recording's start is now
            if outlet is not None:
                outlet.begin(0.0)
        saving = {"save_confidence": args.save_confidence, "val_fraction": args.val_fraction}
        saving |= {"dataset": args.save_dataset, "outlets": outlets}
        return predict_recording(predictor, recording, args.output, **settings, **saving)
    dataset = None
    if args.save_dataset is not None:
        dataset = SavedDataset(
            args.save_dataset, min_confidence=args.save_confidence, val_fraction=args.val_fraction
        )
    if args.input.isdigit() and not Path(args.input).exists():
        if int(args.input) >= MAX_CAMERA:  # OpenCV takes an int32, and no machine has that many
            raise InputError(f"camera {args.input}: no such camera (an index from 0 to {MAX_CAMERA - 1})")
        # a camera runs frame by frame, timed by the clock, and writes no images
        ignored = {
            "--masks": args.masks,
            "--batch-size": args.batch_size != 8,
            "--fps": config.fps is not None,
            "--realtime": args.realtime,
        }
        if unused := [flag for flag, given in ignored.items() if given]:
            print(f"note: a camera ignores {', '.join(unused)}", file=sys.stderr)
        return {
            "": live_view(
                predictor,
                int(args.input),
                args.output,
                threshold=args.threshold,
                tta=args.tta,
                raw_mask=args.raw_mask,
                config=config,
                dataset=dataset,
                live=open_outlet(args, config, predictor, rate=None),
            )
        }
    live = open_outlet(args, config, predictor, rate=nominal_rate(Path(args.input), config))
    return {"": predict(predictor, args.input, args.output, dataset=dataset, live=live, **settings)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.realtime and args.lsl is None:
        parser.error("--realtime replays a file to an LSL stream: give --lsl too")
    values = given(args, PREPROCESS_FLAGS)
    try:
        preprocess = build(PreprocessConfig, values, PREPROCESS_FLAGS) if values else None
        config = build(PupillometryConfig, given(args, PUPILLOMETRY_FLAGS), PUPILLOMETRY_FLAGS)
    except ValueError as exc:  # out of bounds: a usage error like a malformed number
        parser.error(str(exc))
    try:
        with stop_on_signals():  # the first Ctrl-C or SIGTERM stops the run with its results written
            summaries = run(args, preprocess, config)
    except (ValueError, OSError) as exc:  # CheckpointError, ModelFileError, InputError; unwritable output
        hint = MISSING_METADATA_HINT if isinstance(exc, MissingMetadataError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # a second Ctrl-C or SIGTERM, while the first's results were written
        print(f"interrupted twice: stopped at once; {args.output} may be incomplete", file=sys.stderr)
        return 128 + signal.Signals[str(exc)] if str(exc) in signal.Signals.__members__ else 130
    for label, summary in summaries.items():
        if summary.failed:
            total = summary.frames + summary.failed
            print(f"{summary.failed} of {total} images could not be read", file=sys.stderr)
        print(f"{label}: {summary}" if label else summary)
    print(f"results in {args.output}")
    if args.save_dataset is not None:
        print(f"dataset to correct in {args.save_dataset} (confidence.csv ranks its frames)")
    if stopped := next((s for s in summaries.values() if s.stopped_by), None):
        frames = sum(s.frames for s in summaries.values())
        print(
            f"stopped by {stopped.stopped_by} after {frames} frames: their results are written, "
            'and summary.json says "complete": false',
            file=sys.stderr,
        )
        return 128 + signal.Signals[stopped.stopped_by]
    return 0


if __name__ == "__main__":
    sys.exit(main())
