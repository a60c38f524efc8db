"""What benchmark.py's timings mean and how its result reads: the onnxruntime runs it times, the
figures made from the seconds measured, the candidate / baseline targets, the camera-rate stages and
target, and the Markdown it prints (`markdown_report`: machine line, table, target lines, the
camera-rate section).

Nothing here measures: `machine` describes this machine, every other function reads numbers
benchmark.py measured or its result dict (or its saved JSON). Only the standard library is
imported, so a saved result prints again without torch.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Callable

BASELINE, CANDIDATE = "shallownet", "tiny_efficientvit"
LATENCY_TARGET, TRAIN_TARGET = 0.25, 2.0  # candidate / baseline: latency at most, throughput at least
CAMERA_RATE_TARGET = 200  # frames/s end to end: predict.py on the 192x192 dev recording, 2 cores, overlay off
STAGES = {  # the camera-rate section's stages (pipeline/speed.py), in order: what each holds
    "decode": "cv2, to grey",
    "preprocess": "fit, gamma, CLAHE, normalise",
    "model": "onnxruntime, softmax",
    "measure": "onto the frame, ellipse, confidence, mask",
    "write": "time series, CSVs, timeseries.png",
}
ORT_BATCH = 8
ORT_RUNS = {  # measurement -> (precision, threads "1" or "all", batch)
    "ort_fp32_1t": ("fp32", "1", 1),
    "ort_fp32_all": ("fp32", "all", 1),
    "ort_int8_1t": ("int8", "1", 1),
    "ort_int8_all": ("int8", "all", 1),
    "ort_fp32_b8": ("fp32", "all", ORT_BATCH),
    "ort_int8_b8": ("int8", "all", ORT_BATCH),
}


def timing_figures(
    seconds: dict[str, float], macs: int, peak: dict[str, float], *, train_batch: int
) -> dict[str, float | dict[str, float]]:
    """Latencies (ms), throughputs (images/s) and GMAC/s from the median seconds of each
    measurement; `peak` is the matmul peak in GMAC/s by thread count ("1", "all")."""
    figures: dict = {"torch_latency_ms": 1000 * seconds["torch_b1"], "ort_gmacs": {}, "ort_peak_fraction": {}}
    for key, (_, count, batch) in ORT_RUNS.items():
        if batch == 1:
            figures[f"{key}_ms"] = 1000 * seconds[key]
        else:
            figures[f"{key}_images_per_s"] = batch / seconds[key]
        figures["ort_gmacs"][key] = macs * batch / seconds[key] / 1e9
        figures["ort_peak_fraction"][key] = figures["ort_gmacs"][key] / peak[count]
    train = train_batch / seconds["train"] if "train" in seconds else None  # None: its process failed
    return figures | {"train_images_per_s": train}


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
        "train_throughput_ratio": None
        if None in (mine["train_images_per_s"], theirs["train_images_per_s"])
        else mine["train_images_per_s"] / theirs["train_images_per_s"],
        "train_throughput_target": TRAIN_TARGET,
    }


def machine() -> dict:
    """The CPU, OS, Python, torch and onnxruntime versions, GPU and load of this machine."""
    import onnxruntime  # here, so that a saved result prints without them
    import torch

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


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _threads(count: str, threads: int) -> str:
    n = 1 if count == "1" else threads
    return f"{n} thread{'s' if n > 1 else ''}"


def _memory(f: dict) -> str:
    if f["train_peak_rss_mb"] is None:
        return "n/a"
    return f"{f['train_peak_rss_mb']:.0f} (+{f['train_rss_growth_mb']:.0f})"


def _gpu(f: dict) -> str:
    return (
        "skipped (no CUDA)" if f["gpu_train_images_per_s"] is None else f"{f['gpu_train_images_per_s']:.0f}"
    )


def _epoch(f: dict) -> str:
    if (epoch := f["gpu_epoch"]) is None:
        return "skipped (no CUDA)"
    share = 100 * epoch["data_wait_fraction"]
    return f"{epoch['seconds']:.1f} s ({epoch['images_per_s']:.0f} images/s, {share:.0f}% waiting for data)"


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
            lambda f: "n/a" if f["train_images_per_s"] is None else f"{f['train_images_per_s']:.2f}",
        ),
        ("training peak RSS, MiB (growth during training)", _memory),
        (f"GPU training, AMP, batch {settings['gpu_train_batch']}: images/s", _gpu),
        (f"GPU epoch, {settings['epoch_frames']:,} frames, data loading included", _epoch),
    ]
    return _grid(models, rows)


def _grid(columns: dict[str, dict], rows: list[tuple[str, Callable[[dict], str]]]) -> str:
    """A Markdown table: a row per (label, cell), a column per named dict of figures."""
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cell(f) for f in columns.values()) + " |" for label, cell in rows]
    return "\n".join(lines)


def machine_line(result: dict) -> str:
    """The machine, the software and the matmul peak (where the models were measured), in one line."""
    m, t = result["machine"], result["settings"]["threads"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = "" if m["load_average"] is None else f", load average {m['load_average']:.1f} at the start"
    line = (
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {_threads('all', t)} used{gpu}{load}; "
        f"{m['os']}, Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}."
    )
    if (peak := result.get("peak_gmacs")) is None:
        return line
    return f"{line} Peak ({peak['method']}): {peak['1']:.1f} GMAC/s on 1 thread, {peak['all']:.1f} on {t}."


def target_lines(result: dict) -> list[str]:
    """Each target's ratio and whether it is met, then the run's notes."""
    targets, t = result["targets"], result["settings"]["threads"]
    notes = [f"Note: {note}." for note in result["notes"]]
    if targets is None:
        return [f"Targets: not checked, they need both {CANDIDATE} and {BASELINE}.", *notes]
    lines = [f"Targets, {CANDIDATE} / {BASELINE}, measured side by side in this run:"]
    for key, ratio in targets["ort_latency_ratio"].items():
        precision, count, _ = ORT_RUNS[key]
        verdict = "met" if ratio <= LATENCY_TARGET else "not met"
        lines.append(
            f"- onnxruntime {precision} latency, batch 1, {_threads(count, t)}: {ratio:.3f}x "
            f"(target <= {LATENCY_TARGET}x: {verdict})"
        )
    ratio, batch = targets["train_throughput_ratio"], result["settings"]["train_batch"]
    if ratio is None:
        lines.append(f"- training throughput, batch {batch}: not measured (see the notes)")
    else:
        verdict = "met" if ratio >= TRAIN_TARGET else "not met"
        lines.append(
            f"- training throughput, batch {batch}: {ratio:.2f}x (target >= {TRAIN_TARGET}x: {verdict})"
        )
    return lines + notes


def _stage(r: dict, stage: str) -> str:
    """A stage's ms per frame and its share of the stages' sum."""
    ms = r["stage_ms"]
    return f"{_ms(ms[stage])} ({ms[stage] / sum(ms.values()):.0%})"


def _stages_sum(r: dict) -> str:
    total = sum(r["stage_ms"].values())
    return f"{_ms(total)} ({1000 / total:.0f})"


def camera_rate_table(section: dict) -> str:
    """A column per --img-size: frames/s end to end (median and range of its runs), CPU ms per
    frame, then each stage's ms per frame and share of the stages' sum, and that sum."""
    runs = {}
    for name, r in section["sizes"].items():
        size = "x".join(map(str, r["input_size"]))
        runs[f"--img-size {name}" + ("" if size == name else f" ({size})")] = r
    first = next(iter(runs.values()))
    reps = len(first["frames_per_s_runs"])
    rows: list[tuple[str, Callable[[dict], str]]] = [
        (
            "end to end (predict.predict): frames/s"
            + (f", median (range) of {reps} runs" if reps > 1 else ""),
            lambda r: f"{r['frames_per_s']:.1f}" + _spread(r["frames_per_s_runs"]),
        ),
        ("end to end: CPU ms per frame, all threads", lambda r: _ms(r["cpu_ms_per_frame"])),
    ]
    rows += [
        (f"{stage} ({STAGES.get(stage, '?')}): ms per frame (share)", lambda r, s=stage: _stage(r, s))
        for stage in first["stage_ms"]
    ]
    rows.append(("stages' sum: ms per frame (frames/s)", _stages_sum))
    return _grid(runs, rows)


def _spread(values: list[float]) -> str:
    return f" ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else ""


def one_thread_table(section: dict) -> str:
    """A row per detector run on one thread, frame by frame: ms per frame (wall and CPU), frames/s."""
    lines = [
        "| one thread, frame by frame: a frame in, its ellipse and confidence out | ms per frame: wall (CPU) "
        "| frames/s |",
        "|---|---:|---:|",
    ]
    for row in section["one_thread"]:
        speed = f"{_ms(row['ms_per_frame'])} ({_ms(row['cpu_ms_per_frame'])})"
        lines.append(f"| {row['label']} | {speed} | {row['frames_per_s']:.0f} |")
    return "\n".join(lines)


def camera_rate_lines(section: dict) -> list[str]:
    """The camera-rate section: what ran on what, its table, how to read it, the target, the
    one-thread table beside Pupil Labs' 2D detector, and the section's notes."""
    (h, w), target = section["frame_size"], section["target_frames_per_s"]
    rates = ", ".join(
        f"{name} {r['frames_per_s']:.1f} ({'met' if r['frames_per_s'] >= target else 'not met'})"
        for name, r in section["sizes"].items()
    )
    return [
        f"Camera rate: {section['model']} as predict.py runs it (all threads, no spinning, batch "
        f"{section['batch']}, overlay off) on {section['recording']}: {section['frames']:,} frames of "
        f"{h}x{w} at {section['fps']:.0f} frames/s.",
        "",
        camera_rate_table(section),
        "",
        "End to end: predict.predict's wall-clock time over the recording, after an untimed short run "
        "(imports, the model's first runs); it overlaps decoding, the model and the rest on threads, so its "
        "time is not the stages' sum. Stages: each timed alone, one after another, on the same frames; "
        "write's timeseries.png is a fixed cost per recording, which a short one shares among few frames.",
        f"Target: >= {target} frames/s end to end (on the 192x192 dev recording, 2 cores): {rates}.",
        "",
        one_thread_table(section),
        *(f"Note: {note}." for note in section["notes"]),
    ]


def markdown_report(result: dict) -> str:
    """What benchmark.py prints: the machine line, then each section that ran: the models' table
    and target lines, the camera-rate section."""
    lines = [machine_line(result)]
    if "models" in result:
        lines += ["", markdown_table(result), "", *target_lines(result)]
    if "camera_rate" in result:
        lines += ["", *camera_rate_lines(result["camera_rate"])]
    return "\n".join(lines)
