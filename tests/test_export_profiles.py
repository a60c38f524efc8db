"""Export profiles (--target): the model's export-friendly formulation against the one it replaced,
the mobile file's one-partition verdict for both model families, file names, bad settings, and the
shipped model at full size (slow). The TensorRT file's tests reuse test_export.py's export.

One real mobile export per model family (module fixture, 2-4 s each).
"""

from __future__ import annotations

import typing
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import PRETRAINED_PT, SMALL, make_checkpoint, randomize_batchnorm
from onnxruntime.tools.mobile_helpers import usability_checker
from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

import export_onnx as export_module
from config import ExportConfig, type_hints
from export.profiles import PROFILES
from export_onnx import export_onnx, main
from inference import model_file
from models.efficientvit import (
    LocalWindowAttention,
    SqueezeExcite,
    pad_bottom_right,
    window_merge,
    window_partition,
)

SIZE = SMALL  # (64, 96)
WINDOW = 7


# ---- the model's export-friendly formulation matches the one it replaced ----


def windows_6d(x: torch.Tensor, window: int) -> torch.Tensor:
    """The window partition the model had before: F.pad, then one 6-D permute."""
    b, c, h, w = x.shape
    x = F.pad(x, (0, -w % window, 0, -h % window))
    rows, cols = x.shape[2] // window, x.shape[3] // window
    x = x.view(b, c, rows, window, cols, window).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * rows * cols, c, window, window)


def window_attention_6d(module: LocalWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """LocalWindowAttention.forward as it was: padded, 6-D partition, attention, 6-D merge, crop."""
    b, c, h, w = x.shape
    rows, cols = -(-h // WINDOW), -(-w // WINDOW)
    out = module.attn(windows_6d(x, WINDOW)).view(b, rows, cols, c, WINDOW, WINDOW)
    return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * WINDOW, cols * WINDOW)[:, :, :h, :w]


@pytest.mark.parametrize(
    ("batch", "size"),
    [(1, (14, 21)), (3, (13, 22)), (2, (25, 40)), (1, (8, 7))],
    ids=["exact", "padded", "stage-3-of-400x640", "one-row-padded"],
)
def test_window_partition_and_merge_match_the_6d_formulation(batch, size):
    x = torch.randn(batch, 5, *size)
    padded = pad_bottom_right(x, WINDOW)
    assert torch.equal(padded, F.pad(x, (0, -size[1] % WINDOW, 0, -size[0] % WINDOW)))
    windows = window_partition(padded, WINDOW)
    assert torch.equal(windows, windows_6d(x, WINDOW))
    rows, cols = padded.shape[2] // WINDOW, padded.shape[3] // WINDOW
    assert torch.equal(window_merge(windows, rows, cols), padded)


@pytest.mark.parametrize("size", [(13, 22), (7, 7), (25, 40)])
def test_window_attention_matches_the_6d_formulation(size):
    torch.manual_seed(0)
    module = randomize_batchnorm(LocalWindowAttention(16, 4, 2, WINDOW, (3, 3))).eval()
    torch.nn.init.normal_(module.attn.attention_biases)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        want = module.attn(x) if size == (7, 7) else window_attention_6d(module, x)
        torch.testing.assert_close(module(x), want, rtol=0, atol=1e-6)


def test_squeeze_excite_pools_like_the_mean():
    torch.manual_seed(0)
    se, x = SqueezeExcite(8), torch.randn(2, 8, 13, 22)
    with torch.no_grad():
        gate = se.expand(se.act(se.reduce(x.mean(dim=(2, 3), keepdim=True)))).sigmoid()
        torch.testing.assert_close(se(x), x * gate, rtol=0, atol=1e-6)


# ---- mobile: static batch 1, one partition ----


def checker_partitions(path: Path) -> dict[str, usability_checker.PartitioningInfo]:
    """What onnxruntime's mobile usability checker finds for the file as it is (its own steps)."""
    optimized = path.with_name(f"{path.stem}.basic.onnx")
    optimize_model(path, optimized)
    model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    optimized.unlink()
    return {
        "NNAPI": usability_checker.check_nnapi_partitions(model, True),
        "CoreML MLProgram": usability_checker.check_coreml_partitions(
            model, True, "coreml_supported_mlprogram_ops.md"
        ),
    }


@pytest.fixture(scope="module", params=["tiny_efficientvit", "shallownet"])
def mobile(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"mobile-{request.param}")
    checkpoint = make_checkpoint(folder / "best.pt", request.param, img_size=SIZE)
    return export_onnx(checkpoint, target="mobile", calib_n=3, val_n=2)


def test_mobile_file_runs_whole_in_one_nnapi_and_coreml_partition(mobile):
    for name, info in checker_partitions(mobile.fp32.path).items():
        assert (info.num_partitions, info.num_supported_nodes) == (1, info.num_nodes), name
        assert mobile.fp32.partitions[name].whole  # and the report says so
    assert mobile.fp32.partitions["CoreML NeuralNetwork"].whole


def test_mobile_file_has_a_static_batch_of_one_and_matches_pytorch(mobile):
    graph = onnx.load(mobile.fp32.path).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 1, *SIZE]
    assert [p.batch for p in mobile.parity] == [1] and mobile.parity[0].passed
    assert mobile.fp32.path.name == "best.mobile.onnx" and mobile.int8 is None
    assert mobile.fp32.pupil_iou is not None  # the IoU ran the file one frame at a time
    exporter = {p.key: p.value for p in onnx.load(mobile.fp32.path).metadata_props}["exporter"]
    assert exporter.endswith('static batch 1"')


# ---- names and bad settings ----


def test_cli_target_names_the_main_file_of_the_shipped_checkpoint(mobile, monkeypatch):
    calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *args, **kwargs: calls.append(args) or mobile)
    assert main(["--checkpoint", "pretrained", "--target", "mobile"]) == 0
    assert main(["--checkpoint", "pretrained", "--target", "tensorrt"]) == 0
    shipped = model_file("pretrained", ".pt")
    assert calls == [
        (shipped, Path("tiny_efficientvit.mobile.onnx"), ExportConfig(target="mobile")),
        (shipped, Path("tiny_efficientvit.onnx"), ExportConfig(target="tensorrt")),
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target", "gpu"], "argument --target: invalid choice: 'gpu'"),
        (["--target", "mobile", "--int8"], "argument --int8: has no mobile file"),
    ],
)
def test_cli_bad_target_is_refused_naming_it(flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "pretrained", *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_every_target_has_a_profile():
    assert typing.get_args(type_hints(ExportConfig)["target"]) == tuple(PROFILES)


def test_unknown_target_is_a_value_error_before_exporting(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "export_fp32", None)  # must not be reached
    with pytest.raises(ValueError, match="target must be one of cpu, mobile, tensorrt, got 'gpu'"):
        export_onnx(PRETRAINED_PT, tmp_path / "m.onnx", target="gpu")
    assert not list(tmp_path.iterdir())


# ---- the shipped model at its full size ----


@pytest.mark.slow
def test_pretrained_model_exports_for_mobile_in_one_partition(tmp_path):
    report = export_onnx(PRETRAINED_PT, tmp_path / "m.mobile.onnx", target="mobile", calib_n=8, val_n=16)
    assert all(p.whole for p in report.fp32.partitions.values())
    assert report.fp32.pupil_iou > 0.8


@pytest.mark.slow
def test_pretrained_model_tensorrt_int8_keeps_its_accuracy(tmp_path):
    report = export_onnx(PRETRAINED_PT, tmp_path / "m.onnx", target="tensorrt", calib_n=16, val_n=16)
    assert report.fp32.pupil_iou > 0.8
    assert abs(report.int8.pupil_iou - report.fp32.pupil_iou) < 0.01
