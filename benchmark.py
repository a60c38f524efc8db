"""Measure every registered model side by side, in one run on this machine.

    python benchmark.py                                  # full run at 400x640
    python benchmark.py --quick --json bench.json        # fewer repetitions, a smaller training batch
    python benchmark.py --size 200x320 --models tiny_efficientvit,shallownet

Per model, at --size (default 400x640):
- trainable parameters; multiply-accumulates (MACs) of one frame (`models.__main__.count_macs`);
- PyTorch CPU latency at batch 1: eval mode, BatchNorms folded, all threads;
- onnxruntime CPU latency at batch 1 with 1 thread and with all threads, for the fp32 export and
  the static int8 one (`export_onnx.export_fp32` / `quantize_int8`, calibrated on a few
  synthetic frames), and throughput at batch 8 with all threads;
- achieved GMAC/s of those onnxruntime runs against the machine's peak, estimated as the best of
  a few 2048x2048 fp32 matmuls (torch.mm) with 1 thread and with all threads: the practical
  limit of dense fp32 arithmetic here (int8 runs are compared with the same fp32 peak);
- CPU training throughput, images/s of forward + CombinedLoss + backward + Adam (gradient
  clipping as in training) on synthetic frames and their loss targets, batch 8 (2 with --quick);
- peak resident memory of that training (Linux): the high-water mark (VmHWM) of a fresh process
  per model running one training step, and its growth over the process before the model and
  batch were built. tracemalloc misses torch's allocator, and in one long-lived process the
  largest model's peak would hide the others';
- on CUDA, GPU training images/s with AMP at batch 32, the batch already on the GPU (data
  loading not included; skipped, with a note, on CPU).
Untrained weights: speed does not depend on them. "All threads" is torch's thread count
(physical cores, or OMP_NUM_THREADS), used for onnxruntime too. Timings are interleaved: each
repetition measures every model in turn; one measurement repeats a call up to `iters` times or
`budget_s` seconds; the figure is the median over repetitions of those medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from config import size_argument
from data import EyeDataset, PreprocessConfig
from data.synthetic import SyntheticEyes
from losses import CombinedLoss
from models import MODEL_NAMES, build_model, fuse_model
from models.__main__ import count_macs

TARGET_SIZE = (400, 640)  # the size the project's targets are stated at
ORT_BATCH = 8
GPU_TRAIN_BATCH = 32
MATMUL_N = 2048
OPSET = 18
BASELINE, CANDIDATE = "shallownet", "tiny_efficientvit"
LATENCY_TARGET, TRAIN_TARGET = 0.25, 2.0  # candidate / baseline: latency at most, throughput at least
ORT_RUNS = {  # measurement -> (precision, threads "1" or "all", batch)
    "ort_fp32_1t": ("fp32", "1", 1),
    "ort_fp32_all": ("fp32", "all", 1),
    "ort_int8_1t": ("int8", "1", 1),
    "ort_int8_all": ("int8", "all", 1),
    "ort_fp32_b8": ("fp32", "all", ORT_BATCH),
    "ort_int8_b8": ("int8", "all", ORT_BATCH),
}
PROBE = "import json, sys, benchmark; print(json.dumps(benchmark.training_memory(*json.loads(sys.argv[1]))))"


@dataclass(frozen=True)
class Plan:
    reps: int  # interleaved repetitions
    iters: int  # calls per measurement at most
    budget_s: float  # seconds per measurement at most (one call at least)
    train_batch: int
    calib_frames: int  # int8 calibration


FULL = Plan(reps=3, iters=10, budget_s=2.0, train_batch=8, calib_frames=8)
QUICK = Plan(reps=1, iters=3, budget_s=0.5, train_batch=2, calib_frames=4)


def median_seconds(call: Callable[[], object], iters: int, budget_s: float) -> float:
    """Median wall time of `call` over up to `iters` runs, stopping once `budget_s` has passed."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while not times or (len(times) < iters and time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_batch(size: tuple[int, int], batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Synthetic frames with the loss targets training uses (image, label, weight, dist)."""
    dataset = EyeDataset(SyntheticEyes(batch, 0, size), size, PreprocessConfig(), None, seed=0)
    items = default_collate([dataset[i] for i in range(batch)])
    return {k: v.to(device) for k, v in items.items() if k != "index"}


def make_train_step(name: str, size: tuple[int, int], batch: int, device: torch.device) -> Callable[[], None]:
    """One optimisation step as `train_efficientvit.train_one_epoch` takes it (AMP on CUDA)."""
    torch.manual_seed(0)
    amp = device.type == "cuda"
    model = build_model(name).to(device).train()
    data = training_batch(size, batch, device)
    if amp:
        model = model.to(memory_format=torch.channels_last)
        data["image"] = data["image"].contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = CombinedLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(data["image"])
        loss = loss_fn(logits, data["label"], data["weight"], data["dist"], alpha=0.5)["total"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        if amp:
            torch.cuda.synchronize()

    return step


def memory_mb() -> dict[str, float] | None:
    """Resident memory now and its high-water mark (MiB), from Linux's /proc; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return None
    return {name: int(value.split()[0]) / 1024 for name, value in fields.items()}  # kB -> MiB


def training_memory(name: str, size: list[int], batch: int, threads: int) -> dict[str, float] | None:
    """Run in a fresh process (PROBE): resident memory before training, and its peak in one step.

    The high-water mark is reset first (/proc/self/clear_refs), so neither the imports' transient
    peak nor the one a child inherits from its parent at fork counts (ru_maxrss has both).
    """
    torch.set_num_threads(threads)
    before = memory_mb()
    if before is None:
        return None
    with contextlib.suppress(OSError):  # without it, the peak may include the imports'
        Path("/proc/self/clear_refs").write_text("5")
    make_train_step(name, (size[0], size[1]), batch, torch.device("cpu"))()
    return {"before_mb": before["VmRSS"], "peak_mb": memory_mb()["VmHWM"]}


def probe_training_memory(name: str, size: tuple[int, int], batch: int, threads: int) -> dict:
    here = Path(__file__).resolve().parent
    args = json.dumps([name, list(size), batch, threads])
    done = subprocess.run([sys.executable, "-c", PROBE, args], cwd=here, capture_output=True, text=True)
    if done.returncode < 0:
        raise RuntimeError(
            f"training-memory probe of {name} killed by signal {-done.returncode} (out of memory?)"
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"training-memory probe of {name} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    """One model ready to measure: its figures so far and the calls to time, by measurement."""

    name: str
    figures: dict
    calls: dict[str, Callable[[], object]]


def prepare(name: str, size: tuple[int, int], plan: Plan, threads: int, workdir: Path) -> Subject:
    """Count, export (fp32 and int8), open the onnxruntime sessions and build the training step."""
    # imported here so that the training-memory probe process loads no ONNX machinery
    from export_onnx import calibration_frames, export_fp32, export_metadata, quantize_int8
    from inference import load_predictor, prepare_batch

    torch.manual_seed(0)
    model = build_model(name).eval()
    figures = {"params": model.get_num_trainable_params(), "macs": count_macs(model, size)}
    frames, _ = calibration_frames(None, max(2, plan.calib_frames), size)
    inputs = prepare_batch(frames, size, PreprocessConfig())  # (N, 1, H, W)
    state = {"model_name": name, "img_size": list(size), "preprocess": PreprocessConfig().to_dict()}
    metadata = export_metadata(state, model, Path(f"{name}-untrained.pt"), OPSET)
    files = {"fp32": workdir / f"{name}.onnx", "int8": workdir / f"{name}.int8.onnx"}
    fused = fuse_model(model)
    export_fp32(fused, torch.from_numpy(inputs[:2]), files["fp32"], OPSET, metadata)
    quantize_int8(files["fp32"], files["int8"], inputs, metadata)
    figures.update({f"onnx_{k}_kb": path.stat().st_size / 1024 for k, path in files.items()})

    frame, batch = inputs[:1], inputs[np.arange(ORT_BATCH) % len(inputs)]
    x = torch.from_numpy(frame)
    calls: dict[str, Callable[[], object]] = {"torch_b1": torch.no_grad()(lambda: fused(x))}
    sessions = {
        (precision, count): load_predictor(files[precision], threads=1 if count == "1" else threads)
        for precision in files
        for count in ("1", "all")
    }
    for key, (precision, count, n) in ORT_RUNS.items():
        run, inp = sessions[precision, count].logits, frame if n == 1 else batch
        calls[key] = lambda run=run, inp=inp: run(inp)
    calls["train"] = make_train_step(name, size, plan.train_batch, torch.device("cpu"))
    return Subject(name, figures, calls)


def gpu_training_images_per_s(name: str, size: tuple[int, int], plan: Plan) -> float:
    step = make_train_step(name, size, GPU_TRAIN_BATCH, torch.device("cuda"))
    for _ in range(3):  # cuDNN autotuning and the allocator settle first
        step()
    seconds = [median_seconds(step, max(plan.iters, 5), plan.budget_s) for _ in range(plan.reps)]
    return GPU_TRAIN_BATCH / statistics.median(seconds)


def machine() -> dict:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # other work running
    }


def derive(figures: dict, seconds: dict[str, float], peak: dict[str, float], plan: Plan) -> None:
    """Latencies, throughputs and GMAC/s from the median seconds of each measurement."""
    figures["torch_latency_ms"] = 1000 * seconds["torch_b1"]
    figures["ort_gmacs"], figures["ort_peak_fraction"] = {}, {}
    for key, (_, count, batch) in ORT_RUNS.items():
        if batch == 1:
            figures[f"{key}_ms"] = 1000 * seconds[key]
        else:
            figures[f"{key}_images_per_s"] = batch / seconds[key]
        figures["ort_gmacs"][key] = figures["macs"] * batch / seconds[key] / 1e9
        figures["ort_peak_fraction"][key] = figures["ort_gmacs"][key] / peak[count]
    figures["train_images_per_s"] = plan.train_batch / seconds["train"]


def target_ratios(models: dict[str, dict]) -> dict | None:
    """tiny_efficientvit / shallownet: onnxruntime latencies at batch 1 (target <= 0.25) and
    training throughput (target >= 2); None unless both were measured."""
    if CANDIDATE not in models or BASELINE not in models:
        return None
    mine, theirs = models[CANDIDATE], models[BASELINE]
    return {
        "ort_latency_ratio": {
            k: mine[f"{k}_ms"] / theirs[f"{k}_ms"] for k, run in ORT_RUNS.items() if run[2] == 1
        },
        "ort_latency_target": LATENCY_TARGET,
        "train_throughput_ratio": mine["train_images_per_s"] / theirs["train_images_per_s"],
        "train_throughput_target": TRAIN_TARGET,
    }


def benchmark(
    size: tuple[int, int] = TARGET_SIZE,
    quick: bool = False,
    models: tuple[str, ...] = MODEL_NAMES,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure `models` (see the module docstring); returns every figure as a JSON-ready dict."""
    log = log or (lambda _: None)
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown or not models:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}")
    plan, threads, started = QUICK if quick else FULL, torch.get_num_threads(), time.perf_counter()
    about = machine()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=1) as pool:
        # the memory probes run one at a time, while the exports (not timed) run here
        memory = {n: pool.submit(probe_training_memory, n, size, plan.train_batch, threads) for n in models}
        subjects = []
        for name in models:
            log(f"{name}: counting MACs, exporting fp32 and int8 ONNX...")
            subjects.append(prepare(name, size, plan, threads, Path(tmp)))
        log("waiting for the training-memory probes (one fresh process per model)...")
        notes = [] if torch.cuda.is_available() else ["GPU training skipped: no CUDA device"]
        for subject in subjects:
            try:
                rss = memory[subject.name].result()
            except RuntimeError as exc:  # the other figures are still worth having
                rss = None
                notes.append(str(exc))
            subject.figures["train_peak_rss_mb"] = None if rss is None else rss["peak_mb"]
            subject.figures["train_rss_growth_mb"] = (
                None if rss is None else rss["peak_mb"] - rss["before_mb"]
            )
    log("measuring the peak fp32 matmul rate...")
    peak = {"1": matmul_peak_gmacs(1), "all": matmul_peak_gmacs(threads)}
    log("warming up (a training step is slow for ShallowNet)...")
    for subject in subjects:
        for call in subject.calls.values():
            call()
    samples: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in s.calls} for s in subjects}
    for rep in range(plan.reps):
        log(f"repetition {rep + 1} of {plan.reps}...")
        for subject in subjects:
            for key, call in subject.calls.items():
                samples[subject.name][key].append(median_seconds(call, plan.iters, plan.budget_s))
    for subject in subjects:
        derive(
            subject.figures, {k: statistics.median(v) for k, v in samples[subject.name].items()}, peak, plan
        )
        subject.figures["gpu_train_images_per_s"] = None
        if torch.cuda.is_available():
            log(f"{subject.name}: GPU training with AMP...")
            subject.figures["gpu_train_images_per_s"] = gpu_training_images_per_s(subject.name, size, plan)
    if size != TARGET_SIZE:
        notes.append(
            f"the targets are stated at {TARGET_SIZE[0]}x{TARGET_SIZE[1]}, this run used {size[0]}x{size[1]}"
        )
    figures = {s.name: s.figures for s in subjects}
    return {
        "machine": about,
        "settings": {
            "size": list(size),
            "quick": quick,
            "threads": threads,
            **{k: getattr(plan, k) for k in ("reps", "iters", "budget_s", "train_batch", "calib_frames")},
            "ort_batch": ORT_BATCH,
            "gpu_train_batch": GPU_TRAIN_BATCH,
        },
        "peak_gmacs": {**peak, "method": f"best of 5 torch.mm {MATMUL_N}x{MATMUL_N} fp32"},
        "models": figures,
        "targets": target_ratios(figures),
        "samples_s": samples,
        "notes": notes,
        "seconds": time.perf_counter() - started,
    }


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _threads(count: str, threads: int) -> str:
    n = 1 if count == "1" else threads
    return f"{n} thread{'s' if n > 1 else ''}"


def markdown_table(result: dict) -> str:
    """One table, a row per figure and a column per model."""
    models, settings = result["models"], result["settings"]
    (h, w), t = settings["size"], settings["threads"]
    rows: list[tuple[str, Callable[[dict], str]]] = [
        ("trainable parameters", lambda f: f"{f['params']:,}"),
        (f"GMACs per {h}x{w} frame", lambda f: f"{f['macs'] / 1e9:.3f}"),
        ("ONNX file, fp32 / int8 (KB)", lambda f: f"{f['onnx_fp32_kb']:.0f} / {f['onnx_int8_kb']:.0f}"),
        (f"PyTorch latency, batch 1, {_threads('all', t)} (ms)", lambda f: _ms(f["torch_latency_ms"])),
    ]
    for key, (precision, count, batch) in ORT_RUNS.items():
        what = f"onnxruntime {precision}, batch {batch}, {_threads(count, t)}"
        if batch == 1:
            rows.append((f"{what}: latency (ms)", lambda f, k=key: _ms(f[f"{k}_ms"])))
        else:
            rows.append((f"{what}: images/s", lambda f, k=key: f"{f[f'{k}_images_per_s']:.1f}"))
    for key, (precision, count, batch) in ORT_RUNS.items():
        what = f"onnxruntime {precision}, batch {batch}, {_threads(count, t)}: GMAC/s (% of peak)"
        rows.append(
            (what, lambda f, k=key: f"{f['ort_gmacs'][k]:.1f} ({100 * f['ort_peak_fraction'][k]:.0f}%)")
        )
    rows += [
        (
            f"training, batch {settings['train_batch']}, {_threads('all', t)}: images/s",
            lambda f: f"{f['train_images_per_s']:.2f}",
        ),
        (
            "training peak RSS, MiB (growth during training)",
            lambda f: (
                "n/a"
                if f["train_peak_rss_mb"] is None
                else f"{f['train_peak_rss_mb']:.0f} (+{f['train_rss_growth_mb']:.0f})"
            ),
        ),
        (
            f"GPU training, AMP, batch {GPU_TRAIN_BATCH}: images/s",
            lambda f: (
                "skipped (no CUDA)"
                if f["gpu_train_images_per_s"] is None
                else f"{f['gpu_train_images_per_s']:.0f}"
            ),
        ),
    ]
    lines = ["| | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    lines += [f"| {label} | " + " | ".join(cell(models[n]) for n in models) + " |" for label, cell in rows]
    return "\n".join(lines)


def machine_line(result: dict) -> str:
    m, peak, t = result["machine"], result["peak_gmacs"], result["settings"]["threads"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = "" if m["load_average"] is None else f", load average {m['load_average']:.1f} at the start"
    return (
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {_threads('all', t)} used{gpu}{load}; "
        f"{m['os']}, Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}. "
        f"Peak ({peak['method']}): {peak['1']:.1f} GMAC/s on 1 thread, {peak['all']:.1f} on {t}."
    )


def target_lines(result: dict) -> list[str]:
    targets, t = result["targets"], result["settings"]["threads"]
    if targets is None:
        return [f"Targets: not checked, they need both {CANDIDATE} and {BASELINE}."]
    lines = [f"Targets, {CANDIDATE} / {BASELINE}, measured side by side in this run:"]
    for key, ratio in targets["ort_latency_ratio"].items():
        precision, count, _ = ORT_RUNS[key]
        verdict = "met" if ratio <= LATENCY_TARGET else "not met"
        lines.append(
            f"- onnxruntime {precision} latency, batch 1, {_threads(count, t)}: {ratio:.3f}x "
            f"(target <= {LATENCY_TARGET}x: {verdict})"
        )
    ratio = targets["train_throughput_ratio"]
    verdict = "met" if ratio >= TRAIN_TARGET else "not met"
    lines.append(
        f"- training throughput, batch {result['settings']['train_batch']}: {ratio:.2f}x "
        f"(target >= {TRAIN_TARGET}x: {verdict})"
    )
    return lines + [f"Note: {note}." for note in result["notes"]]


def model_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {unknown or text!r}; choose from {', '.join(MODEL_NAMES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark every registered model side by side on this machine."
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="1 repetition, fewer calls, training batch 2")
    parser.add_argument(
        "--size", type=size_argument, default=TARGET_SIZE, help="input HxW (default: 400x640)"
    )
    parser.add_argument(
        "--models",
        type=model_list,
        default=MODEL_NAMES,
        help=f"comma-separated (default: {','.join(MODEL_NAMES)})",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        result = benchmark(
            args.size,
            args.quick,
            args.models,
            log=lambda m: print(f"[{time.perf_counter() - start:4.0f} s] {m}", file=sys.stderr),
        )
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(machine_line(result), "", markdown_table(result), "", *target_lines(result), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
