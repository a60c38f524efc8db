"""Track the pupil in an image, a folder of images, a video or a camera with a trained model.

    python predict.py --input frames/ --output out/                      # the shipped pretrained model
    python predict.py --model best.onnx --input frames/ --output out/
    python predict.py --model best.pt --input eye.mp4 --output out/ --masks
    python predict.py --model best.onnx --input 0                        # camera 0, live view

The model is a `.onnx` export or a `.pt` checkpoint; without --model, the pretrained model that
ships in pretrained/. Frames of any size and shape are fitted into its input size without
stretching (`data.fit_image`) and preprocessed as stored in the model; results are mapped back
onto the frame's own pixels.
Written to --output:
    pupil.csv            one row per frame: frame (file name or video frame index), pupil_found,
                         centre_x, centre_y, axis_major, axis_minor, angle, area_px, mean_prob
                         (see inference.pupil_geometry; empty numbers when no pupil is found)
    masks/<name>.png     255 = pupil (images; video frames with --masks); <name> is the file's
                         stem, or its full name where two inputs share a stem (a.png -> a.png.png)
    overlays/<name>.png  the frame with the pupil tinted, the fitted ellipse and centre drawn
    overlay.mp4          the same for a video (mp4v; overlay.avi with MJPG where mp4v is missing)
A camera shows the overlay and frames/s in a window (q or Esc stops) and writes pupil.csv only.
An unreadable image in a folder is named on stderr and skipped, and the failures are counted.
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from config import positive_int_argument, size_argument
from data import DataError, PreprocessConfig, read_image
from data.folders import IMAGE_SUFFIXES, list_images, write_image
from inference import MissingMetadataError, Predictor, load_predictor, model_file, pupil_geometry

CSV_COLUMNS = (
    "frame",
    "pupil_found",
    "centre_x",
    "centre_y",
    "axis_major",
    "axis_minor",
    "angle",
    "area_px",
    "mean_prob",
)
PUPIL_TINT = (0, 200, 0)  # BGR
ELLIPSE_COLOUR = (0, 255, 255)
CENTRE_COLOUR = (0, 0, 255)
PREPROCESS_FLAGS = ("gamma", "clahe_clip", "clahe_tiles", "mean", "std")


class InputError(ValueError):
    """An input that cannot be used at all; the message names it."""


@dataclass
class PredictSummary:
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


def draw_overlay(image: np.ndarray, mask: np.ndarray, geometry: dict) -> np.ndarray:
    """(H, W) uint8 frame -> (H, W, 3) BGR with the pupil tinted and its ellipse and centre drawn."""
    overlay = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    tinted = overlay.copy()
    tinted[mask] = PUPIL_TINT
    cv2.addWeighted(tinted, 0.4, overlay, 0.6, 0, dst=overlay)
    if geometry["found"]:
        thickness = max(1, round(image.shape[1] / 320))
        centre = (geometry["centre_x"], geometry["centre_y"])
        box = (centre, (geometry["axis_major"], geometry["axis_minor"]), geometry["angle"])
        cv2.ellipse(overlay, box, ELLIPSE_COLOUR, thickness, cv2.LINE_AA)
        cross = max(6, image.shape[1] // 40)
        cv2.drawMarker(
            overlay, (round(centre[0]), round(centre[1])), CENTRE_COLOUR, cv2.MARKER_CROSS, cross, thickness
        )
    return overlay


class VideoOut:
    """Overlay video: mp4v in .mp4, else MJPG in .avi; opened at the first frame's size."""

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem, self.fps, self.writer = stem, fps, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            size = (frame.shape[1], frame.shape[0])
            for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
                path = str(self.stem.with_suffix(suffix))
                self.writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), self.fps, size)
                if self.writer.isOpened():
                    break
            else:
                raise InputError(f"{self.stem}: OpenCV can write neither mp4v nor MJPG video here")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class Results:
    """One run's outputs: pupil.csv, and optionally mask PNGs, overlay PNGs or an overlay video."""

    def __init__(
        self, output: Path, masks: bool, overlays: bool, video: VideoOut | None, threshold: float
    ) -> None:
        self.output, self.masks, self.overlays, self.video = output, masks, overlays, video
        self.threshold = threshold
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
            self.video.close()

    def add(self, frame: str, stem: str, image: np.ndarray, prob: np.ndarray) -> np.ndarray:
        """Record one frame's (H, W) pupil probability; returns its overlay."""
        mask = prob > self.threshold
        geometry = pupil_geometry(mask, prob)
        numbers = [geometry[key] for key in CSV_COLUMNS[2:]]
        self._rows.writerow(
            [frame, geometry["found"], *("" if math.isnan(v) else round(v, 4) for v in numbers)]
        )
        overlay = draw_overlay(image, mask, geometry)
        if self.masks:
            write_image(self.output / "masks" / f"{stem}.png", mask.astype(np.uint8) * 255)
        if self.overlays:
            write_image(self.output / "overlays" / f"{stem}.png", overlay)
        if self.video is not None:
            self.video.write(overlay)
        return overlay


def image_files(path: Path) -> list[Path]:
    """The image itself, or the images directly inside a folder, sorted by name."""
    if path.is_file():
        return [path]
    files = list_images(path)
    if not files:
        raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def output_names(files: list[Path]) -> list[str]:
    """Output name per file: its stem, or, when any two stems clash, every file's full name."""
    stems = Counter(p.stem.lower() for p in files)  # a.png and A.jpg collide on some file systems
    # full names are unique in a folder; mixing them with stems is not (a.png.png's stem is a.png)
    return [p.stem for p in files] if max(stems.values(), default=1) == 1 else [p.name for p in files]


def read_images(files: list[Path], failures: list[Path]) -> Iterator[tuple[str, str, np.ndarray]]:
    """(file name, output name, grey frame) per readable file; the others are named on stderr and listed."""
    for path, name in zip(files, output_names(files), strict=True):
        try:
            yield path.name, name, read_image(path)
        except DataError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failures.append(path)


def read_video(capture: cv2.VideoCapture) -> Iterator[tuple[str, str, np.ndarray]]:
    """(frame index, zero-padded index, grey frame) until the video ends."""
    for index in itertools.count():
        ok, frame = capture.read()
        if not ok:
            return
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        yield str(index), f"{index:06d}", grey


def predict(
    predictor: Predictor,
    source: str | Path,
    output: str | Path,
    threshold: float = 0.5,
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
        frames = read_video(capture)
        video = VideoOut(output / "overlay", capture.get(cv2.CAP_PROP_FPS) or 30.0)
        results = Results(output, video_masks, overlays=False, video=video, threshold=threshold)
    else:
        frames = read_images(image_files(source), failures)
        results = Results(output, masks=True, overlays=True, video=None, threshold=threshold)

    count, model_seconds, start = 0, 0.0, time.perf_counter()
    try:
        with results:
            while batch := list(itertools.islice(frames, batch_size)):
                tick = time.perf_counter()
                probs = predictor.probabilities(
                    [image for *_, image in batch], tta=tta, batch_size=batch_size
                )
                model_seconds += time.perf_counter() - tick
                for (frame, stem, image), prob in zip(batch, probs, strict=True):
                    results.add(frame, stem, image, prob)
                count += len(batch)
    finally:
        if capture is not None:
            capture.release()
    if count == 0 and capture is not None:
        raise InputError(f"{source}: opened as a video, but no frame could be decoded")
    if count == 0:
        raise InputError(f"{source}: none of its {len(failures)} images could be read")
    return PredictSummary(count, len(failures), time.perf_counter() - start, model_seconds)


def has_display() -> bool:
    """Linux and the BSDs need an X11 or Wayland display for a window; macOS and Windows have one."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def live_view(predictor: Predictor, camera: int, output: Path, threshold: float = 0.5) -> PredictSummary:
    """Show camera `camera` with the pupil overlay and frames/s until q or Esc; pupil.csv in `output`."""
    if not has_display():
        raise InputError(
            f"camera {camera}: a live view needs a display (DISPLAY is not set); record a video instead"
        )
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise InputError(f"camera {camera}: cannot be opened")
    count, model_seconds, fps, start = 0, 0.0, 0.0, time.perf_counter()
    try:
        with Results(output, masks=False, overlays=False, video=None, threshold=threshold) as results:
            for frame, stem, image in read_video(capture):
                tick = time.perf_counter()
                prob = predictor.probabilities([image])[0]
                model_seconds += time.perf_counter() - tick
                overlay = results.add(frame, stem, image, prob)
                fps = 0.9 * fps + 0.1 / max(time.perf_counter() - tick, 1e-6)  # smoothed over ~10 frames
                cv2.putText(
                    overlay, f"{fps:.0f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, CENTRE_COLOUR, 2
                )
                cv2.imshow("pupil (q or Esc to stop)", overlay)
                count += 1
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
    except cv2.error as exc:  # an OpenCV build without GUI support
        reason = str(exc).strip().splitlines()[-1]
        raise InputError(f"camera {camera}: cannot show a window ({reason})") from None
    finally:
        capture.release()
        cv2.destroyAllWindows()
    return PredictSummary(count, 0, time.perf_counter() - start, model_seconds)


def _tiles(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers like 8x8, got {text!r}") from None
    if x < 1 or y < 1:
        raise argparse.ArgumentTypeError(f"CLAHE tiles must be at least 1x1, got {text!r}")
    return x, y


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"threshold must be between 0 and 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Segment the pupil and fit its ellipse in images, a folder, a video or a camera."
    )
    parser.add_argument(
        "--model",
        type=model_file,
        default="pretrained",
        help="a .onnx export or a .pt checkpoint (default: pretrained, the model in pretrained/)",
    )
    parser.add_argument("--input", required=True, help="image, folder of images, video file or camera index")
    parser.add_argument(
        "--output", type=Path, default=Path("predictions"), help="results folder (default: %(default)s)"
    )
    parser.add_argument(
        "--threshold", type=_threshold, default=0.5, help="pupil probability (default: %(default)s)"
    )
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored frame")
    parser.add_argument(
        "--batch-size",
        type=positive_int_argument,
        default=8,
        help="frames per model call (default: %(default)s)",
    )
    parser.add_argument("--masks", action="store_true", help="also write a mask PNG per video frame")
    legacy = parser.add_argument_group(
        "ONNX files without this project's metadata",
        "the preprocessing the model was trained with; any one given makes the rest take their defaults",
    )
    legacy.add_argument(
        "--img-size", type=size_argument, help="input HxW (default: the file's static input shape)"
    )
    defaults = PreprocessConfig()
    legacy.add_argument("--gamma", type=float, help=f"gamma (default: {defaults.gamma})")
    legacy.add_argument("--clahe-clip", type=float, help=f"CLAHE clip limit (default: {defaults.clahe_clip})")
    legacy.add_argument("--clahe-tiles", type=_tiles, help="CLAHE tiles across x down (default: 8x8)")
    legacy.add_argument("--mean", type=float, help=f"normalisation mean (default: {defaults.mean})")
    legacy.add_argument("--std", type=float, help=f"normalisation std (default: {defaults.std})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = {name: getattr(args, name) for name in PREPROCESS_FLAGS if getattr(args, name) is not None}
    try:
        predictor = load_predictor(
            args.model, img_size=args.img_size, preprocess_config=PreprocessConfig(**given) if given else None
        )
        if args.input.isdigit() and not Path(args.input).exists():
            summary = live_view(predictor, int(args.input), args.output, args.threshold)
        else:
            summary = predict(
                predictor, args.input, args.output, args.threshold, args.tta, args.batch_size, args.masks
            )
    except MissingMetadataError as exc:
        print(
            f"error: {exc}; pass the preprocessing it was trained with (--gamma, --clahe-clip, "
            "--clahe-tiles, --mean, --std; any one given makes the rest take their defaults) and "
            "--img-size HxW if its input size is dynamic",
            file=sys.stderr,
        )
        return 1
    except (ValueError, OSError) as exc:  # CheckpointError, ModelFileError, InputError; unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if summary.failed:
        total = summary.frames + summary.failed
        print(f"{summary.failed} of {total} images could not be read", file=sys.stderr)
    print(f"{args.model.name} ({predictor.info['backend']}): {summary}; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
