"""ONNX export: parity, dynamic batch, (H, W) order, metadata, one self-contained file, int8, bad input."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import randomize_batchnorm

import export_onnx as export_module
from data import PreprocessConfig
from data.synthetic import render_eye, write_openeds
from export_onnx import (
    ExportError,
    calibration_frames,
    export_onnx,
    main,
    pupil_iou,
    validation_set,
)
from inference import METADATA_FORMAT, Predictor, load_predictor
from metrics import confusion_metrics, mask_counts
from models import EfficientViTConfig, build_model
from models.checkpoint import load_checkpoint, save_checkpoint

SIZE = (96, 160)  # non-square: a height / width swap anywhere changes the output shape
PREPROCESS = PreprocessConfig(gamma=0.9, clahe_clip=2.0)  # not the defaults: the stored one must travel
MISSING_DATASET = "/nonexistent/tiny-pupil-seg-eyes"  # trained on a dataset not on this machine
METRICS = {"val/pupil_iou": 0.5, "val/miou": 0.7, "train/loss": 0.1}


def make_checkpoint(path, seed=0):
    """A checkpoint of an untrained model whose BatchNorms look trained, so folding them matters."""
    torch.manual_seed(seed)
    model = randomize_batchnorm(build_model("tiny_efficientvit"))
    state = {
        "model_name": "tiny_efficientvit",
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "preprocess": PREPROCESS.to_dict(),
        "img_size": list(SIZE),
        "metrics": METRICS,
        "train_config": {"seed": 3, "data": {"data_dir": MISSING_DATASET}},
    }
    return save_checkpoint(state, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("export") / "best.pt")


@pytest.fixture(scope="module")
def report(checkpoint):
    return export_onnx(checkpoint, int8=True, calib_n=8, val_n=4)


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


def test_metadata_describes_model_and_preprocessing(report):
    props = {p.key: p.value for p in onnx.load(report.fp32.path).metadata_props}
    assert props["format"] == METADATA_FORMAT
    assert json.loads(props["class_names"]) == ["background", "pupil"]
    assert EfficientViTConfig.from_dict(json.loads(props["model_config"])) == EfficientViTConfig()
    assert "opset 18" in json.loads(props["exporter"])
    predictor = load_predictor(report.fp32.path)
    assert predictor.img_size == SIZE
    assert predictor.preprocess_config == PREPROCESS
    assert predictor.info["model_name"] == "tiny_efficientvit"
    assert predictor.info["num_params"] == build_model("tiny_efficientvit").get_num_trainable_params()
    assert predictor.info["metrics"] == {"val/pupil_iou": 0.5, "val/miou": 0.7}  # validation only
    assert predictor.info["train_seed"] == 3  # evaluate.py scores the synthetic frames of that seed
    assert predictor.info["train_data_dir"] == MISSING_DATASET  # evaluate.py asks for that dataset


def test_file_is_self_contained_without_debug_info(report):
    assert sorted(p.name for p in report.fp32.path.parent.iterdir()) == [
        "best.int8.onnx",
        "best.onnx",
        "best.pt",
    ]
    model = onnx.load(report.fp32.path, load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not any(node.metadata_props for node in model.graph.node)  # no stack traces with local paths


def test_int8_export_is_quantised_and_evaluated(report):
    model = onnx.load(report.int8.path)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in model.graph.node}
    predictor = load_predictor(report.int8.path)
    assert predictor.info["quantization"]["format"] == "QDQ"
    assert predictor.logits(np.zeros((3, 1, *SIZE), np.float32)).shape == (3, 2, *SIZE)
    assert report.int8.weights_kb < 0.5 * report.fp32.weights_kb
    assert [v.name for v in (*model.graph.input, *model.graph.output)] == ["image", "logits"]
    assert max(len(t.name) for t in model.graph.initializer) <= 5  # short ids, not module paths
    assert 0 <= report.int8.pupil_iou <= 1 and 0 <= report.fp32.pupil_iou <= 1


def test_summary_gives_sizes_parity_and_latency(report):
    text = report.summary()
    for part in (str(report.fp32.path), str(report.int8.path), "KB", "batch 1", "batch 3", "ms", "pupil IoU"):
        assert part in text


def test_export_that_does_not_match_pytorch_writes_nothing(report, tmp_path, monkeypatch):
    other = make_checkpoint(tmp_path / "other.pt", seed=1)
    # the exporter hands back the first model's graph: onnxruntime and PyTorch now disagree
    monkeypatch.setattr(export_module, "export_fp32", lambda *args: shutil.copy(report.fp32.path, args[2]))
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_onnx(other, tmp_path / "model.onnx", calib_n=3)
    assert [p.name for p in tmp_path.iterdir()] == ["other.pt"]


def test_calibration_and_validation_come_from_a_dataset_root(tmp_path):
    root = write_openeds(tmp_path / "eyes", n=10, size=(100, 150), val_fraction=0.3)
    frames, where = calibration_frames(root, 4, SIZE)
    assert len(frames) == 4 and "train" in where
    images, labels, where = validation_set(root, 8, SIZE, seed=0)
    assert len(images) == len(labels) == 3 and "validation" in where
    assert labels[0].shape == images[0].shape == (100, 150)


def test_frames_default_to_the_dataset_the_model_was_trained_on(tmp_path):
    root = write_openeds(tmp_path / "eyes", n=6, size=(100, 150), val_fraction=0.5)
    state = load_checkpoint(make_checkpoint(tmp_path / "model.pt"))
    state["train_config"]["data"]["data_dir"] = str(root)
    save_checkpoint(state, tmp_path / "model.pt")
    report = export_onnx(tmp_path / "model.pt")
    assert str(root) in report.frames


def test_opset_the_exporter_cannot_write_is_an_error(checkpoint, tmp_path):
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="opset 17 requested, but the exporter wrote opset 18") as exc:
        export_onnx(checkpoint, output, opset=17, calib_n=3)
    assert str(exc.value).startswith(f"{output}: ") and not list(tmp_path.iterdir())


def test_one_calibration_image_is_repeated_for_the_parity_batches(checkpoint, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "one.png"), render_eye(1, 0, SIZE)[0])
    frames, where = calibration_frames(folder, 8, SIZE)
    assert len(frames) == 3 and "1 frame of" in where and "repeated to 3" in where
    report = export_onnx(checkpoint, tmp_path / "one.onnx", calib_dir=folder, calib_n=3)
    assert [p.batch for p in report.parity] == [1, 3] and all(p.passed for p in report.parity)


def test_hidden_files_are_not_calibration_images(tmp_path):
    cv2.imwrite(str(tmp_path / "eye.png"), render_eye(1, 0, SIZE)[0])
    (tmp_path / "._eye.png").write_bytes(b"macOS resource fork, not a PNG")
    frames, where = calibration_frames(tmp_path, 4, SIZE)
    assert where.startswith(f"1 frame of {tmp_path}") and len(frames) == 3


def test_errors_name_the_output_never_the_temporary_file(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "export_fp32", lambda *args: args[2].write_bytes(b"garbage"))
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError) as exc:
        export_onnx(checkpoint, output, calib_n=3)
    message = str(exc.value)
    assert message.startswith(f"{output}: not a loadable ONNX model") and ".tmp" not in message


def test_pupil_iou_sums_pixels_over_the_set_as_metrics_does():
    probs = np.zeros((2, 4, 6), np.float32)
    probs[0, :2] = probs[1, :, :3] = 0.9
    labels = [np.zeros((4, 6), np.uint8), np.ones((4, 6), np.uint8)]
    predictor = Predictor(lambda b: b, (4, 6), PreprocessConfig(), {})
    predictor.probabilities = lambda images: list(probs)
    counts = np.sum([mask_counts(p > 0.5, y) for p, y in zip(probs, labels, strict=True)], axis=0)
    assert pupil_iou(predictor, [None, None], labels) == confusion_metrics(*counts)["pupil_iou"] == 12 / 36


def test_cli_prints_the_report(report, checkpoint, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(export_module, "export_onnx", lambda *args, **kwargs: calls.append(kwargs) or report)
    assert main(["--checkpoint", str(checkpoint), "--int8", "--calib-n", "16"]) == 0
    assert calls[0]["int8"] is True and calls[0]["calib_n"] == 16
    assert capsys.readouterr().out.strip() == report.summary()


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


def test_int8_keeps_a_trained_models_accuracy(trained_checkpoint, tmp_path):
    report = export_onnx(trained_checkpoint, tmp_path / "trained.onnx", int8=True, calib_n=16, val_n=16)
    assert report.fp32.pupil_iou > 0.8  # the model finds pupils, so the comparison means something
    assert abs(report.int8.pupil_iou - report.fp32.pupil_iou) < 0.02
