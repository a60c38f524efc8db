"""Training figures for benchmark.py: one training step as training does it, its speed and peak
memory in a fresh process per model, and a whole epoch with the data loading included (the "GPU
epoch").

A fresh process per model, not the benchmark's own: there, the largest model's peak would hide the
others', and a process that also holds onnxruntime sessions and the exporter kept a ShallowNet
step's freed activations beside the next step's and grew to twice the step's peak (21 GB at
400x640, batch 8); the benchmark's process now runs inference alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import default_collate

from config import AugmentConfig, PreprocessConfig, TrainConfig
from data import EyeDataset, expand_batch, synthetic_frames
from data.loading import close_loader, make_loader
from models import build_model
from training.loop import make_optimiser, place, run_epoch, train_step
from training.losses import CombinedLoss

PROBE = (
    "import json, sys; from training import speed as t; "
    "print(json.dumps(t.training_run(**json.loads(sys.argv[1]))))"
)


def median_seconds(call: Callable[[], object], iters: int, budget_s: float) -> float:
    """Median wall time of `call` over up to `iters` runs, stopping once `budget_s` has passed."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while not times or (len(times) < iters and time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_train_step(name: str, size: tuple[int, int], batch: int, *, device: torch.device) -> Callable:
    """`training.loop.train_step` on one fixed batch, set up as training sets it up (Adam at the
    default learning rate, gradient clipping, AMP and channels_last on CUDA); returns the loss."""
    torch.manual_seed(0)
    config = TrainConfig()
    model = place(build_model(name), device).train()
    dataset = EyeDataset(synthetic_frames(batch, 0, size), size, PreprocessConfig(), None, seed=0)
    data = expand_batch(default_collate([dataset[i] for i in range(batch)]), device, PreprocessConfig())
    optimizer, _, scaler = make_optimiser(model, config)
    loss_fn, clip = CombinedLoss(), config.grad_clip

    def step() -> float:
        _, losses = train_step(
            model, data, loss_fn, alpha=0.5, optimizer=optimizer, scaler=scaler, grad_clip=clip
        )
        return losses["total"].item()  # on CUDA, waits for the step: it is timed, not only queued

    return step


def memory_mb() -> dict[str, float] | None:
    """Resident memory now and its high-water mark (MiB), from Linux's /proc; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return None
    return {name: int(value.split()[0]) / 1024 for name, value in fields.items()}  # kB -> MiB


def release_memory() -> None:
    """Give the memory freed since the last call back to the system (glibc's malloc_trim; nothing
    elsewhere). glibc keeps freed blocks below its mmap threshold, which rises with each large
    block freed up to 32 MiB, for reuse; a process alternating training steps with onnxruntime
    sessions then kept each step's activations beside the next one's and grew to twice the
    step's peak (21 GB for ShallowNet at 400x640, batch 8)."""
    if (trim := _malloc_trim()) is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once (find_library runs ldconfig); None elsewhere (musl has none)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def training_run(
    name: str,
    size: list[int],
    batch: int,
    *,
    threads: int,
    reps: int = 0,
    iters: int = 1,
    budget_s: float = 0.0,
) -> dict:
    """Run in a fresh process (PROBE): one training step, then `reps` timed measurements of
    `median_seconds(step, iters, budget_s)` (`seconds`, one per repetition), with what the process
    gives back to the system between them. With Linux's /proc, resident memory before the model
    and batch are built (`before_mb`), once they are (`ready_mb`), and its peak through every step
    (`peak_mb`); None elsewhere.

    The high-water mark is reset first (/proc/self/clear_refs), so neither the imports' transient
    peak nor the one a child inherits from its parent at fork counts (ru_maxrss has both).
    """
    torch.set_num_threads(threads)
    before = memory_mb()
    with contextlib.suppress(OSError):  # without it, the peak may include the imports'
        Path("/proc/self/clear_refs").write_text("5")
    step = make_train_step(name, (size[0], size[1]), batch, device=torch.device("cpu"))
    ready = memory_mb()
    step()  # the first step allocates what the next ones reuse: not timed
    seconds = []
    for _ in range(reps):
        release_memory()
        seconds.append(median_seconds(step, iters, budget_s))
    if before is None:
        return {"before_mb": None, "ready_mb": None, "peak_mb": None, "seconds": seconds}
    peak = memory_mb()["VmHWM"]
    return {"before_mb": before["VmRSS"], "ready_mb": ready["VmRSS"], "peak_mb": peak, "seconds": seconds}


def probe_training(
    name: str,
    size: tuple[int, int],
    batch: int,
    *,
    threads: int,
    reps: int = 0,
    iters: int = 1,
    budget_s: float = 0.0,
) -> dict:
    """`training_run` in a fresh Python process; a RuntimeError naming the model if it fails."""
    here = Path(__file__).resolve().parents[1]  # the repository, whose packages the probe imports
    settings = {"name": name, "size": list(size), "batch": batch, "threads": threads}
    args = json.dumps(settings | {"reps": reps, "iters": iters, "budget_s": budget_s})
    done = subprocess.run([sys.executable, "-c", PROBE, args], cwd=here, capture_output=True, text=True)
    if done.returncode != 0:
        last, signal = (done.stderr.strip().splitlines() or ["no message"])[-1], -done.returncode
        why = f"killed by signal {signal} (out of memory?)" if signal > 0 else f"failed: {last}"
        raise RuntimeError(f"training probe of {name} {why}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_epoch(
    name: str, size: tuple[int, int], *, frames: int, batch: int, device: torch.device, workers: int
) -> dict:
    """One whole training epoch as train_efficientvit runs it: `frames` augmented synthetic eyes
    through data.loading's workers, run_epoch with AMP on CUDA; its seconds
    (worker start-up and cuDNN's autotuning included), images/s and the share spent waiting for data."""
    torch.backends.cudnn.benchmark = device.type == "cuda"
    config = TrainConfig(model=name, batch_size=batch, workers=workers)
    dataset = EyeDataset(synthetic_frames(frames, 0, size), size, PreprocessConfig(), AugmentConfig(), seed=0)
    model = place(build_model(name), device)
    optimizer, _, scaler = make_optimiser(model, config)
    loader, start = make_loader(dataset, config, shuffle=True, device=device), time.perf_counter()
    try:
        update = {"optimizer": optimizer, "scaler": scaler, "grad_clip": config.grad_clip}
        metrics = run_epoch(
            model, loader, CombinedLoss(), alpha=0.5, train=True, desc=f"{name} epoch", **update
        )
    finally:
        close_loader(loader)
    return {
        "seconds": time.perf_counter() - start,
        "images_per_s": metrics["train/images_per_s"],
        "data_wait_fraction": metrics["train/data_wait_fraction"],
    }
