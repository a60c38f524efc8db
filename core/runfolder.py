"""A run's folder and lifetime: the folder named so that two runs never share one, claimed while a
run writes to it, checked before the first epoch or frame rather than found broken after it; its
files written whole or not at all (`atomic_path`); and the signals that stop a run (SIGTERM as
Ctrl-C, a second Ctrl-C ignored while it saves; for prediction, a stop between frames).

    with claim(out_dir, resuming=False):   # OSError / ValueError naming the folder
        ...train...

A folder holding another run's checkpoints is refused unless the run resumes from it; a folder a
live run holds (its `.lock`, an advisory lock the kernel drops when the process dies) is refused
whatever the run. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

CHECKPOINTS = ("last.pt", "best.pt")
UMASK = os.umask(0o022)  # read once, at import: setting it back at once is the only way to read it
os.umask(UMASK)
FILE_MODE = 0o666 & ~UMASK  # what the user's umask gives a new file (a temporary one of mkstemp's is 0600)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` (hidden, same suffix, the umask's mode) to write; moved onto
    `path` when the block ends, removed if it raises. A full disk or a kill leaves the old file or
    none, never half of one; a failed write is an OSError naming `path`."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    temporary = Path(name)
    with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows; some mounts refuse it
        os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:  # the system's: name the file
            raise OSError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise


def write_bytes(path: Path, data: bytes) -> Path:
    """`data` as the file `path`, whole or not at all (`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        f.write(data)  # close() raises if the disk filled up while the buffer was flushed
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """`text` (UTF-8) as the file `path`, whole or not at all (`atomic_path`)."""
    return write_bytes(path, text.encode())


def new_run_folder(parent: Path, model: str) -> Path:
    """parent/<model>-<time>, with -2, -3, ... when a run started in the same second has it."""
    stem = f"{model}-{datetime.now():%Y%m%d-%H%M%S}"
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()  # atomic: of two runs, one gets the name
            return folder
        except FileExistsError:
            continue
    raise OSError(f"{parent}: no free run folder name for {stem}")


def check_writable(folder: Path) -> None:
    """A file can be written in `folder` now, not only after the first epoch; OSError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise OSError(f"{folder}: cannot write the run's files there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def claim(folder: Path, *, resuming: bool) -> Iterator[None]:
    """Hold `folder` for one run: refuse another run's checkpoints (unless resuming them) and a
    folder another live process holds."""
    check_writable(folder)
    found = [name for name in CHECKPOINTS if (folder / name).exists()]
    if found and not resuming:
        raise ValueError(
            f"{folder} holds another run's {found[0]}: continue it with --resume {folder / 'last.pt'}, "
            "or give another --out-dir"
        )
    with locked(folder, "training"):
        yield


@contextlib.contextmanager
def locked(folder: Path, program: str) -> Iterator[None]:
    """Hold `folder`'s `.lock` (an advisory lock the kernel drops when the process dies); a
    ValueError naming the folder when a live run of `program` holds it."""
    with open(folder / ".lock", "a") as handle:
        if os.name == "posix":
            import fcntl

            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{folder} is in use by another {program} run (its .lock is held)") from None
        yield


@contextlib.contextmanager
def hold_results(
    folder: Path, results: tuple[str, ...], *, overwrite: bool, program: str, inputs: tuple[Path, ...] = ()
) -> Iterator[None]:
    """Hold `folder` for one run of `program` (predict.py, evaluate.py) that writes `results`
    (file and folder names) there: refuse a folder that holds or lies above an input, or holds a
    dataset's images and labels, whatever `overwrite`; refuse another run's results unless
    `overwrite`, which removes them first (old masks never mix with new ones); refuse a folder
    another live run holds; and find an unwritable one now, before the first frame."""
    folder = folder.absolute()
    for source in inputs:
        source = source.resolve()
        if folder.resolve() == source or folder.resolve() in source.parents:
            raise ValueError(f"{folder} holds the input {source}: give an --output of its own")
    if (folder / "images").is_dir() and any((folder / kind).is_dir() for kind in ("masks", "labels")):
        raise ValueError(f"{folder} holds a dataset's images and labels: give an --output of its own")
    found = [name for name in results if (folder / name).exists()]
    if found and not overwrite:
        shown = ", ".join(f"{name}/" if (folder / name).is_dir() else name for name in found[:3])
        raise ValueError(
            f"{folder} holds another run's results ({shown}): give a new --output, or --overwrite "
            "to replace them"
        )
    check_writable(folder)
    with locked(folder, program):
        for name in found:  # --overwrite: the old results go, all of them, before the new are written
            path = folder / name
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        yield


_STOP = threading.Event()  # set by SIGTERM, acted on by `stop_point`
_SIGNALLED: list[signal.Signals] = []  # what asked `stop_on_signals` for a stop


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While held, Ctrl-C (SIGINT) or SIGTERM asks for a stop (`stop_signal`) that a loop over
    frames acts on between batches, so what was measured is written; a second one raises
    KeyboardInterrupt at once. Raising on the first, wherever the main thread is, could land in a
    writer's finally, and SIGTERM's default ends the process with nothing written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum: int, frame: object) -> None:
        if _SIGNALLED:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        _SIGNALLED.append(signal.Signals(signum))

    _SIGNALLED.clear()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:  # a signal ignored on purpose (nohup's SIGINT) stays ignored
            signal.signal(s, ask)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _SIGNALLED.clear()


def stop_signal() -> signal.Signals | None:
    """The signal that asked `stop_on_signals` for a stop; None when none did."""
    return _SIGNALLED[0] if _SIGNALLED else None


def stop_requested() -> bool:
    """Whether a SIGTERM came since the last `stop_point`."""
    return _STOP.is_set()


def stop_point(requested: bool) -> None:
    """Where the training loop may stop (between batches, after an epoch is saved): `requested`,
    the ranks' verdict on `stop_requested` (distributed.any_rank), raises KeyboardInterrupt here.
    Raising it in the signal handler itself could land in a finally block or a __del__, where
    Python ignores it and the run goes on."""
    if requested:
        _STOP.clear()
        raise KeyboardInterrupt("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what `docker stop`, Slurm and Modal's preemption send) stops the run at the next
    `stop_point` as Ctrl-C does: the last finished epoch kept, the resume command printed, the
    MLflow run KILLED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _STOP.clear()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: _STOP.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def no_second_interrupt() -> Iterator[None]:
    """While a stopped run saves its state, a second Ctrl-C (or SIGTERM) is ignored, not a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
