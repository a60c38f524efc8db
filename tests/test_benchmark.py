"""Benchmark: timing loop, figures from seconds, target ratios, the report, the training step it times,
the memory probe, and a quick run at a tiny size (slow)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

import benchmark
from benchmark import median_seconds
from config import TrainConfig
from models import MODEL_NAMES, build_model
from reports.benchmark import (
    BASELINE,
    CANDIDATE,
    ORT_RUNS,
    markdown_report,
    markdown_table,
    target_lines,
    target_ratios,
    timing_figures,
)
from training import speed as training_speed
from training.speed import make_train_step, probe_training, training_epoch

SIZE = (64, 96)  # (H, W)
FIGURES = {
    "params",
    "macs",
    "onnx_fp32_kb",
    "onnx_int8_kb",
    "torch_latency_ms",
    *(f"{k}_ms" if batch == 1 else f"{k}_images_per_s" for k, (*_, batch) in ORT_RUNS.items()),
    "ort_gmacs",
    "ort_peak_fraction",
    "train_images_per_s",
    "train_peak_rss_mb",
    "train_rss_growth_mb",
    "gpu_train_images_per_s",
    "gpu_epoch",
}


def figures(latency_ms: float, train_images_per_s: float) -> dict:
    values = dict.fromkeys(FIGURES, 1.0) | {
        "params": 50_000,
        "gpu_train_images_per_s": None,
        "gpu_epoch": None,
    }
    values |= {k: latency_ms for k in FIGURES if k.startswith("ort_") and k.endswith("_ms")}
    values |= {"ort_gmacs": dict.fromkeys(ORT_RUNS, 1.0), "ort_peak_fraction": dict.fromkeys(ORT_RUNS, 0.1)}
    return values | {"train_images_per_s": train_images_per_s}


def fake_result(models: dict) -> dict:
    return {
        "machine": {"cpu": "a CPU", "logical_cpus": 2, "os": "Linux x86_64", "python": "3.11", "torch": "2",
                    "onnxruntime": "1", "gpu": None, "load_average": None},
        "peak_gmacs": {"1": 20.0, "all": 35.0, "method": "best of 5 torch.mm"},
        "settings": {"size": [400, 640], "threads": 2, "train_batch": 8, "gpu_train_batch": 32,
                     "epoch_frames": 8916},
        "models": models,
        "targets": target_ratios(models),
        "notes": ["GPU training skipped: no CUDA device"],
    }  # fmt: skip


def saved_activation_mb(name: str, size: tuple[int, int], batch: int) -> float:
    """MiB of the tensors a training forward keeps for its backward (weights and input left out):
    memory one training step must hold at once, beyond the model and the batch."""
    model = build_model(name).train()
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.grad_fn is not None:  # made by the forward
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(batch, 1, *size))
    return sum(storages.values()) / 2**20


def test_median_seconds_stops_at_the_call_count_or_the_budget():
    calls = []
    median_seconds(lambda: calls.append(1), iters=3, budget_s=60)
    assert len(calls) == 3
    calls.clear()
    median_seconds(lambda: calls.append(1), iters=100, budget_s=0)
    assert len(calls) == 1  # one call at least, even with no time left


def test_timing_figures_are_latency_throughput_and_share_of_the_peak():
    seconds = dict.fromkeys([*ORT_RUNS, "torch_b1", "train"], 0.01)
    made = timing_figures(seconds, 10**9, {"1": 200.0, "all": 400.0}, train_batch=4)
    assert made["torch_latency_ms"] == pytest.approx(10.0)
    assert made["ort_fp32_1t_ms"] == pytest.approx(10.0)
    assert made["ort_int8_b8_images_per_s"] == pytest.approx(800.0)
    assert made["ort_gmacs"]["ort_int8_b8"] == pytest.approx(800.0)  # 8 frames of 1 GMAC in 10 ms
    assert made["ort_peak_fraction"] == pytest.approx(
        {"ort_fp32_1t": 0.5, "ort_fp32_all": 0.25, "ort_int8_1t": 0.5, "ort_int8_all": 0.25,
         "ort_fp32_b8": 2.0, "ort_int8_b8": 2.0}
    )  # fmt: skip
    assert made["train_images_per_s"] == pytest.approx(400.0)


def test_target_ratios_compare_the_candidate_with_the_baseline():
    ratios = target_ratios({CANDIDATE: figures(2.0, 30.0), BASELINE: figures(10.0, 10.0)})
    assert ratios["ort_latency_ratio"] == {
        k: pytest.approx(0.2) for k, run in ORT_RUNS.items() if run[2] == 1
    }
    assert ratios["train_throughput_ratio"] == pytest.approx(3.0)
    assert target_ratios({CANDIDATE: figures(2.0, 30.0)}) is None


def test_report_has_a_column_per_model_and_says_which_targets_are_met():
    result = fake_result({CANDIDATE: figures(2.0, 15.0), BASELINE: figures(10.0, 10.0)})
    table = markdown_table(result).splitlines()
    assert table[0] == f"| | {CANDIDATE} | {BASELINE} |"
    assert all(row.count("|") == 4 for row in table)
    lines = "\n".join(target_lines(result))
    assert "0.200x (target <= 0.25x: met)" in lines
    assert "1.50x (target >= 2.0x: not met)" in lines
    assert "GPU training skipped" in lines
    assert markdown_report(result).startswith("Machine: a CPU, 2 logical CPUs, 2 threads used; Linux")


def test_a_model_whose_training_process_failed_keeps_its_other_figures():
    seconds = dict.fromkeys([*ORT_RUNS, "torch_b1"], 0.01)  # no "train": its process was killed
    assert (
        timing_figures(seconds, 10**9, {"1": 200.0, "all": 400.0}, train_batch=4)["train_images_per_s"]
        is None
    )
    failed = figures(10.0, 10.0) | {"train_images_per_s": None, "train_peak_rss_mb": None}
    result = fake_result({CANDIDATE: figures(2.0, 15.0), BASELINE: failed})
    assert "| training, batch 8, 2 threads: images/s | 15.00 | n/a |" in markdown_table(result)
    assert "- training throughput, batch 8: not measured (see the notes)" in target_lines(result)


def test_notes_are_reported_without_targets_too():
    lines = target_lines(fake_result({BASELINE: figures(10.0, 10.0)}))
    assert lines[0].startswith("Targets: not checked")
    assert "Note: GPU training skipped: no CUDA device." in lines


def test_the_timed_step_is_training_train_step(monkeypatch):
    seen = []
    train_step = training_speed.train_step
    monkeypatch.setattr(
        training_speed, "train_step", lambda *a, **kw: seen.append(kw) or train_step(*a, **kw)
    )
    loss = make_train_step("tiny_efficientvit_xs", SIZE, 1, device=torch.device("cpu"))()
    assert len(seen) == 1 and seen[0]["grad_clip"] == TrainConfig().grad_clip
    assert math.isfinite(loss)


@pytest.mark.slow  # a fresh process that imports torch and trains
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_training_probe_times_each_repetition_and_its_peak_holds_a_steps_activations():
    run = probe_training("shallownet", SIZE, 1, threads=1, reps=2, iters=2, budget_s=0.0)
    assert run["ready_mb"] >= run["before_mb"] > 0
    assert run["peak_mb"] - run["ready_mb"] >= saved_activation_mb("shallownet", SIZE, 1)
    assert len(run["seconds"]) == 2 and all(s > 0 for s in run["seconds"])


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        (
            "import sys; sys.exit('ValueError: no such model')",
            "probe of nope failed: ValueError: no such model",
        ),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "probe of nope killed by signal 9"),
    ],
    ids=["fails", "killed"],
)
def test_a_failing_memory_probe_says_which_model_and_why(monkeypatch, probe, message):
    monkeypatch.setattr(training_speed, "PROBE", probe)
    with pytest.raises(RuntimeError, match=message):
        probe_training("nope", SIZE, 1, threads=1)


@pytest.mark.parametrize(("flag", "value"), [("--models", "tiny_efficientvit,nope"), ("--size", "8x8")])
def test_bad_arguments_name_the_value(capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main([flag, value])
    assert exit_info.value.code == 2
    assert value.split(",")[-1] in capsys.readouterr().err


def test_unknown_models_are_refused_before_anything_runs(monkeypatch):
    monkeypatch.setattr(benchmark.report, "machine", lambda: pytest.fail("started before checking the names"))
    with pytest.raises(ValueError, match="unknown model.*'nope'"):
        benchmark.benchmark(SIZE, quick=True, models=("tiny_efficientvit", "nope"))


@pytest.mark.slow
def test_quick_run_at_a_tiny_size_writes_every_figure(tmp_path, capsys, monkeypatch):
    def no_training_here(*args, **kwargs):  # training runs in a process of its own, never beside the sessions
        raise AssertionError("a training step was built in the benchmark's own process")

    monkeypatch.setattr(benchmark, "make_train_step", no_training_here)
    path = tmp_path / "bench.json"
    assert benchmark.main(["--quick", "--size", "64x96", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert set(result["models"]) == set(MODEL_NAMES)
    for name in MODEL_NAMES:
        assert set(result["models"][name]) == FIGURES
        assert result["models"][name]["train_images_per_s"] > 0
    assert set(result["targets"]) == {
        "ort_latency_ratio",
        "ort_latency_target",
        "train_throughput_ratio",
        "train_throughput_target",
    }
    assert result["settings"]["size"] == [64, 96]
    assert {"cpu", "torch", "onnxruntime"} <= set(result["machine"])
    camera = result["camera_rate"]  # on synthetic 192x192 eyes: no --recording
    assert camera["frames"] == benchmark.QUICK.camera_frames and camera["frame_size"] == [192, 192]
    assert set(camera["sizes"]) == {"auto", "native"}
    assert all(run["frames_per_s"] > 0 for run in camera["sizes"].values())
    out = capsys.readouterr().out
    assert out.startswith("Machine: ") and f"| | {' | '.join(MODEL_NAMES)} |" in out
    assert "| | --img-size auto (256x256) | --img-size native (192x192) |" in out


def test_a_whole_epoch_counts_every_frame_and_the_wait_for_data():
    epoch = training_epoch(
        "tiny_efficientvit_xs", SIZE, frames=6, batch=2, device=torch.device("cpu"), workers=1
    )
    assert epoch["images_per_s"] == pytest.approx(6 / epoch["seconds"], rel=0.5)  # three batches of two
    assert 0 < epoch["data_wait_fraction"] < 1


def test_the_gpu_epoch_row_gives_seconds_rate_and_wait_or_says_it_was_skipped():
    result = fake_result({BASELINE: figures(10.0, 10.0)})
    assert "| GPU epoch, 8,916 frames, data loading included | skipped (no CUDA) |" in markdown_table(result)
    result["models"][BASELINE]["gpu_epoch"] = {
        "seconds": 21.5,
        "images_per_s": 415.0,
        "data_wait_fraction": 0.12,
    }
    assert "| 21.5 s (415 images/s, 12% waiting for data) |" in markdown_table(result)


def test_with_cuda_the_gpu_figures_time_the_step_and_a_whole_epoch_at_the_gpu_batch(monkeypatch):
    epochs = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(benchmark, "gpu_training_images_per_s", lambda name, size, plan: 900.0)
    monkeypatch.setattr(
        benchmark, "training_epoch", lambda *args, **kw: epochs.append((args, kw)) or {"seconds": 1}
    )
    figures = benchmark.gpu_figures("tiny_efficientvit", SIZE, benchmark.QUICK)
    assert figures == {"gpu_train_images_per_s": 900.0, "gpu_epoch": {"seconds": 1}}
    ((args, kw),) = epochs
    assert (
        args == ("tiny_efficientvit", SIZE)
        and kw["frames"] == 8_916
        and kw["batch"] == benchmark.GPU_TRAIN_BATCH
    )
    assert kw["device"] == torch.device("cuda") and kw["workers"] >= 1
