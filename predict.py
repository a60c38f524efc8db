"""Track the pupil in an image, a folder of images, a video or a camera with a trained model.

    python predict.py --input frames/ --output out/                      # the shipped pretrained model
    python predict.py --checkpoint best.onnx --input frames/ --output out/
    python predict.py --checkpoint best.pt --input eye.mp4 --output out/ --masks
    python predict.py --checkpoint best.onnx --input 0                   # camera 0, live view

--checkpoint is a `.onnx` export or a `.pt` checkpoint (default: the pretrained model in
pretrained/; --model, its old name, still works for one release and says so on stderr). Frames of
any size and shape are fitted into its input size without stretching (`data.fit_image`) and
preprocessed as stored in the model; results are mapped back onto the frame's own pixels.
Written to --output:
    pupil.csv            one row per frame: frame (file name or video frame index), pupil_found,
                         centre_x, centre_y, axis_major, axis_minor, angle, area_px, mean_prob
                         (see inference.pupil_geometry; empty numbers when no pupil is found)
    masks/<name>.png     255 = pupil (images; video frames with --masks); <name> is the file's
                         stem, or its full name where two inputs share a stem (a.png -> a.png.png)
    overlays/<name>.png  the frame painted (`gallery.paint`): pupil tinted, its ellipse and centre
    overlay.mp4          the same for a video (mp4v; overlay.avi with MJPG where mp4v is missing)
A camera shows the overlay and frames/s in a window (q or Esc stops) and writes pupil.csv only.
An unreadable image in a folder is named on stderr and skipped, and the failures are counted; a
video that ends before the frame count its header announces (truncated) gets a warning there.
Exit status 1 when nothing could be processed (bad model or input, every image unreadable), else 0.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cli import (
    add_checkpoint_argument,
    add_settings,
    build,
    deprecated_alias,
    flags,
    fraction_argument,
    given,
    positive_int_argument,
    size_argument,
)
from config import PreprocessConfig
from data import DataError, read_image
from data.folders import IMAGE_SUFFIXES, list_images, output_names, write_image
from gallery import ELLIPSE_COLOUR, FONT, paint
from inference import (
    PUPIL_THRESHOLD,
    MissingMetadataError,
    Predictor,
    load_predictor,
    model_file,
    pupil_geometry,
)

CSV_COLUMNS = (
    "frame", "pupil_found", "centre_x", "centre_y", "axis_major", "axis_minor", "angle", "area_px",
    "mean_prob",
)  # fmt: skip
Frame = tuple[str, str, np.ndarray]  # (frame: file name or video index, output name, grey image)
PREPROCESS_FLAGS = flags(PreprocessConfig)  # --gamma, --clahe-clip, --clahe-tiles, --mean, --std
MISSING_METADATA_HINT = (
    f"; pass the preprocessing it was trained with ({', '.join(f.name for f in PREPROCESS_FLAGS)}; any "
    "one given makes the rest take their defaults) and --img-size HxW if its input size is dynamic"
)


class InputError(ValueError):
    """An input that cannot be used at all; the message names it."""


@dataclass
class PredictSummary:
    """What a run did, as `predict` and `live_view` return it; str() is the line main prints."""

    frames: int  # frames processed
    failed: int  # images that could not be read
    seconds: float  # wall time, reading and writing included
    model_seconds: float  # resizing, preprocessing and the model

    def __str__(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else math.inf
        model_rate = self.frames / self.model_seconds if self.model_seconds > 0 else math.inf
        return (
            f"{self.frames} frames in {self.seconds:.2f} s: {rate:.1f} frames/s "
            f"({model_rate:.1f} frames/s for preprocessing and model alone)"
        )


class Results:
    """One run's outputs: pupil.csv, and optionally mask PNGs, overlay PNGs or, given the frame rate
    `video_fps`, an overlay video (mp4v in .mp4, else MJPG in .avi; at the first frame's size);
    counts the frames and the time spent in the model."""

    def __init__(
        self, output: Path, *, masks: bool, overlays: bool, threshold: float, video_fps: float | None = None
    ) -> None:
        self.output, self.masks, self.overlays, self.threshold = output, masks, overlays, threshold
        self.video_fps, self.video = video_fps, None
        self.frames, self.model_seconds, self.start = 0, 0.0, time.perf_counter()
        output.mkdir(parents=True, exist_ok=True)
        for folder, wanted in (("masks", masks), ("overlays", overlays)):
            if wanted:
                (output / folder).mkdir(exist_ok=True)

    def __enter__(self) -> Results:
        self._file = open(self.output / "pupil.csv", "w", newline="")  # noqa: SIM115 (closed in __exit__)
        self._rows = csv.writer(self._file)
        self._rows.writerow(CSV_COLUMNS)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()
        if self.video is not None:
            self.video.release()

    def _write_video(self, overlay: np.ndarray) -> None:
        if self.video is None:
            size = (overlay.shape[1], overlay.shape[0])
            for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
                path = str(self.output / f"overlay{suffix}")
                self.video = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), self.video_fps, size)
                if self.video.isOpened():
                    break
            else:
                raise InputError(f"{self.output}: OpenCV can write neither mp4v nor MJPG video here")
        self.video.write(overlay)

    def add(self, frame: Frame, prob: np.ndarray) -> np.ndarray:
        """Record one frame's (H, W) pupil probability; returns its overlay."""
        name, stem, image = frame
        self.frames += 1
        mask = prob > self.threshold
        geometry = pupil_geometry(mask, prob)
        numbers = ("" if math.isnan(v) else round(v, 4) for v in (geometry[k] for k in CSV_COLUMNS[2:]))
        self._rows.writerow([name, geometry["found"], *numbers])
        overlay = paint(image, pred=mask, geometry=geometry)
        if self.masks:
            write_image(self.output / "masks" / f"{stem}.png", mask.astype(np.uint8) * 255)
        if self.overlays:
            write_image(self.output / "overlays" / f"{stem}.png", overlay)
        if self.video_fps:
            self._write_video(overlay)
        return overlay

    def run(self, predictor: Predictor, batch: list[Frame], tta: bool) -> list[np.ndarray]:
        """Run `predictor` on the frames as one batch and record each; returns their overlays."""
        tick = time.perf_counter()
        probs = predictor.probabilities([image for *_, image in batch], tta=tta, batch_size=len(batch))
        self.model_seconds += time.perf_counter() - tick
        return [self.add(item, prob) for item, prob in zip(batch, probs, strict=True)]

    def summary(self, failed: int = 0) -> PredictSummary:
        return PredictSummary(self.frames, failed, time.perf_counter() - self.start, self.model_seconds)


def image_files(path: Path) -> list[Path]:
    """The image itself, or the images directly inside a folder, sorted by name."""
    files = [path] if path.is_file() else list_images(path)
    if not files:
        raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def read_images(files: list[Path], failures: list[Path]) -> Iterator[Frame]:
    """(file name, output name, grey frame) per readable file; the others are named on stderr and listed."""
    for path, name in zip(files, output_names(files), strict=True):
        try:
            yield path.name, name, read_image(path)
        except DataError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failures.append(path)


def read_video(capture: cv2.VideoCapture, source: object = "video") -> Iterator[Frame]:
    """(frame index, zero-padded index, grey frame) until the video ends; a warning on stderr when
    that is before the frame count its header announces (a truncated file)."""
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))  # 0 or -1 when unknown (a camera)
    for index in itertools.count():
        ok, frame = capture.read()
        if not ok:
            if 0 < index < announced:
                read = f"read {index} of the {announced} frames the header announces"
                print(f"warning: {source}: {read}; the file may be truncated", file=sys.stderr)
            return
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        yield str(index), f"{index:06d}", grey


def predict(
    predictor: Predictor,
    source: str | Path,
    output: str | Path,
    *,
    threshold: float = PUPIL_THRESHOLD,
    tta: bool = False,
    batch_size: int = 8,
    video_masks: bool = False,
) -> PredictSummary:
    """Run `predictor` on an image, a folder of images or a video file and write the results.

    Raises InputError when the input cannot be opened or none of its frames can be read.
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    failures: list[Path] = []
    capture = None
    if source.is_file() and source.suffix.lower() not in IMAGE_SUFFIXES:
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise InputError(f"{source}: cannot open as a video (not a video file OpenCV can decode)")
        frames = read_video(capture, source)
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        results = Results(output, masks=video_masks, overlays=False, threshold=threshold, video_fps=fps)
    else:
        frames = read_images(image_files(source), failures)
        results = Results(output, masks=True, overlays=True, threshold=threshold)

    try:
        with results:
            while batch := list(itertools.islice(frames, batch_size)):
                results.run(predictor, batch, tta=tta)
    finally:
        if capture is not None:
            capture.release()
    if results.frames == 0 and capture is not None:
        raise InputError(f"{source}: opened as a video, but no frame could be decoded")
    if results.frames == 0:
        raise InputError(f"{source}: none of its {len(failures)} images could be read")
    return results.summary(len(failures))


def live_view(
    predictor: Predictor, camera: int, output: Path, *, threshold: float = PUPIL_THRESHOLD
) -> PredictSummary:
    """Show camera `camera` with the pupil overlay and frames/s until q or Esc; pupil.csv in `output`."""
    unix = sys.platform.startswith(("linux", "freebsd", "openbsd"))  # macOS and Windows have a display
    if unix and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):  # X11, Wayland
        raise InputError(
            f"camera {camera}: a live view needs a display (DISPLAY is not set); record a video instead"
        )
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise InputError(f"camera {camera}: cannot be opened")
    fps = 0.0
    try:
        with Results(output, masks=False, overlays=False, threshold=threshold) as results:
            for item in read_video(capture):
                tick = time.perf_counter()
                overlay = results.run(predictor, [item], tta=False)[0]
                fps = 0.9 * fps + 0.1 / max(time.perf_counter() - tick, 1e-6)  # smoothed over ~10 frames
                cv2.putText(overlay, f"{fps:.0f} fps", (10, 30), FONT, 1.0, ELLIPSE_COLOUR, 2)
                cv2.imshow("pupil (q or Esc to stop)", overlay)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    except cv2.error as exc:  # an OpenCV build without GUI support
        reason = str(exc).strip().splitlines()[-1]
        raise InputError(f"camera {camera}: cannot show a window ({reason})") from None
    finally:
        capture.release()
        cv2.destroyAllWindows()
    return results.summary()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Segment the pupil and fit its ellipse in images, a folder, a video or a camera."
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
        "--threshold",
        type=fraction_argument,
        default=PUPIL_THRESHOLD,
        help="pupil probability (default: %(default)s)",
    )
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored frame")
    parser.add_argument(
        "--batch-size", type=positive_int_argument, default=8, help="frames per batch (default: %(default)s)"
    )
    parser.add_argument("--masks", action="store_true", help="also write a mask PNG per video frame")
    legacy = parser.add_argument_group(
        "ONNX files without this project's metadata",
        "the preprocessing the model was trained with; any one given makes the rest take their defaults",
    )
    legacy.add_argument(
        "--img-size", type=size_argument, metavar="HxW", help="input (default: the file's static input shape)"
    )
    add_settings(legacy, PreprocessConfig)  # PREPROCESS_FLAGS
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = given(args, PREPROCESS_FLAGS)
    try:
        preprocess = build(PreprocessConfig, values, PREPROCESS_FLAGS) if values else None
    except ValueError as exc:  # out of bounds: a usage error like a malformed number
        parser.error(str(exc))
    try:
        predictor = load_predictor(args.checkpoint, img_size=args.img_size, preprocess_config=preprocess)
        if args.input.isdigit() and not Path(args.input).exists():
            summary = live_view(predictor, int(args.input), args.output, threshold=args.threshold)
        else:
            summary = predict(
                predictor,
                args.input,
                args.output,
                threshold=args.threshold,
                tta=args.tta,
                batch_size=args.batch_size,
                video_masks=args.masks,
            )
    except (ValueError, OSError) as exc:  # CheckpointError, ModelFileError, InputError; unwritable output
        hint = MISSING_METADATA_HINT if isinstance(exc, MissingMetadataError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    if summary.failed:
        total = summary.frames + summary.failed
        print(f"{summary.failed} of {total} images could not be read", file=sys.stderr)
    print(f"{args.checkpoint.name} ({predictor.backend}): {summary}; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
