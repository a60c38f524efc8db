"""Benchmark: timing loop, target ratios, the report, memory probe, and a quick run at a tiny size (slow)."""

from __future__ import annotations

import json
import sys

import pytest

from benchmark import (
    BASELINE,
    CANDIDATE,
    ORT_RUNS,
    markdown_table,
    median_seconds,
    probe_training_memory,
    target_lines,
    target_ratios,
    training_memory,
)
from benchmark import main as benchmark_main
from models import MODEL_NAMES

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
}


def figures(latency_ms: float, train_images_per_s: float) -> dict:
    values = dict.fromkeys(FIGURES, 1.0) | {"params": 50_000, "gpu_train_images_per_s": None}
    values |= {k: latency_ms for k in FIGURES if k.startswith("ort_") and k.endswith("_ms")}
    values |= {"ort_gmacs": dict.fromkeys(ORT_RUNS, 1.0), "ort_peak_fraction": dict.fromkeys(ORT_RUNS, 0.1)}
    return values | {"train_images_per_s": train_images_per_s}


def fake_result(models: dict) -> dict:
    return {
        "settings": {"size": [400, 640], "threads": 2, "train_batch": 8},
        "models": models,
        "targets": target_ratios(models),
        "notes": ["GPU training skipped: no CUDA device"],
    }


def test_median_seconds_stops_at_the_call_count_or_the_budget():
    calls = []
    median_seconds(lambda: calls.append(1), iters=3, budget_s=60)
    assert len(calls) == 3
    calls.clear()
    median_seconds(lambda: calls.append(1), iters=100, budget_s=0)
    assert len(calls) == 1  # one call at least, even with no time left


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_training_memory_reports_the_peak_of_one_step():
    memory = training_memory("tiny_efficientvit_xs", [48, 64], 1, 1)
    assert memory["peak_mb"] >= memory["before_mb"] > 0


def test_a_failing_memory_probe_says_which_model_and_why():
    with pytest.raises(RuntimeError, match="probe of nope failed: .*unknown model 'nope'"):
        probe_training_memory("nope", (48, 64), 1, 1)


@pytest.mark.parametrize(("flag", "value"), [("--models", "tiny_efficientvit,nope"), ("--size", "8x8")])
def test_bad_arguments_name_the_value(capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_main([flag, value])
    assert exit_info.value.code == 2
    assert value.split(",")[-1] in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_at_a_tiny_size_writes_every_figure(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert benchmark_main(["--quick", "--size", "64x96", "--json", str(path)]) == 0
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
    out = capsys.readouterr().out
    assert out.startswith("Machine: ") and f"| | {' | '.join(MODEL_NAMES)} |" in out
