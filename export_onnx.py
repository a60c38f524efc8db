"""Export a checkpoint to a verified, self-describing ONNX file, optionally also an 8-bit one.

    python export_onnx.py --checkpoint runs/<run>/best.pt            # -> runs/<run>/best.onnx
    python export_onnx.py --checkpoint best.pt --int8 --calib-dir /data/openeds

The model is rebuilt from the checkpoint, its BatchNorms folded, and exported with torch's dynamo
exporter: input `image` (batch, 1, H, W) float32, already preprocessed; output `logits`
(batch, 2, H, W); H and W are the checkpoint's training size and the batch axis is dynamic.
--opset 18 and above work; below 18 the exporter keeps 18, which is an ExportError.
The file lands under the output name only once `onnx.checker` passes and onnxruntime matches the
checkpoint's PyTorch model on real preprocessed frames (from --calib-dir, else the dataset the
checkpoint was trained on when it is on this machine, else synthetic) at
batch 1 and 3: max |logit difference| <= 1e-4 and the same argmax on >= 99.99% of pixels.
Its `metadata_props` carry what is needed to use it (see inference.py).

--int8 adds `<stem>.int8.onnx`: onnxruntime static quantisation (QDQ, per-channel weights)
calibrated on --calib-n frames, and compares fp32 and int8 pupil IoU on validation frames: the
validation split when --calib-dir is a dataset root, else the synthetic frames training validated on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from config import positive_int_argument
from data import CLASS_NAMES, DataError, PreprocessConfig, find_pairs, read_image
from data.dataset import synthetic_validation
from data.folders import IMAGE_SUFFIXES, list_images, read_pair, split_folder
from data.synthetic import SyntheticEyes
from inference import (
    METADATA_FORMAT,
    Predictor,
    load_predictor,
    prepare_batch,
    train_data_dir,
    train_seed,
    train_style,
    validation_metrics,
)
from metrics import confusion_metrics, mask_counts
from models import SegmentationModel, fuse_model
from models.checkpoint import load_checkpoint, model_from_checkpoint

MAX_ABS_DIFF = 1e-4
MIN_ARGMAX_AGREEMENT = 0.9999
PARITY_BATCHES = (1, 3)
CALIB_SEED = 7  # synthetic calibration frames: a seed of their own, neither training's nor validation's


class ExportError(ValueError):
    """The export failed verification; nothing was written under the output name."""


@dataclass(frozen=True)
class Parity:
    batch: int
    max_abs_diff: float
    argmax_agreement: float  # share of pixels, 0..1

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.argmax_agreement >= MIN_ARGMAX_AGREEMENT

    def __str__(self) -> str:
        agreement = 100 * self.argmax_agreement
        return f"batch {self.batch}: max |diff| {self.max_abs_diff:.2e}, argmax agrees on {agreement:.4f}%"


@dataclass
class FileFigures:
    path: Path
    size_kb: float
    weights_kb: float  # stored tensors: weights, constants, quantisation parameters
    latency_ms: float  # onnxruntime CPU, one frame, median
    pupil_iou: float | None = None  # on the validation frames (--int8 only)


@dataclass
class ExportReport:
    img_size: tuple[int, int]
    opset: int
    frames: str  # where the parity and calibration frames came from
    parity: list[Parity]
    fp32: FileFigures
    int8: FileFigures | None = None
    validation: str = ""  # the frames of the IoU comparison

    def summary(self) -> str:
        h, w, fp32 = *self.img_size, self.fp32
        lines = [
            f"{fp32.path}: {fp32.size_kb:.1f} KB (weights {fp32.weights_kb:.1f} KB), opset {self.opset}, "
            f"image (batch, 1, {h}, {w}) -> logits (batch, 2, {h}, {w})",
            f"parity with PyTorch on {self.frames}: " + "; ".join(map(str, self.parity)),
            f"onnxruntime CPU latency, 1 frame: {fp32.latency_ms:.1f} ms (median)",
        ]
        if self.int8 is not None:
            int8 = self.int8
            size, weights = int8.size_kb / fp32.size_kb, int8.weights_kb / fp32.weights_kb
            lines += [
                f"{int8.path}: {int8.size_kb:.1f} KB ({size:.2f}x fp32; weights {int8.weights_kb:.1f} KB, "
                f"{weights:.2f}x), latency {int8.latency_ms:.1f} ms",
                f"pupil IoU on {self.validation}: fp32 {fp32.pupil_iou:.4f}, int8 {int8.pupil_iou:.4f} "
                f"({100 * (int8.pupil_iou - fp32.pupil_iou):+.2f} points)",
            ]
        return "\n".join(lines)


def _image_files(calib_dir: Path) -> list[Path]:
    """Calibration images: ROOT/train/images of a dataset root, else DIR/images, else DIR itself."""
    if not calib_dir.is_dir():
        raise DataError(f"{calib_dir}: not a folder")
    for folder in (calib_dir / "train" / "images", calib_dir / "images", calib_dir):
        files = list_images(folder) if folder.is_dir() else []
        if files:
            return files
    raise DataError(f"{calib_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in it, images/ or train/images/")


def _spread(items: list, n: int) -> list:
    """Up to n items evenly spread over the list, the first one included."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def calibration_frames(
    calib_dir: Path | None, n: int, img_size: tuple[int, int]
) -> tuple[list[np.ndarray], str]:
    """Up to n uint8 frames for parity and calibration, and where they came from.

    A folder with fewer images than the largest parity batch has them repeated cyclically.
    """
    if calib_dir is None:
        eyes = SyntheticEyes(n, CALIB_SEED, img_size)
        return [eyes.read(i)[0] for i in range(n)], f"{n} synthetic frames"
    files = _spread(_image_files(calib_dir), n)
    frames = [read_image(p) for p in files]
    where = f"{len(files)} frame{'s' * (len(files) > 1)} of {files[0].parent}"
    needed = max(PARITY_BATCHES)
    if len(frames) < needed:
        frames = [frames[i % len(frames)] for i in range(needed)]
        where += f", repeated to {needed} for the batch-{needed} parity check"
    return frames, where


def validation_set(
    calib_dir: Path | None, n: int, img_size: tuple[int, int], seed: int, style: str = "full"
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Images, {0, 1} pupil labels and a description: the dataset's validation split, else synthetic.

    Synthetic frames are those a training run with `seed` validated on, never trained on.
    """
    if calib_dir is not None and split_folder(calib_dir, "validation") is not None:
        pairs = [read_pair(s) for s in _spread(find_pairs(calib_dir, "validation"), n)]
        where = f"{len(pairs)} validation frames of {calib_dir}"
    else:
        eyes = synthetic_validation(n, seed, img_size, style)
        pairs = [eyes.read(i) for i in range(n)]
        where = f"{n} synthetic validation frames"
    return [p[0] for p in pairs], [p[1] for p in pairs], where


def export_metadata(state: dict, model: SegmentationModel, checkpoint: Path, opset: int) -> dict[str, str]:
    """`metadata_props` of the exported file: JSON strings describing the model and its input."""
    values = {
        "model_name": state["model_name"],
        "model_config": model.config.to_dict(),
        "num_params": model.get_num_trainable_params(),
        "img_size": list(state["img_size"]),
        "class_names": list(CLASS_NAMES),
        "preprocess": state["preprocess"],
        "metrics": validation_metrics(state.get("metrics")),
        "epoch": state.get("epoch"),
        "train_seed": train_seed(state),  # with the style, picks the synthetic validation frames
        "train_style": train_style(state),
        "train_data_dir": train_data_dir(state),  # evaluate.py then asks for that dataset
        "checkpoint": checkpoint.name,
        "exporter": f"torch {torch.__version__} dynamo, onnx opset {opset}",
    }
    return {"format": METADATA_FORMAT, **{key: json.dumps(value) for key, value in values.items()}}


def finish(proto: onnx.ModelProto, metadata: dict[str, str], path: Path) -> None:
    """Strip exporter debug info, set the metadata, check, and save as one self-contained file."""
    # per-node stack traces (with local paths) are over half of the exporter's file, and
    # intermediate shapes are inferred again by every runtime
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.graph.value_info[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, path, save_as_external_data=False)


def export_fp32(model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int, metadata: dict) -> None:
    """Export the fused eval-mode model, traced at a (2, 1, H, W) `sample`, with a dynamic batch axis.

    A batch of 2, not 1: torch.export treats size-1 dimensions as constants and, for some input
    sizes, silently exports a fixed batch of 1. ExportError messages do not name `path`, a
    temporary file: the caller names the output.
    """
    program = torch.onnx.export(
        model,
        (sample,),
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch_dim.dim_param:
        raise ExportError(f"the exporter fixed the batch axis at {batch_dim.dim_value}")
    # below its own opset 18 the exporter cannot convert this model and keeps 18, saying so only in a log
    written = {entry.domain: entry.version for entry in proto.opset_import}.get("")
    if written != opset:
        raise ExportError(f"opset {opset} requested, but the exporter wrote opset {written}")
    finish(proto, metadata, path)


def check_parity(predictor: Predictor, model: torch.nn.Module, inputs: np.ndarray) -> Parity:
    """Compare onnxruntime with PyTorch on a (B, 1, H, W) batch; the output shapes must match too."""
    got = predictor.logits(inputs)
    with torch.no_grad():
        want = model(torch.from_numpy(inputs)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"onnxruntime output shape {got.shape}, PyTorch {want.shape}")
    agreement = float((got.argmax(1) == want.argmax(1)).mean())
    return Parity(len(inputs), float(np.abs(got - want).max()), agreement)


def measure(predictor: Predictor, path: Path, frame: np.ndarray, runs: int = 20) -> FileFigures:
    """File and weight sizes, and the median latency of one (1, 1, H, W) frame after warm-up runs."""
    for _ in range(3):
        predictor.logits(frame)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.logits(frame)
        times.append(time.perf_counter() - start)
    weights = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)
    return FileFigures(path, path.stat().st_size / 1024, weights / 1024, 1000 * statistics.median(times))


class _FrameReader(CalibrationDataReader):
    """Feeds the quantiser one preprocessed (1, 1, H, W) frame at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._frames = iter(inputs[:, None])

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        return None if frame is None else {"image": frame}


def shorten_names(graph: onnx.GraphProto) -> None:
    """Rename internal tensors to short ids and drop node names; `image` and `logits` stay.

    Quantisation wraps every tensor in QuantizeLinear / DequantizeLinear pairs named after the
    module path: for a model this small those names were a third of the 8-bit file.
    """
    keep = {value.name for value in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if not name or name in keep else names.setdefault(name, f"t{len(names):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]


def quantize_int8(fp32_path: Path, int8_path: Path, inputs: np.ndarray, metadata: dict[str, str]) -> None:
    """Static 8-bit quantisation calibrated on (N, 1, H, W) `inputs` (min/max of each activation).

    QDQ format, per-channel weights, asymmetric uint8 weights and activations. Signed int8
    weights cost about 2 IoU points on x86 CPUs without VNNI, whose onnxruntime u8s8 kernels
    saturate 16-bit sums; uint8 weights matched fp32 in our measurements and run everywhere.
    """
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(fp32_path, prepared)  # shape inference and graph optimisation first
        quantize_static(
            prepared,
            quantized,
            _FrameReader(inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
        )
        scheme = {
            "format": "QDQ",
            "weights": "uint8 per-channel",
            "activations": "uint8",
            "frames": len(inputs),
        }
        proto = onnx.load(quantized)
        shorten_names(proto.graph)
        finish(proto, {**metadata, "quantization": json.dumps(scheme)}, int8_path)


def pupil_iou(predictor: Predictor, images: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Pupil IoU over all pixels of the set (summed, then divided), predictions at 0.5."""
    probs = predictor.probabilities(images)
    counts = sum(
        (np.array(mask_counts(p > 0.5, y)) for p, y in zip(probs, labels, strict=True)), np.zeros(4, int)
    )
    return confusion_metrics(*counts.tolist())["pupil_iou"]


def _naming_output(exc: Exception, tmp: Path, output: Path) -> ExportError:
    """`exc` as an ExportError naming the output file, never the temporary file written first."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(str(tmp), str(output)).replace(tmp.name, output.name)
    return ExportError(text if text.startswith(str(output)) else f"{output}: {text}")


def export_onnx(
    checkpoint: str | Path,
    output: str | Path | None = None,
    opset: int = 18,
    int8: bool = False,
    calib_dir: str | Path | None = None,
    calib_n: int = 64,
    val_n: int = 64,
    log: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export `checkpoint` to `output` (default: beside it, `.onnx`), verify it, optionally quantise.

    Raises CheckpointError / DataError / ValueError for bad input and ExportError when the
    verification fails; nothing is then written under the output name.
    """
    log = log or (lambda _: None)
    checkpoint = Path(checkpoint)
    output = Path(output) if output is not None else checkpoint.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"output must end in .onnx, got {output}")
    if calib_n < max(PARITY_BATCHES):
        raise ValueError(f"calib_n must be at least {max(PARITY_BATCHES)}, got {calib_n}")
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint)
    img_size = (int(state["img_size"][0]), int(state["img_size"][1]))
    if calib_dir is None and (trained_on := train_data_dir(state)) and Path(trained_on).is_dir():
        calib_dir = trained_on  # the model's own data beats synthetic eyes for parity and int8
    calib_dir = Path(calib_dir) if calib_dir is not None else None
    frames, where = calibration_frames(calib_dir, calib_n, img_size)
    inputs = prepare_batch(frames, img_size, PreprocessConfig.from_dict(state["preprocess"]))  # (N, 1, H, W)
    metadata = export_metadata(state, model, checkpoint, opset)

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.onnx")
    try:
        log(f"exporting {state['model_name']} at {img_size[0]}x{img_size[1]} (opset {opset})...")
        export_fp32(fuse_model(model), torch.from_numpy(inputs[:2]), tmp, opset, metadata)
        fp32 = load_predictor(tmp)  # reads the metadata back, too
        # against the checkpoint's own unfused model, so the check covers BN folding too
        parity = [check_parity(fp32, model, inputs[:batch]) for batch in PARITY_BATCHES]
        if not all(p.passed for p in parity):
            raise ExportError("onnxruntime does not match PyTorch: " + "; ".join(map(str, parity)))
        os.replace(tmp, output)
    except (ValueError, onnx.checker.ValidationError) as exc:
        raise _naming_output(exc, tmp, output) from None
    finally:
        tmp.unlink(missing_ok=True)
    report = ExportReport(img_size, opset, where, parity, measure(fp32, output, inputs[:1]))
    if not int8:
        return report

    int8_path = output.with_name(f"{output.stem}.int8.onnx")
    log(f"quantising to 8 bits, calibrated on {where}...")
    quantize_int8(output, int8_path, inputs, metadata)
    quantized = load_predictor(int8_path)
    report.int8 = measure(quantized, int8_path, inputs[:1])
    seed = train_seed(state) or 0
    images, labels, report.validation = validation_set(calib_dir, val_n, img_size, seed, train_style(state))
    log(f"comparing fp32 and int8 on {report.validation}...")
    report.fp32.pupil_iou = pupil_iou(fp32, images, labels)
    report.int8.pupil_iou = pupil_iou(quantized, images, labels)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Export a checkpoint to a verified ONNX file (and optionally an 8-bit one)."
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .pt checkpoint from training")
    parser.add_argument("--output", type=Path, help="ONNX file to write (default: the checkpoint's, .onnx)")
    parser.add_argument(
        "--opset", type=int, default=18, help="ONNX opset, 18 or above (default: %(default)s)"
    )
    parser.add_argument("--int8", action="store_true", help="also write <stem>.int8.onnx and compare IoUs")
    parser.add_argument(
        "--calib-dir", type=Path, help="images or a dataset root (default: the training data, else synthetic)"
    )
    parser.add_argument(
        "--calib-n",
        type=positive_int_argument,
        default=64,
        help="parity/calibration frames (default: %(default)s)",
    )
    parser.add_argument(
        "--val-n",
        type=positive_int_argument,
        default=64,
        help="int8 validation frames (default: %(default)s)",
    )
    try:
        report = export_onnx(**vars(parser.parse_args(argv)), log=print)
    except (ValueError, OSError) as exc:  # CheckpointError, DataError, ExportError; unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
