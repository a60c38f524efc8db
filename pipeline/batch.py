"""Recordings of two eyes and folders of recordings: `predict_recording` runs each eye of a Pupil
Core or Neon recording with its own timestamps and writes Pupil Player's exports; `predict_many`
runs a folder of videos and recordings, each into its own folder, resumable, summed up in
recordings.csv."""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import cv2

from data.folders import list_images, natural_key, new_folder, write_csv
from inference import Predictor
from pipeline.lsl import LslOutlet
from pipeline.neon import find_eye_recording
from pipeline.pupil_core import PupilCoreRecording, write_player_exports
from pipeline.recording import PredictSummary, SavedDataset
from pipeline.run import predict
from pipeline.streams import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mjpeg", ".webm")  # a batch folder's videos


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
        elif path.is_dir():
            try:
                recording = find_eye_recording(path)
            except InputError as exc:  # one broken recording: named, and the others run
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            if recording is not None:
                inputs[path] = recording
    names: dict[str, Path] = {}
    for path in inputs:
        if (other := names.setdefault(output_name(path), path)) != path:
            raise InputError(f"{other} and {path} would both write to {output_name(path)}/: rename one")
    return inputs


def output_name(path: Path) -> str:
    """The folder a batch's recording is written to: a video's name less its suffix, a recording
    folder's whole name (P01.s1 and P01.s2 stay apart)."""
    return path.name if path.is_dir() else path.stem


def predict_many(
    predictor: Predictor, inputs: dict[Path, PupilCoreRecording | None], output: Path, **settings: Any
) -> dict[str, PredictSummary]:
    """Each of `inputs` (`batch_inputs`: videos, Pupil Core recordings) into output/<its name>,
    with one progress bar over all their frames; one whose folder holds DONE is skipped, so a
    batch stopped or failed part way resumes where it was. output/recordings.csv sums up every
    finished one."""
    from tqdm import tqdm

    todo = {p: recording for p, recording in inputs.items() if not (output / output_name(p) / DONE).exists()}
    before, first = len(inputs) - len(todo), next(iter(inputs))
    print(f"{len(inputs)} recordings in {first.parent}: {before} done before, {len(todo)} to run")
    total = sum(frame_count(p, recording) for p, recording in todo.items())
    summaries: dict[str, PredictSummary] = {}
    with tqdm(total=total, unit="frame", dynamic_ncols=True) as bar:
        for path, recording in todo.items():
            folder = output / output_name(path)
            shutil.rmtree(folder, ignore_errors=True)  # a run cut short before: its partial results go
            if recording is not None:
                done = predict_recording(
                    predictor, recording, folder, dataset=None, progress=bar.update, **settings
                )
                summaries |= {f"{folder.name}/{eye}": s for eye, s in done.items()}
            else:
                summaries[folder.name] = predict(predictor, path, folder, progress=bar.update, **settings)
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
        folder = output / output_name(path)
        if not (folder / DONE).exists():
            continue
        for summary in sorted(folder.glob("summary.json")) + sorted(folder.glob("eye*/summary.json")):
            figures = json.loads(summary.read_text())
            name = folder.name if summary.parent == folder else f"{folder.name}/{summary.parent.name}"
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
