"""Frames in and out for predict.py: an image, a folder of images, a video file or a camera read
ahead on one thread, and what is written per frame (mask and overlay images, the overlay video)
done in order on another, so that decoding, the model and encoding overlap. OpenCV and
onnxruntime release the GIL while they work, so threads are enough.

A frame is (frame, name, image): the frame's label in pupil.csv (a file name, or a video frame's
index), the stem its output files get, and the (H, W) uint8 grey image, or None for a folder's
image that could not be read: it keeps its place in the recording, so the frames after it keep
their times.
"""

from __future__ import annotations

import itertools
import queue
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from core.errors import InputError
from data import DataError, read_image
from data.folders import IMAGE_SUFFIXES, broken_links, list_images, natural_key, output_names

Frame = tuple[str, str, np.ndarray | None]  # (file name or video index, output name, grey image)
T = TypeVar("T")


def image_files(path: Path, failures: list[Path] | None = None) -> list[Path]:
    """The image itself, or the images directly inside a folder in natural name order; a link
    among them that leads nowhere is named on stderr and, given `failures`, added to it and kept
    in its place in the list (a recording's frame that `read_images` marks unread)."""
    files = [path] if path.is_file() else list_images(path)
    if path.is_dir():
        for link, why in broken_links(path):
            print(f"skipped: {link}: {why}", file=sys.stderr)
            if failures is not None:
                failures.append(link)
        if failures:
            files = sorted({*files, *failures}, key=natural_key)
    if not files:
        raise InputError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def read_images(files: list[Path], failures: list[Path]) -> Iterator[Frame]:
    """(file name, output name, grey frame) per file, in order; a file that cannot be read is named
    on stderr (unless `failures` lists it already), listed, and gives its frame with no image."""
    known = set(failures)
    for path, name in zip(files, output_names(files), strict=True):
        if path in known:
            yield path.name, name, None
            continue
        try:
            yield path.name, name, read_image(path)
        except DataError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failures.append(path)
            yield path.name, name, None


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


def video_frames(video: Path) -> tuple[int, int]:
    """A video's frame count and frame width; InputError naming it when OpenCV cannot open it. A
    header without a count (a raw MJPEG stream's) is counted by decoding."""
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise InputError(f"{video}: cannot open as a video (not a video file OpenCV can decode)")
        frames, width = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        if frames <= 0:
            frames = 0
            while capture.grab():
                frames += 1
        return frames, width
    finally:
        capture.release()


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items (the last one shorter)."""
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


_END = object()


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, produced on a thread up to `depth` ahead of the consumer; an exception raised
    there is raised here, and a consumer that stops early (closes this generator) stops the
    thread and closes `items`, so stages chain."""
    if depth < 1:
        raise ValueError(f"read_ahead needs a depth of at least 1, got {depth}")
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                put(item)
                if stop.is_set():  # before reading on: the next item may cost a batch's decoding or model
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, raised there)
            put(exc)
        finally:
            if hasattr(items, "close"):  # a generator: its own finally (a reader thread) runs now
                items.close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class InOrder:
    """Calls run one at a time, in the order given, on a thread of their own; at most `depth` wait.
    The first exception one raises is raised again by the next `submit` or by `close`."""

    def __init__(self, depth: int = 32) -> None:
        self._calls: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="in-order", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._error is None:
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 (raised in the submitting thread)
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._calls.put(lambda: fn(*args))

    def close(self) -> None:
        """Wait for every call submitted; raise the first exception one raised."""
        if self._thread.is_alive():
            self._calls.put(None)
            self._thread.join()
        self._raise()


class VideoOut:
    """An overlay video opened at its first frame's size: mp4v in .mp4, else MJPG in .avi (OSError
    when OpenCV can write neither). It is written as a hidden .partial file and moved into place
    when closed: a run stopped early leaves a playable video of its frames, one that failed none.
    OpenCV's writer does not report a full disk (it warns on every frame after): the free space is
    looked at every DISK_CHECK_EVERY frames instead."""

    DISK_CHECK_EVERY = 30

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem, self.fps, self.path = stem, fps, None
        self._writer: cv2.VideoWriter | None = None
        self._frames = 0

    def _partial(self, path: Path) -> Path:
        return path.with_name(f".{path.stem}.partial{path.suffix}")  # the container from the suffix

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            size = (frame.shape[1], frame.shape[0])
            for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
                path = self.stem.with_suffix(suffix)
                fourcc = cv2.VideoWriter_fourcc(*codec)
                self._writer = cv2.VideoWriter(str(self._partial(path)), fourcc, self.fps, size)
                if self._writer.isOpened():
                    self.path = path
                    break
                self._partial(path).unlink(missing_ok=True)
            else:
                self._writer = None
                raise OSError(f"{self.stem.parent}: OpenCV can write neither mp4v nor MJPG video here")
        if (
            self._frames % self.DISK_CHECK_EVERY == 0
            and shutil.disk_usage(self.stem.parent).free < frame.nbytes
        ):
            raise OSError(f"{self.path}: cannot write (No space left on device)")
        self._writer.write(frame)
        self._frames += 1

    def close(self, *, keep: bool = True) -> None:
        """Finish the file and move it into place; without `keep`, remove it."""
        if self._writer is None or self.path is None:
            return
        self._writer.release()
        self._writer = None
        partial = self._partial(self.path)
        if keep:
            partial.replace(self.path)
        else:
            partial.unlink(missing_ok=True)
