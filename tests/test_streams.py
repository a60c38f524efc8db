"""pipeline/streams.py: read_ahead's producer thread (order, errors, early stops, how far ahead), InOrder's
writer thread, the overlay video and batches."""

from __future__ import annotations

import itertools
import threading
import time

import cv2
import numpy as np
import pytest

from pipeline.streams import InOrder, VideoOut, batches, read_ahead, read_video


def wait_until(condition, seconds: float = 2.0) -> None:
    """Poll `condition` until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Source:
    """A generator of 0, 1, 2, ... (`limit` items, or without end) that counts what it yielded and
    says whether its `finally` ran."""

    def __init__(self, limit: int | None = None, error: Exception | None = None) -> None:
        self.limit, self.error, self.pulled, self.closed = limit, error, 0, False

    def __iter__(self):
        try:
            for i in itertools.count() if self.limit is None else range(self.limit):
                self.pulled += 1
                yield i
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


@pytest.fixture
def read_ahead_threads():
    """A function listing the read-ahead threads alive that the test started."""
    before = set(threading.enumerate())
    return lambda: [t for t in threading.enumerate() if t.name == "read-ahead" and t not in before]


@pytest.mark.parametrize("depth", [1, 3])
def test_read_ahead_yields_every_item_in_order_on_another_thread(depth, read_ahead_threads):
    seen = []

    def numbers():
        for i in range(50):
            seen.append(threading.current_thread())
            yield i

    assert list(read_ahead(numbers(), depth)) == list(range(50))
    assert threading.current_thread() not in seen
    assert read_ahead_threads() == []


def test_an_exception_in_the_source_is_raised_in_the_consumer_after_the_items_before_it(
    read_ahead_threads,
):
    source = Source(limit=3, error=ValueError("corrupt frame"))
    got = []
    with pytest.raises(ValueError, match="corrupt frame"):
        for item in read_ahead(iter(source), 2):
            got.append(item)
    assert got == [0, 1, 2] and source.closed and read_ahead_threads() == []


def test_a_consumer_that_stops_early_stops_every_chained_stage_and_closes_the_source(
    read_ahead_threads,
):
    source = Source()  # without end: only a stop ends it
    items = iter(source)
    first = read_ahead(items, 2)
    second = read_ahead(first, 2)  # each stage still referenced, as by a caller's variables
    assert next(second) == 0
    assert len(read_ahead_threads()) == 2
    second.close()
    assert source.closed and read_ahead_threads() == []


@pytest.mark.parametrize("depth", [1, 4])
def test_depth_bounds_how_far_ahead_the_source_is_read_and_a_stop_reads_no_further(depth):
    source = Source()
    ahead = read_ahead(iter(source), depth)
    assert next(ahead) == 0
    # the consumer holds item 0, the queue `depth` items, the thread one more it waits to put
    wait_until(lambda: source.pulled == depth + 2)
    time.sleep(0.02)  # time enough to read on, were it unbounded
    assert source.pulled == depth + 2
    ahead.close()
    assert source.pulled == depth + 2 and source.closed


def test_in_order_runs_calls_in_order_on_one_thread_of_its_own():
    calls, threads = [], set()

    def call(i):
        calls.append(i)
        threads.add(threading.current_thread())

    writer = InOrder(depth=4)
    for i in range(100):
        writer.submit(call, i)
    writer.close()
    assert calls == list(range(100))
    assert len(threads) == 1 and threading.current_thread() not in threads


def fail(message: str):
    raise OSError(message)


def test_in_order_raises_the_first_exception_in_the_next_submit_once():
    writer = InOrder()
    writer.submit(fail, "disk full")
    with pytest.raises(OSError, match="disk full"):
        for _ in range(2000):  # until the writer thread has run the failing call
            writer.submit(lambda: None)
            time.sleep(0.001)
    writer.close()  # raised once: not again


def test_in_order_close_waits_for_every_call_and_raises_the_first_exception():
    done = []
    writer = InOrder()
    writer.submit(time.sleep, 0.05)
    writer.submit(done.append, 1)
    writer.submit(fail, "first")
    writer.submit(fail, "second")
    writer.submit(done.append, 2)  # after an error: skipped until it is raised
    with pytest.raises(OSError, match="first"):
        writer.close()
    assert done == [1]


def test_video_out_writes_a_readable_video_at_the_first_frames_size(tmp_path):
    video = VideoOut(tmp_path / "overlay", fps=10)
    assert video.path is None
    rng = np.random.default_rng(0)
    for _ in range(3):
        video.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    video.close()
    assert video.path.suffix in (".mp4", ".avi") and video.path.stem == "overlay"
    capture = cv2.VideoCapture(str(video.path))
    frames = list(read_video(capture, video.path))
    capture.release()
    assert [(index, name) for index, name, _ in frames] == [("0", "000000"), ("1", "000001"), ("2", "000002")]
    assert all(grey.shape == (48, 64) for *_, grey in frames)


def test_video_out_that_got_no_frame_writes_no_file(tmp_path):
    video = VideoOut(tmp_path / "overlay", fps=10)
    video.close()
    assert video.path is None and list(tmp_path.iterdir()) == []


def test_batches_cut_an_iterator_into_lists_with_a_shorter_last_one():
    assert list(batches(iter(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches(iter(range(6)), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(batches(iter([]), 3)) == []
