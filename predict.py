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
own pixels. The mask is the pupil's blob alone (`pupillometry.geometry.pupil_mask`: a stray glint cluster or
dark iris patch beside it is dropped), or with --raw-mask every pixel above --threshold. A video,
or a folder in name order, is a recording: frame i is at i / fps seconds (--fps; default: a
video's own frame rate, 30 for a folder; a folder's images in natural name order, frame_9 before
frame_10). Written to --output:
    pupil.csv            a row per frame: frame (file name or video frame index), time_s,
                         pupil_found, confidence (0-1, `pupillometry.confidence`), blink (eye
                         closed or pupil lost), the ellipse's centre_x, centre_y, axis_major (the
                         diameter), axis_minor, angle, area_px, mean_prob (`pupillometry.geometry`),
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
    overlays/<name>.png  the frame painted (`reports.gallery.paint`): pupil tinted, its ellipse and centre
    overlay.mp4          the same for a video (mp4v; overlay.avi with MJPG where mp4v is missing);
                         --no-overlay writes neither overlays nor the video
A Pupil Core recording folder (eye0.mp4 / eye1.mp4 with eye<id>_timestamps.npy) gives each eye's
files in --output/eye<id>, timed by its timestamps, and Pupil Player's pupil_positions.csv and
blinks.csv of both eyes in --output/pupil_player (`pipeline.pupil_core`); a Neon recording
folder, its eye video split into its two eyes, the same (`pipeline.neon`). A folder that holds
no images but videos and / or such recordings is a batch: each into --output/<its name>,
one progress bar, --output/recordings.csv summing them up; a re-run skips those finished.
--lsl [NAME] also sends each frame's measurement, stamped with its capture time, as a Lab Streaming
Layer stream (`pipeline.lsl`; --realtime replays a file at its own pace; a camera then needs no display).
--save-dataset DIR writes the frames at or above --save-confidence with their predicted masks in
the mask-folder layout (DIR/train, the last --val-fraction of them in DIR/validation), and
DIR/confidence.csv; correct the masks, then `train_efficientvit.py --init-from pretrained
--data-dir DIR`. Reading, the model and writing overlap (`pipeline.streams`). A camera shows the overlay
and frames/s in a window (q or Esc stops), a frame at a time, and writes pupil.csv,
blinks.csv, timeseries.png and summary.json, its time series filtered causally. An unreadable
image in a folder is named on stderr and skipped, and the failures are counted; a video that ends
before the frame count its header announces (truncated) gets a warning there. Exit status 2 for a
bad flag, 1 when the run fails (bad model or input, every image unreadable, an unwritable output),
else 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import cv2

from config import PreprocessConfig, PupillometryConfig
from config.flags import (
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
from core.runfolder import hold_results, stop_on_signals
from data.folders import IMAGE_SUFFIXES
from inference import PUPIL_THRESHOLD, MissingMetadataError, Predictor, load_predictor, model_file
from pipeline.batch import batch_inputs, predict_many, predict_recording
from pipeline.lsl import STREAM_NAME, LslOutlet, source_id
from pipeline.neon import find_eye_recording
from pipeline.pupil_core import PLAYER_EXPORT
from pipeline.recording import PredictSummary, SavedDataset
from pipeline.run import FOLDER_FPS, header_fps, live_view, predict
from pipeline.streams import InputError

MAX_CAMERA = 1000  # camera indices run from 0
PREPROCESS_FLAGS = flags(PreprocessConfig)  # --gamma, --clahe-clip, --clahe-tiles, --mean, --std
PUPILLOMETRY_FLAGS = flags(PupillometryConfig)  # --fps, --blink-share, ..., --mm-per-px
MISSING_METADATA_HINT = (
    f"; pass the preprocessing it was trained with ({', '.join(f.name for f in PREPROCESS_FLAGS)}; any "
    "one given makes the rest take their defaults) and --img-size HxW if its input size is dynamic"
)


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
        fps = header_fps(capture)
        capture.release()
        return fps
    return FOLDER_FPS


def run(
    args: argparse.Namespace, preprocess: PreprocessConfig | None, config: PupillometryConfig
) -> dict[str, PredictSummary]:
    """What the parsed command line asks for, in an --output it holds (`core.runfolder.hold_results`):
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
