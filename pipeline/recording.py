"""One run of predict.py: per frame, the pupil's geometry and confidence, and the images asked for
(masks, overlays, the overlay video, a dataset to correct), written in order on a thread of their
own; at the end, the time series (`pupillometry.series`) as pupil.csv, blinks.csv and
timeseries.png, and the summary the terminal shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config import PupillometryConfig
from core.runfolder import check_writable, write_text
from data.folders import new_folder, write_csv, write_image
from inference import Predictor, pupil_geometry, pupil_mask
from pipeline.streams import Frame, InOrder, VideoOut
from pupillometry.confidence import frame_confidence
from pupillometry.iris import IRIS_DIAMETER_MM, iris_radius, mm_per_px_from_iris
from pupillometry.series import BLINK_COLUMNS, FILTERED, time_series
from reports.gallery import paint
from reports.timeseries import plural, write_timeseries

GEOMETRY = ("centre_x", "centre_y", "axis_major", "axis_minor", "angle", "area_px", "mean_prob")
CSV_COLUMNS = ("frame", "time_s", "pupil_found", "confidence", "blink", *GEOMETRY)  # then those below
LOW_CONFIDENCE = 0.5  # marked in timeseries.png


def csv_columns(config: PupillometryConfig) -> tuple[str, ...]:
    """pupil.csv's columns: CSV_COLUMNS, the filtered ones, the interpolated diameter, and with
    `config.mm_per_px` the mm ones."""
    kinds = ("", "_filtered", "_interpolated") if config.smooth else ("", "_interpolated")
    filtered = FILTERED if config.smooth else ()
    in_mm = tuple(f"diameter{kind}_mm" for kind in kinds) if config.mm_per_px is not None else ()
    return (*CSV_COLUMNS, *filtered, "diameter_interpolated_px", *in_mm)


@dataclass
class PredictSummary:
    """What a run did; str() is what predict.py prints, `write` saves it as JSON. The pupil
    figures (`describe`) are over a recording of more than one frame."""

    frames: int  # frames processed
    failed: int  # images that could not be read (rows of pupil.csv with no pupil found)
    seconds: float  # wall time, reading and writing included
    model_seconds: float  # resizing, preprocessing and the model
    tracked_share: float = math.nan  # frames that are not blink frames: eye open, pupil found and trusted
    blinks: int = 0
    minutes: float = 0.0  # the recording's length
    median_diameter_px: float = math.nan  # over the frames that are not blink frames
    median_diameter_mm: float = math.nan
    mm_per_px: float | None = None
    mm_source: str = "none"  # --mm-per-px, an estimate from the iris, or none
    median_confidence: float = math.nan
    complete: bool = True  # False: stopped early (stopped_by) with the frames so far written
    stopped_by: str | None = None  # the signal that stopped the run: SIGINT (Ctrl-C) or SIGTERM

    def describe(
        self, rows: list[dict], events: list[dict], *, minutes: float, mm: tuple[float | None, str]
    ) -> None:
        """Fill in the pupil figures from pupil.csv's rows and blinks.csv's events."""
        open_eye = [row["axis_major"] for row in rows if not row["blink"]]
        self.tracked_share, self.blinks, self.minutes = len(open_eye) / len(rows), len(events), minutes
        self.median_diameter_px = float(np.median(open_eye)) if open_eye else math.nan
        self.median_confidence = float(np.median([row["confidence"] for row in rows]))
        self.mm_per_px, self.mm_source = mm
        if self.mm_per_px is not None:
            self.median_diameter_mm = self.median_diameter_px * self.mm_per_px

    def write(self, path: Path) -> None:
        figures = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in vars(self).items()}
        write_text(path, json.dumps(figures | {"frames_per_s": self.frames / self.seconds}, indent=2) + "\n")

    def __str__(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else math.inf
        model_rate = self.frames / self.model_seconds if self.model_seconds > 0 else math.inf
        text = (
            f"{self.frames} frames in {self.seconds:.2f} s: {rate:.1f} frames/s "
            f"({model_rate:.1f} frames/s for preprocessing and model alone)"
        )
        if self.frames < 2:
            return text
        per_minute = f" ({self.blinks / self.minutes:.1f} a minute)" if self.minutes > 0 else ""
        diameter = f"median diameter {self.median_diameter_px:.1f} px"
        if self.mm_per_px is not None:
            diameter += f" = {self.median_diameter_mm:.2f} mm ({self.mm_source})"
        elif self.mm_source != "none":
            diameter += f"; no mm ({self.mm_source.removeprefix('none: ')})"
        blinks = f"{plural(self.blinks, 'blink')}{per_minute}"
        return f"{text}\npupil tracked in {self.tracked_share:.1%} of frames, {blinks}, {diameter}"


class SavedDataset:
    """--save-dataset: frames and their predicted masks in the mask-folder layout, to correct and
    fine-tune on; the folder must be new or empty, so corrected masks are never overwritten. It is
    checked at once and filled as frames come: a run that fails first leaves it as it was."""

    def __init__(self, root: Path, *, min_confidence: float, val_fraction: float, prefix: str = "") -> None:
        self.root = new_folder(root, overwrite=False, flag=None)
        check_writable(self.root)  # an unwritable folder is found now, not after the first frame
        self.min_confidence, self.val_fraction, self.prefix = min_confidence, val_fraction, prefix
        self.rows: list[dict[str, Any]] = []

    def _folder(self, split: str, kind: str) -> Path:
        """root/split/kind, made if missing."""
        folder = self.root / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add(self, name: str, image: np.ndarray, mask: np.ndarray, *, confidence: float) -> None:
        name = f"{self.prefix}{name}"
        saved = confidence >= self.min_confidence
        if saved:
            write_image(self._folder("train", "images") / f"{name}.png", image)
            write_image(self._folder("train", "masks") / f"{name}.png", mask.astype(np.uint8) * 255)
        self.rows.append({"name": name, "confidence": confidence, "split": "train" if saved else ""})

    def close(self) -> None:
        """Move the last `val_fraction` of the saved frames (at least one, of two or more) to
        validation/: neighbouring video frames are near copies, so a random split would validate
        on frames trained on. Write confidence.csv: name, confidence, split (empty: not saved)."""
        saved = [row for row in self.rows if row["split"]]
        n_val = (
            max(1, round(len(saved) * self.val_fraction)) if len(saved) > 1 and self.val_fraction > 0 else 0
        )
        moved = saved[len(saved) - n_val :] if n_val else []
        train = {kind: self._folder("train", kind) for kind in ("images", "masks")}  # even if none was saved
        for row in moved:
            file = f"{row['name']}.png"
            for kind in ("images", "masks"):
                (train[kind] / file).rename(self._folder("validation", kind) / file)
            row["split"] = "validation"
        write_csv(self.root / "confidence.csv", ("name", "confidence", "split"), self.rows)


class Recording:
    """One run's outputs in `output`: pupil.csv (and for a recording blinks.csv, timeseries.png,
    summary.json), and as asked mask PNGs, overlay PNGs, an overlay video at `video_fps`, a
    SavedDataset; `config` says how frames become a time series. Masks hold the pupil's blob alone
    (`pupillometry.geometry.pupil_mask`), or with `raw_mask` every pixel above `threshold`."""

    def __init__(
        self,
        output: Path,
        config: PupillometryConfig,
        *,
        threshold: float,
        raw_mask: bool = False,
        masks: bool = False,
        overlays: bool = False,
        video_fps: float | None = None,
        dataset: SavedDataset | None = None,
    ) -> None:
        self.output, self.config, self.threshold, self.raw_mask = output, config, threshold, raw_mask
        self.masks, self.overlays, self.dataset = masks, overlays, dataset
        self.video = VideoOut(output / "overlay", video_fps) if video_fps else None
        self.timestamps: np.ndarray | None = None  # per frame, seconds: a recording's own clock
        self.fps: float | None = None  # else frame i is at i / fps (for `live`)
        self.live: Any = None  # an lsl.LslOutlet each frame's measurement is pushed to, as it comes
        self.frames: list[dict[str, Any]] = []  # a row per frame, unread ones (`skip`) included
        self.unread = 0
        self.iris_radii: list[float] = []  # per frame with a confident pupil, for mm_from_iris
        self.model_seconds, self.start = 0.0, time.perf_counter()
        output.mkdir(parents=True, exist_ok=True)
        for folder, wanted in (("masks", masks), ("overlays", overlays)):
            if wanted:
                (output / folder).mkdir(exist_ok=True)
        self._writes = InOrder()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        failed = exc_type is not None
        try:
            self._writes.close()
        except BaseException:  # a writer's error, or a second Ctrl-C while the writes finish
            failed = True
            if exc_type is None:  # else the exception that ended the run goes on, not a writer's after it
                raise
        finally:
            if self.video is not None:  # a failed run's video is not kept, whole or partial
                self.video.close(keep=not failed)

    def _write(self, frame: Frame, mask: np.ndarray, geometry: dict, confidence: float) -> None:
        _, name, image = frame
        if self.masks:
            write_image(self.output / "masks" / f"{name}.png", mask.astype(np.uint8) * 255)
        if self.overlays or self.video is not None:
            overlay = paint(image, pred=mask, geometry=geometry)
            if self.overlays:
                write_image(self.output / "overlays" / f"{name}.png", overlay)
            if self.video is not None:
                self.video.write(overlay)
        if self.dataset is not None:
            self.dataset.add(name, image, mask, confidence=confidence)

    def measure(self, frame: Frame, prob: np.ndarray, time_s: float | None = None) -> tuple[np.ndarray, dict]:
        """Record one frame's (H, W) pupil probability and queue its images; returns its mask and
        geometry. `time_s`: when it was taken, for a camera (else frame index / fps)."""
        above = prob > self.threshold  # every blob: confidence weighs the fragments beside the pupil
        geometry = pupil_geometry(above, prob)
        confidence = frame_confidence(prob, above, geometry)
        mask = above if self.raw_mask else pupil_mask(prob, self.threshold)
        record = {"frame": frame[0], "pupil_found": geometry["found"], "confidence": confidence}
        if self.live is not None:
            self.live.push(self._time(time_s), geometry, confidence)
        self.frames.append(record | {key: geometry[key] for key in GEOMETRY} | {"time_s": time_s})
        if self.config.mm_from_iris and confidence >= self.config.min_confidence:
            centre, diameter = (geometry["centre_x"], geometry["centre_y"]), geometry["axis_major"]
            ellipse = {"axis_minor": geometry["axis_minor"], "angle": geometry["angle"]}
            self.iris_radii.append(iris_radius(frame[2], centre, diameter, **ellipse))
        if self.masks or self.overlays or self.video is not None or self.dataset is not None:
            self._writes.submit(self._write, frame, mask, geometry, confidence)
        return mask, geometry

    def _time(self, time_s: float | None) -> float:
        """The next frame's time: `time_s` (a camera's), its timestamp, or its index / fps."""
        n = len(self.frames)
        if time_s is not None:
            return time_s
        return float(self.timestamps[n]) if self.timestamps is not None else n / (self.fps or 1.0)

    def skip(self, frame: Frame) -> None:
        """Record a frame that could not be read: a row with no pupil found, so that the frames
        after it keep their times."""
        self.unread += 1
        empty = {"pupil_found": False, "confidence": 0.0, **dict.fromkeys(GEOMETRY, math.nan)}
        if self.live is not None:
            self.live.push(self._time(None), {"found": False, **empty}, 0.0)
        self.frames.append({"frame": frame[0], **empty, "time_s": None})

    def infer(self, predictor: Predictor, batch: list[Frame], *, tta: bool = False) -> np.ndarray:
        """The model's (B, H, W) pupil probability of a batch's readable frames, timed: on one
        thread at a time, which may be another than `record`'s."""
        images = [image for *_, image in batch if image is not None]
        if not images:
            return np.zeros((0, 1, 1), np.float32)
        tick = time.perf_counter()
        prob = predictor.model_probabilities(images, tta)
        self.model_seconds += time.perf_counter() - tick
        return prob

    def record(self, predictor: Predictor, batch: list[Frame], prob: np.ndarray) -> None:
        """Record each frame of a batch, in order, from `infer`'s probability."""
        images = [image for *_, image in batch if image is not None]
        probs = iter(predictor.on_frames(images, prob) if images else [])
        for frame in batch:
            if frame[2] is None:
                self.skip(frame)
            else:
                self.measure(frame, next(probs))

    def scale(self) -> tuple[float | None, str]:
        """Millimetres per pixel and where it came from: --mm-per-px, the iris, or none."""
        if self.config.mm_per_px is not None:
            return self.config.mm_per_px, "--mm-per-px"
        if not self.config.mm_from_iris:
            return None, "none"
        mm_per_px = mm_per_px_from_iris(self.iris_radii)
        if mm_per_px is None:
            return None, "none: the iris edge was not found in enough frames"
        return mm_per_px, f"estimate from the iris, {IRIS_DIAMETER_MM} mm across"

    def finish(
        self, fps: float, *, failed: int = 0, causal: bool = False, stopped_by: str | None = None
    ) -> PredictSummary:
        """Wait for the images; write pupil.csv, and for a recording blinks.csv, timeseries.png
        and summary.json (`stopped_by` a signal: marked incomplete)."""
        self._writes.close()
        if self.dataset is not None:
            self.dataset.close()
        n = len(self.frames)
        taken = [f["time_s"] for f in self.frames]
        times = np.array(taken, dtype=float) if None not in taken else np.arange(n) / fps
        if self.timestamps is not None:  # the frames' own times (a Pupil Core recording's)
            times = self.timestamps[:n]
        mm_per_px, source = self.scale()
        config = dataclasses.replace(self.config, mm_per_px=mm_per_px, mm_from_iris=False)
        rows, events = time_series(self.frames, times, fps=fps, config=config, causal=causal)
        write_csv(self.output / "pupil.csv", csv_columns(config), rows)
        seconds = time.perf_counter() - self.start
        summary = PredictSummary(n - self.unread, failed, seconds, self.model_seconds)
        summary.complete, summary.stopped_by = stopped_by is None, stopped_by
        if n < 2:  # no recording: no time series, and none left from an earlier run in this folder
            for stale in ("blinks.csv", "timeseries.png", "summary.json"):
                (self.output / stale).unlink(missing_ok=True)
            return summary
        write_csv(self.output / "blinks.csv", BLINK_COLUMNS, events)
        write_timeseries(self.output / "timeseries.png", rows, events, low_confidence=LOW_CONFIDENCE)
        summary.describe(rows, events, minutes=(times[-1] - times[0] + 1 / fps) / 60, mm=(mm_per_px, source))
        summary.seconds = time.perf_counter() - self.start
        summary.write(self.output / "summary.json")
        return summary
