"""Measure every registered model side by side, in one run on this machine.

    python benchmark.py                                  # full run at 400x640
    python benchmark.py --quick --json bench.json        # fewer repetitions, a smaller training batch
    python benchmark.py --size 200x320 --models tiny_efficientvit,shallownet
    python benchmark.py --only camera-rate --recording eye0.mp4    # predict.py's frames/s, per stage

Per model, at --size (default 400x640):
- trainable parameters; multiply-accumulates (MACs) of one frame (`models.__main__.count_macs`);
- PyTorch CPU latency at batch 1: eval mode, BatchNorms folded, all threads;
- onnxruntime CPU latency at batch 1 with 1 thread and with all threads, for the fp32 export and
  the static int8 one (`export_onnx.export_fp32` / `quantize_int8`, calibrated on a few
  synthetic frames), and throughput at batch 8 with all threads;
- achieved GMAC/s of those runs against the machine's peak: the best of a few 2048x2048 fp32
  matmuls (torch.mm) with 1 thread and with all threads (int8 runs are compared with it too);
- CPU training images/s of `training.loop.train_step` (forward, CombinedLoss, backward, clipping,
  Adam) on synthetic frames and their loss targets, batch 8 (2 with --quick), and its peak
  resident memory (Linux): both from a fresh process per model, run one at a time
  (`training.speed.probe_training`): the high-water mark (VmHWM) through its steps, and its
  growth over that process before the model and batch were built (tracemalloc misses torch's
  allocator). This process runs inference alone, so it needs less memory than the largest
  training step, and the two never run at once;
- on CUDA, GPU training images/s with AMP at batch 32, the batch already on the GPU.
And the camera-rate section (`camera_rate`, run first, so that a bad recording fails at once):
predict.py's frames/s end to end with the shipped model on --recording (default: synthetic 192x192
eyes, fewer frames with --quick) at each of --img-sizes, the ms per frame of each stage, and frame
by frame on one thread beside Pupil Labs' 2D detector. --only runs one section.
Untrained weights: speed does not depend on them. "All threads" is torch's thread count
(physical cores, or OMP_NUM_THREADS), used for onnxruntime too. Inference timings are
interleaved: each repetition measures every model in turn, each onnxruntime run on a session
opened for it (a session's memory arena keeps its largest batch's buffers); one measurement
repeats a call up to `iters` times or `budget_s` seconds; the figure is the median over
repetitions of those medians. Training is measured the same way, in its own process. What the
timings mean, the targets and the printed report are in reports/benchmark.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from config import DataConfig, ExportConfig, PreprocessConfig
from config.flags import argument_type, size_argument
from core.runfolder import write_text
from inference import RunSize
from models import MODEL_NAMES, build_model, fuse_model
from models.__main__ import count_macs
from models.card import ModelCard
from pipeline.speed import DEFAULT_SIZES, add_camera_rate_arguments, camera_rate
from reports import benchmark as report
from training.speed import make_train_step, median_seconds, probe_training, release_memory, training_epoch

TARGET_SIZE = DataConfig().img_size  # the size the project's targets are stated at: the default input
GPU_TRAIN_BATCH = 32
EPOCH_FRAMES = 8_916  # a GPU epoch: OpenEDS's training split, as synthetic eyes
MATMUL_N = 2048
OPSET = ExportConfig().opset
SECTIONS = ("models", "camera-rate")


def model_names(names: Sequence[str]) -> tuple[str, ...]:
    """Registered model names, at least one; a ValueError names the others."""
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown or list(names)}; choose from {', '.join(MODEL_NAMES)}")
    return tuple(names)


@dataclass(frozen=True)
class Plan:
    reps: int  # interleaved repetitions
    iters: int  # calls per measurement at most
    budget_s: float  # seconds per measurement at most (one call at least)
    train_batch: int
    calib_frames: int  # int8 calibration
    camera_frames: int  # the camera-rate section's synthetic recording, without --recording


FULL = Plan(reps=3, iters=10, budget_s=2.0, train_batch=8, calib_frames=8, camera_frames=1_200)
QUICK = Plan(reps=1, iters=3, budget_s=0.5, train_batch=2, calib_frames=4, camera_frames=32)


def gpu_training_images_per_s(name: str, size: tuple[int, int], plan: Plan) -> float:
    """Training images/s on CUDA with AMP, batch GPU_TRAIN_BATCH already on the GPU."""
    step = make_train_step(name, size, GPU_TRAIN_BATCH, device=torch.device("cuda"))
    for _ in range(3):  # cuDNN autotuning and the allocator settle first
        step()
    seconds = [median_seconds(step, max(plan.iters, 5), plan.budget_s) for _ in range(plan.reps)]
    return GPU_TRAIN_BATCH / statistics.median(seconds)


def gpu_figures(name: str, size: tuple[int, int], plan: Plan) -> dict:
    """With CUDA, training images/s with the batch on the GPU and a whole epoch with its data
    loading (every core but the training process's as a worker); None for both without."""
    if not torch.cuda.is_available():
        return {"gpu_train_images_per_s": None, "gpu_epoch": None}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    cuda, batch = torch.device("cuda"), GPU_TRAIN_BATCH
    epoch = training_epoch(
        name, size, frames=EPOCH_FRAMES, batch=batch, device=cuda, workers=max(1, cores - 1)
    )
    return {"gpu_train_images_per_s": gpu_training_images_per_s(name, size, plan), "gpu_epoch": epoch}


def matmul_peak_gmacs(threads: int, n: int = MATMUL_N, runs: int = 5) -> float:
    """Best GMAC/s of an n x n fp32 matmul with `threads` threads: the machine's practical peak."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = min(median_seconds(lambda: torch.mm(a, b), 1, 0.0) for _ in range(runs))
    finally:
        torch.set_num_threads(previous)
    return n**3 / best / 1e9


@dataclass
class Subject:
    """One model ready to measure: its figures so far, the PyTorch calls to time, by measurement,
    and what its onnxruntime sessions need (`ort_calls`)."""

    name: str
    figures: dict
    calls: dict[str, Callable[[], object]]
    files: dict[str, Path]  # the fp32 and int8 exports
    inputs: dict[int, np.ndarray]  # batch size -> (B, 1, H, W) preprocessed frames
    threads: int

    def ort_calls(self) -> Iterator[tuple[str, Callable[[], object]]]:
        """(measurement, call) per report.ORT_RUNS entry, each on a session of its own, opened
        when its turn comes, run once (its first run sizes its memory arena: not timed) and closed
        before the next opens. An arena keeps its largest batch's buffers: ShallowNet's four
        sessions at 400x640 held 11 GB together."""
        from inference import load_predictor

        for key, (precision, count, n) in report.ORT_RUNS.items():
            session = load_predictor(self.files[precision], threads=1 if count == "1" else self.threads)
            call = partial(session.logits, self.inputs[n])
            call()
            yield key, call
            del session, call
            release_memory()


def prepare(name: str, size: tuple[int, int], plan: Plan, *, threads: int, workdir: Path) -> Subject:
    """Count MACs, export (fp32 and int8) and fold the BatchNorms for PyTorch's latency."""
    from export_onnx import calibration_frames, export_fp32, exporter_name, quantize_int8
    from inference import prepare_batch

    torch.manual_seed(0)
    model = build_model(name).eval()
    figures = {"params": model.get_num_trainable_params(), "macs": count_macs(model, size)}
    frames, _ = calibration_frames(None, max(2, plan.calib_frames), size)
    inputs = prepare_batch(frames, size, PreprocessConfig())  # (N, 1, H, W)
    about = {"checkpoint": f"{name}-untrained", "exporter": exporter_name(OPSET)}
    metadata = ModelCard.of(model, name, size).to_onnx_metadata(**about)
    files = {"fp32": workdir / f"{name}.onnx", "int8": workdir / f"{name}.int8.onnx"}
    fused = fuse_model(model)
    export_fp32(fused, torch.from_numpy(inputs[:2]), files["fp32"], opset=OPSET, metadata=metadata)
    quantize_int8(files["fp32"], files["int8"], inputs, metadata=metadata)
    figures.update({f"onnx_{k}_kb": path.stat().st_size / 1024 for k, path in files.items()})

    frame, batch = inputs[:1], inputs[np.arange(report.ORT_BATCH) % len(inputs)]  # (1 | 8, 1, H, W)
    x = torch.from_numpy(frame)
    calls: dict[str, Callable[[], object]] = {"torch_b1": torch.no_grad()(lambda: fused(x))}
    return Subject(name, figures, calls, files, {1: frame, report.ORT_BATCH: batch}, threads)


def _train_in_fresh_processes(
    subjects: list[Subject], size: tuple[int, int], plan: Plan, *, threads: int, log: Callable[[str], None]
) -> tuple[dict[str, list[float]], list[str]]:
    """Each model's training step in a process of its own, one at a time (`training.speed.probe_training`):
    its peak memory and growth into its figures; returns the seconds of its repetitions by model,
    and a note per model whose process failed (its other figures are still worth having)."""
    seconds, notes = {}, []
    for subject in subjects:
        log(f"{subject.name}: training in a fresh process, {plan.reps} repetitions...")
        try:
            run = probe_training(
                subject.name, size, plan.train_batch, threads=threads, reps=plan.reps, iters=plan.iters,
                budget_s=plan.budget_s,
            )  # fmt: skip
        except RuntimeError as exc:
            notes.append(str(exc))
            run = {"peak_mb": None, "seconds": []}
        peak = run["peak_mb"]  # None off Linux
        growth = None if peak is None else peak - run["before_mb"]
        subject.figures.update(train_peak_rss_mb=peak, train_rss_growth_mb=growth)
        seconds[subject.name] = run["seconds"]
    return seconds, notes


def _time_interleaved(
    subjects: list[Subject], plan: Plan, log: Callable[[str], None]
) -> dict[str, dict[str, list[float]]]:
    """Seconds of each inference call, per model and measurement: a median per repetition."""
    for subject in subjects:
        subject.calls["torch_b1"]()  # warm-up
    keys = [*report.ORT_RUNS, "torch_b1"]
    samples: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in keys} for s in subjects}
    for rep in range(plan.reps):
        log(f"inference, repetition {rep + 1} of {plan.reps}...")
        for subject in subjects:
            for key, call in itertools.chain(subject.ort_calls(), subject.calls.items()):
                samples[subject.name][key].append(median_seconds(call, plan.iters, plan.budget_s))
                del call  # the last reference to an onnxruntime session but the generator's
    return samples


def model_section(
    size: tuple[int, int], plan: Plan, models: tuple[str, ...], *, threads: int, log: Callable[[str], None]
) -> dict:
    """Every figure of `models` (see the module docstring), the peak, the targets and the notes."""
    notes = [] if torch.cuda.is_available() else ["GPU training skipped: no CUDA device"]
    with tempfile.TemporaryDirectory() as workdir:
        subjects = []
        for name in models:
            log(f"{name}: counting MACs, exporting fp32 and int8 ONNX...")
            subjects.append(prepare(name, size, plan, threads=threads, workdir=Path(workdir)))
        train_seconds, failed = _train_in_fresh_processes(subjects, size, plan, threads=threads, log=log)
        log("measuring the peak fp32 matmul rate...")
        peak = {"1": matmul_peak_gmacs(1), "all": matmul_peak_gmacs(threads)}
        samples = _time_interleaved(subjects, plan, log)
    notes += failed
    for s in subjects:
        if train_seconds[s.name]:
            samples[s.name]["train"] = train_seconds[s.name]
        seconds = {k: statistics.median(v) for k, v in samples[s.name].items()}
        s.figures |= report.timing_figures(seconds, s.figures["macs"], peak, train_batch=plan.train_batch)
        if torch.cuda.is_available():
            log(f"{s.name}: GPU training with AMP, then a whole {EPOCH_FRAMES:,}-frame epoch...")
        s.figures |= gpu_figures(s.name, size, plan)
    if size != TARGET_SIZE:
        (h, w), (th, tw) = size, TARGET_SIZE
        notes.append(f"the targets are stated at {th}x{tw}, this run used {h}x{w}")
    figures = {s.name: s.figures for s in subjects}
    return {
        "peak_gmacs": {**peak, "method": f"best of 5 torch.mm {MATMUL_N}x{MATMUL_N} fp32"},
        "models": figures,
        "targets": report.target_ratios(figures),
        "samples_s": samples,
        "notes": notes,
    }


def benchmark(
    size: tuple[int, int] = TARGET_SIZE,
    quick: bool = False,
    models: tuple[str, ...] = MODEL_NAMES,
    *,
    sections: Sequence[str] = SECTIONS,
    recording: Path | None = None,
    img_sizes: Sequence[RunSize] = DEFAULT_SIZES,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure `models` and the camera rate on `recording` at `img_sizes` (see the module
    docstring), or the `sections` named; returns every figure as a JSON-ready dict."""
    log = log or (lambda _: None)
    models = model_names(models)
    plan, threads, started = QUICK if quick else FULL, torch.get_num_threads(), time.perf_counter()
    result = {
        "machine": report.machine(),
        "settings": {"size": list(size), "quick": quick, "threads": threads, **dataclasses.asdict(plan)}
        | {"ort_batch": report.ORT_BATCH, "gpu_train_batch": GPU_TRAIN_BATCH, "epoch_frames": EPOCH_FRAMES}
        | {"sections": list(sections)},
        "notes": [],
    }
    if "camera-rate" in sections:
        section = camera_rate(
            recording, img_sizes, reps=plan.reps, synthetic_frames=plan.camera_frames, log=log
        )
        result["camera_rate"] = section | {"target_frames_per_s": report.CAMERA_RATE_TARGET}
    if "models" in sections:
        result |= model_section(size, plan, models, threads=threads, log=log)
    return result | {"seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="1 repetition, fewer calls, training batch 2")
    parser.add_argument(
        "--size",
        type=size_argument,
        default=TARGET_SIZE,
        help=f"input HxW (default: {TARGET_SIZE[0]}x{TARGET_SIZE[1]})",
    )
    names = argument_type(lambda text: model_names([n.strip() for n in text.split(",") if n.strip()]))
    default = ",".join(MODEL_NAMES)
    parser.add_argument(
        "--models", type=names, default=MODEL_NAMES, help=f"comma-separated (default: {default})"
    )
    parser.add_argument("--only", choices=SECTIONS, help="run this section alone (default: both)")
    add_camera_rate_arguments(parser)  # --recording, --img-sizes
    args = parser.parse_args(argv)
    if args.only == "models" and args.recording is not None:
        parser.error("--recording is for the camera-rate section")
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:4.0f} s] {message}", file=sys.stderr)

    try:
        sections = (args.only,) if args.only else SECTIONS
        result = benchmark(
            args.size, args.quick, args.models, sections=sections, recording=args.recording,
            img_sizes=args.img_sizes, log=log,
        )  # fmt: skip
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.json, json.dumps(result, indent=2) + "\n")
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.markdown_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
