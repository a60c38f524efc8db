"""ONNX export: parity, dynamic batch, (H, W) order, the model card as metadata, one self-contained
file, int8 (--int8's CPU scheme and --target tensorrt's), the mobile gate's refusal, where frames
come from, the report, bad input.

One real export per module (the `report` fixture, ~5 s): other tests reuse its file, or stand a
copy of it in for the exporter (`copy_exporter`) so that the verification still runs for real.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import PRETRAINED_PT, SMALL, make_checkpoint
from onnx import numpy_helper

import export_onnx as export_module
from config import ExportConfig, PreprocessConfig
from data.folders import find_pairs, read_pair
from data.frames import VAL_SEED_OFFSET
from data.synthetic import SyntheticEyes, render_eye, write_openeds
from export.profiles import CPU_INT8, TENSORRT_INT8
from export_onnx import (
    ExportError,
    calibration_frames,
    export_fp32,
    export_onnx,
    frames_folder,
    main,
    pupil_iou,
    validation_set,
)
from inference import load_predictor, model_file, pupil_mask
from models.card import ONNX_FORMAT, ModelCard
from models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from reports.export import ExportReport, FileFigures, Parity, Partitions

SIZE = SMALL  # (64, 96), non-square: a height / width swap anywhere changes the output shape
PREPROCESS = PreprocessConfig(gamma=0.9, clahe_clip=2.0)  # not the defaults: the stored one must travel
METRICS = {"val/pupil_iou": 0.5, "val/miou": 0.7, "train/loss": 0.1}
CARD = {"preprocess": PREPROCESS, "metrics": METRICS, "train_seed": 3, "train_style": "narrow"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A dataset root: 7 train and 3 validation frames, larger than the model's input."""
    return write_openeds(tmp_path_factory.mktemp("eyes") / "eyes", n=10, size=(100, 150), val_fraction=0.3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, dataset):
    """A model trained (so its card says) on `dataset`, which is on this machine."""
    folder = tmp_path_factory.mktemp("export")
    return make_checkpoint(folder / "best.pt", img_size=SIZE, train_data_dir=str(dataset), **CARD)


@pytest.fixture(scope="module")
def report(checkpoint):
    return export_onnx(checkpoint, int8=True, calib_n=4, val_n=4)


@pytest.fixture
def copy_exporter(report, monkeypatch):
    """The exporter hands back the module's fp32 file: what follows (parity, rename) runs for real."""
    monkeypatch.setattr(
        export_module, "export_fp32", lambda *args, **kwargs: shutil.copy(report.fp32.path, args[2])
    )


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_onnx_matches_pytorch_at_batch_1_and_3(report):
    assert [p.batch for p in report.parity] == [1, 3]
    for p in report.parity:
        assert p.max_abs_diff <= 1e-4
        assert p.argmax_agreement >= 0.9999


def test_default_output_sits_beside_the_checkpoint(report, checkpoint):
    assert report.fp32.path == checkpoint.with_suffix(".onnx")
    assert report.int8.path == checkpoint.with_name("best.int8.onnx")


def test_batch_axis_is_dynamic_and_size_is_height_by_width(report):
    graph = onnx.load(report.fp32.path).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert (graph.input[0].name, graph.output[0].name) == ("image", "logits")
    assert dims == ["batch", 1, *SIZE]
    predictor = load_predictor(report.fp32.path)
    assert predictor.logits(np.zeros((5, 1, *SIZE), np.float32)).shape == (5, 2, *SIZE)


def test_metadata_is_the_checkpoints_card(report, checkpoint):
    state = load_checkpoint(checkpoint)
    card = ModelCard.from_checkpoint(state, checkpoint)
    # the training folder by name: where it was on the trainer's disk stays in the checkpoint
    assert load_predictor(report.fp32.path).card == dataclasses.replace(
        card, train_data_dir=Path(card.train_data_dir).name
    )
    # not a default card, so the equality above means something
    assert card.preprocess == PREPROCESS and card.train_seed == 3 and card.train_style == "narrow"
    assert card.metrics == {"val/pupil_iou": 0.5, "val/miou": 0.7}  # validation only
    written = props(report.fp32.path)
    assert written["format"] == ONNX_FORMAT
    assert json.loads(written["checkpoint"]) == "best.pt"
    assert "opset 18" in json.loads(written["exporter"])


def test_metadata_completes_an_older_checkpoints_card(checkpoint, report, tmp_path, monkeypatch):
    """A checkpoint without a parameter count, its model config left to the defaults: the file
    gets both, counted and spelled out from the built model."""
    state = load_checkpoint(checkpoint)
    del state["num_params"]
    old = save_checkpoint({**state, "model_config": {}}, tmp_path / "old.pt")
    written = []
    monkeypatch.setattr(
        export_module,
        "export_fp32",
        lambda *args, **kwargs: written.append(kwargs["metadata"]) or shutil.copy(report.fp32.path, args[2]),
    )
    export_onnx(old, calib_n=3)
    model = model_from_checkpoint(state)
    assert json.loads(written[0]["num_params"]) == model.get_num_trainable_params()
    assert json.loads(written[0]["model_config"]) == json.loads(json.dumps(model.config.to_dict()))


def test_metadata_keys_are_those_of_the_shipped_onnx_file(report):
    """inference and older readers find every entry under the name the pretrained file uses."""
    shipped = set(props(model_file("pretrained", ".onnx")))
    assert set(props(report.fp32.path)) == shipped
    assert set(props(report.int8.path)) == shipped | {"quantization"}


def test_file_is_self_contained_without_debug_info(report):
    assert sorted(p.name for p in report.fp32.path.parent.iterdir()) == [
        "best.int8.onnx",
        "best.onnx",
        "best.pt",
    ]
    model = onnx.load(report.fp32.path, load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not any(node.metadata_props for node in model.graph.node)  # no stack traces with local paths


def test_int8_file_is_quantised_with_short_names(report):
    model = onnx.load(report.int8.path)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in model.graph.node}
    predictor = load_predictor(report.int8.path)
    assert predictor.card.quantization == CPU_INT8.card(4)
    assert predictor.logits(np.zeros((3, 1, *SIZE), np.float32)).shape == (3, 2, *SIZE)
    assert [v.name for v in (*model.graph.input, *model.graph.output)] == ["image", "logits"]
    assert max(len(t.name) for t in model.graph.initializer) <= 5  # short ids, not module paths


def test_int8_quantises_the_convs_but_not_the_depthwise_ones(report):
    """--int8's CPU scheme: uint8 activations x int8 weights (VNNI's kernel) on the Convs, not the
    depthwise ones; the attention's matmuls stay float."""
    graph = onnx.load(report.int8.path).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dequantize = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for conv in convs:
        depthwise = next((a.i for a in conv.attribute if a.name == "group"), 1) > 1
        assert (conv.input[1] in dequantize) != depthwise
        if not depthwise:
            assert tensors[dequantize[conv.input[1]].input[0]].dtype == np.int8
            assert tensors[dequantize[conv.input[0]].input[2]].dtype == np.uint8
    assert any(conv.input[1] in dequantize for conv in convs)
    assert not any(n.input[0] in dequantize for n in graph.node if n.op_type == "MatMul")  # attention: float


def test_frames_come_from_the_dataset_the_model_was_trained_on(report, dataset):
    assert f"{dataset / 'train' / 'images'}" in report.frames and "4 evenly spread" in report.frames
    assert "3 validation frames" in report.validation and str(dataset) in report.validation


def test_int8_iou_is_that_of_every_validation_pixel(report, dataset):
    pairs = [read_pair(s) for s in find_pairs(dataset, "validation")]
    for figures in (report.fp32, report.int8):
        probs = load_predictor(figures.path).probabilities([image for image, _ in pairs])
        tp = fp_fn = 0
        for prob, (_, label) in zip(probs, pairs, strict=True):
            mask = pupil_mask(prob)  # the pupil's blob, as predict draws it
            tp += np.count_nonzero(mask & (label > 0))
            fp_fn += np.count_nonzero(mask != (label > 0))
        assert figures.pupil_iou == pytest.approx(tp / (tp + fp_fn))


def test_pupil_iou_sums_pixels_over_the_set():
    probs = np.zeros((2, 4, 6), np.float32)
    probs[0, :2] = probs[1, :, :3] = 0.9
    labels = [np.zeros((4, 6), np.uint8), np.ones((4, 6), np.uint8)]
    predictor = SimpleNamespace(probabilities=lambda images, batch_size: list(probs))
    assert pupil_iou(predictor, [None, None], labels) == 12 / 36  # a mean of frame IoUs is 0.25


def test_summary_text():
    parity = [Parity(1, 2e-7, 1.0), Parity(3, 3e-7, 0.99995)]
    split = {"NNAPI": Partitions(4, 7, 210), "CoreML MLProgram": Partitions(1, 195, 195)}
    fp32 = FileFigures(Path("m.onnx"), 280.04, 235.8, 210, 0.61, pupil_iou=0.9, partitions=split)
    int8 = FileFigures(Path("m.int8.onnx"), 140.02, 58.95, 462, 1.44, pupil_iou=0.8875)
    report = ExportReport((64, 96), 18, "8 frames", parity, fp32, int8, validation="4 frames")
    assert report.summary().splitlines() == [
        "--target cpu: image (batch, 1, 64, 96) -> logits (batch, 2, 64, 96), opset 18",
        "parity with PyTorch on 8 frames: batch 1: max |diff| 2.00e-07, argmax agrees on 100.0000%; "
        "batch 3: max |diff| 3.00e-07, argmax agrees on 99.9950%",
        "m.onnx: 280.0 KB (weights 235.8 KB), 210 nodes, CPU latency 0.6 ms",
        "  partitions: NNAPI 4 (7/210 nodes), CoreML MLProgram 1 (195/195 nodes)",
        "m.int8.onnx: 140.0 KB (0.50x fp32; weights 59.0 KB, 0.25x), 462 nodes, CPU latency 1.4 ms",
        "CPU latency: onnxruntime, 1 frame, median; partitions: onnxruntime's mobile checker",
        "pupil IoU on 4 frames: fp32 0.9000, int8 0.8875 (-1.25 points)",
    ]
    static = ExportReport(
        (64, 96), 18, "8 frames", parity[:1], fp32, validation="4 frames", target="mobile", batch=1
    )
    assert (
        static.summary().splitlines()[0]
        == "--target mobile: image (1, 1, 64, 96) -> logits (1, 2, 64, 96), opset 18"
    )
    assert static.summary().splitlines()[-1] == "pupil IoU on 4 frames: fp32 0.9000"


def test_summary_gives_the_files_sizes(report):
    for figures in (report.fp32, report.int8):
        assert f"{figures.path}: {figures.path.stat().st_size / 1024:.1f} KB" in report.summary()


def test_export_that_does_not_match_pytorch_writes_nothing(report, checkpoint, tmp_path, monkeypatch):
    # the exporter hands back the 8-bit graph: onnxruntime and PyTorch now disagree
    monkeypatch.setattr(
        export_module, "export_fp32", lambda *args, **kwargs: shutil.copy(report.int8.path, args[2])
    )
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_onnx(checkpoint, tmp_path / "model.onnx", calib_n=3)
    assert not list(tmp_path.iterdir())


def test_errors_name_the_output_never_the_temporary_file(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "export_fp32", lambda *args, **kwargs: args[2].write_bytes(b"garbage"))
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError) as exc:
        export_onnx(checkpoint, output, calib_n=3)
    message = str(exc.value)
    assert message.startswith(f"{output}: not a loadable ONNX model") and ".tmp" not in message
    assert not list(tmp_path.iterdir())


def fake_exporter(monkeypatch, proto: onnx.ModelProto) -> None:
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: SimpleNamespace(model_proto=proto))


def test_opset_the_exporter_did_not_write_is_an_error(report, tmp_path, monkeypatch):
    fake_exporter(monkeypatch, onnx.load(report.fp32.path))  # opset 18
    with pytest.raises(ExportError, match="opset 19 requested, but the exporter wrote opset 18"):
        export_fp32(torch.nn.Identity(), torch.zeros(2, 1, *SIZE), tmp_path / "m.onnx", opset=19, metadata={})
    assert not list(tmp_path.iterdir())


def test_a_fixed_batch_axis_is_an_error(report, tmp_path, monkeypatch):
    proto = onnx.load(report.fp32.path)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # replaces dim_param
    fake_exporter(monkeypatch, proto)
    with pytest.raises(ExportError, match="fixed the batch axis at 1"):
        export_fp32(torch.nn.Identity(), torch.zeros(2, 1, *SIZE), tmp_path / "m.onnx", opset=18, metadata={})


def test_opset_below_18_is_refused_before_exporting(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "export_fp32", None)  # must not be reached
    with pytest.raises(ValueError, match="opset must be >= 18, got 17"):
        export_onnx(checkpoint, tmp_path / "model.onnx", opset=17)
    assert not list(tmp_path.iterdir())


# ---- tensorrt: fp32 with a dynamic batch, and symmetric signed int8 QDQ ----


@pytest.fixture(scope="module")
def tensorrt(report, checkpoint, tmp_path_factory):
    """--target tensorrt; the module's fp32 file stands in for the exporter, the quantisation is real."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            export_module, "export_fp32", lambda *args, **kwargs: shutil.copy(report.fp32.path, args[2])
        )
        output = tmp_path_factory.mktemp("tensorrt") / "best.onnx"
        return export_onnx(checkpoint, output, target="tensorrt", calib_n=4, val_n=2)


def test_tensorrt_writes_fp32_and_symmetric_int8_beside_it(tensorrt):
    assert (tensorrt.fp32.path.name, tensorrt.int8.path.name) == ("best.onnx", "best.trt.int8.onnx")
    assert [p.batch for p in tensorrt.parity] == [1, 3]
    assert load_predictor(tensorrt.int8.path).card.quantization == TENSORRT_INT8.card(4)
    assert tensorrt.int8.pupil_iou is not None and tensorrt.fp32.pupil_iou is not None


def test_tensorrt_int8_has_zero_points_of_0_and_int8_weights_per_channel(tensorrt):
    graph = onnx.load(tensorrt.int8.path).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    dequantize = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    zero_points = [tensors[n.input[2]] for n in dequantize.values() if len(n.input) > 2]
    assert zero_points and not any(z.any() for z in zero_points)
    activations = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert activations and all(tensors[n.input[2]].dtype == np.int8 for n in activations)
    for node in (n for n in graph.node if n.op_type in ("Conv", "MatMul")):
        assert all(name in dequantize for name in node.input[:2])  # both operands quantised
        if node.op_type == "Conv":
            weight = dequantize[node.input[1]]
            assert tensors[weight.input[0]].dtype == np.int8
            assert tensors[weight.input[1]].shape == tensors[weight.input[0]].shape[:1]  # one scale a channel


def test_a_graph_a_mobile_runtime_would_split_is_refused(checkpoint, copy_exporter, tmp_path):
    """The dynamic-batch file stands in for the mobile export: it matches PyTorch, NNAPI would split it."""
    with pytest.raises(
        ExportError, match=r"mobile\.onnx: a mobile runtime would split the graph \(NNAPI \d+"
    ):
        export_onnx(checkpoint, tmp_path / "m.mobile.onnx", target="mobile", calib_n=3)
    assert not list(tmp_path.iterdir())


def test_frames_folder_defaults_to_the_training_data_when_it_is_here(tmp_path):
    card = ModelCard("tiny_efficientvit", {}, SIZE, train_data_dir=str(tmp_path))
    assert frames_folder(None, card) == tmp_path
    assert frames_folder("elsewhere", card) == Path("elsewhere")
    assert frames_folder(None, dataclasses.replace(card, train_data_dir=str(tmp_path / "gone"))) is None


def test_synthetic_frames_calibrate_and_validate_without_a_folder():
    frames, where = calibration_frames(None, 4, SIZE)
    assert len(frames) == 4 and "seed 7" in where
    assert np.array_equal(frames[3], SyntheticEyes(4, 7, SIZE).read(3)[0])
    card = ModelCard("tiny_efficientvit", {}, SIZE, train_seed=3, train_style="narrow")
    images, labels, where = validation_set(None, 2, card)
    eyes = SyntheticEyes(2, 3 + VAL_SEED_OFFSET, SIZE, "narrow")  # the frames that run validated on
    assert all(np.array_equal(labels[i], eyes.read(i)[1]) for i in range(2))
    assert "2 synthetic validation frames" in where and "seed 3" in where


def test_calibration_and_validation_come_from_a_dataset_root(dataset):
    frames, where = calibration_frames(dataset, 4, SIZE)
    assert len(frames) == 4 and f"{dataset / 'train' / 'images'}" in where
    images, labels, where = validation_set(dataset, 8, ModelCard("shallownet", {}, SIZE))
    assert len(images) == len(labels) == 3 and "validation" in where
    assert labels[0].shape == images[0].shape == (100, 150)


def test_one_calibration_image_is_repeated_for_the_parity_batches(checkpoint, copy_exporter, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "one.png"), render_eye(1, 0, SIZE)[0])
    report = export_onnx(checkpoint, tmp_path / "one.onnx", calib_dir=folder, calib_n=3)
    assert "repeated to 3" in report.frames
    assert [p.batch for p in report.parity] == [1, 3] and all(p.passed for p in report.parity)


def test_hidden_files_are_not_calibration_images(tmp_path):
    cv2.imwrite(str(tmp_path / "eye.png"), render_eye(1, 0, SIZE)[0])
    (tmp_path / "._eye.png").write_bytes(b"macOS resource fork, not a PNG")
    frames, where = calibration_frames(tmp_path, 4, SIZE)
    assert str(tmp_path) in where and "repeated to 3" in where and len(frames) == 3


def test_cli_passes_the_settings_and_prints_the_report(report, checkpoint, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *args, **kwargs: calls.append(args) or report)
    assert main(["--checkpoint", str(checkpoint), "--int8", "--calib-n", "16", "--calib-dir", "x"]) == 0
    assert calls == [(checkpoint, None, ExportConfig(int8=True, calib_n=16, calib_dir="x"))]
    assert capsys.readouterr().out.strip() == report.summary()


def test_cli_exports_the_shipped_checkpoint_into_the_current_folder(report, monkeypatch):
    calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *args, **kwargs: calls.append(args) or report)
    assert main(["--checkpoint", "pretrained"]) == 0
    assert main(["--checkpoint", "pretrained", "--output", "here.onnx"]) == 0
    shipped = model_file("pretrained", ".pt")  # the .pt, not the shipped .onnx; never written over
    assert calls == [
        (shipped, Path("tiny_efficientvit.onnx"), ExportConfig()),
        (shipped, Path("here.onnx"), ExportConfig()),
    ]


def test_cli_setting_out_of_bounds_names_its_flag(checkpoint, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", str(checkpoint), "--calib-n", "2"])
    assert exc.value.code == 2 and "argument --calib-n: must be >= 3, got 2" in capsys.readouterr().err


def write_unknown_model(path):
    save_checkpoint(
        {
            "model_name": "resnet50",
            "model_config": {},
            "model_state": {},
            "preprocess": {},
            "img_size": [1, 1],
        },
        path,
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "checkpoint not found"),
        (lambda p: p.write_bytes(b"\x00garbage"), "corrupt or not a readable PyTorch checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a tiny-pupil-seg checkpoint"),
        (write_unknown_model, "unknown model 'resnet50'"),
    ],
    ids=["missing", "corrupt", "not-ours", "unknown-model"],
)
def test_cli_bad_checkpoint_is_one_line_error(tmp_path, capsys, make, message):
    path = tmp_path / "best.pt"
    if make is not None:
        make(path)
    assert main(["--checkpoint", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err and str(path) in err
    assert not path.with_suffix(".onnx").exists()


def test_cli_rejects_output_without_onnx_suffix(checkpoint, tmp_path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "model.bin")]) == 1
    assert "must end in .onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrained_model_exports_as_shipped_and_int8_keeps_its_accuracy(tmp_path):
    report = export_onnx(PRETRAINED_PT, tmp_path / "tiny_efficientvit.onnx", int8=True, calib_n=16, val_n=16)
    shipped = props(model_file("pretrained", ".onnx"))
    assert {**props(report.fp32.path), "exporter": shipped["exporter"]} == shipped  # the same metadata
    assert report.fp32.pupil_iou > 0.8  # the model finds pupils, so the comparison means something
    assert abs(report.int8.pupil_iou - report.fp32.pupil_iou) < 0.005  # half a point
