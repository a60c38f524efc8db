"""Export a checkpoint to a verified, self-describing ONNX file, optionally also an 8-bit one.

    python export_onnx.py --checkpoint runs/<run>/best.pt            # -> runs/<run>/best.onnx
    python export_onnx.py --checkpoint best.pt --int8 --calib-dir /data/openeds
    python export_onnx.py --checkpoint pretrained --int8   # the shipped .pt -> ./tiny_efficientvit.onnx

The model is rebuilt from the checkpoint, its BatchNorms folded, and exported with torch's dynamo
exporter: input `image` (batch, 1, H, W) float32, preprocessed, at the checkpoint's size; output
`logits` (batch, 2, H, W); a dynamic batch axis; `metadata_props` the checkpoint's model card
(models.card). The file lands under the output name only once `onnx.checker` passes and
onnxruntime matches PyTorch at batch 1 and 3 (max |logit difference| <= 1e-4, the same argmax on
>= 99.99% of pixels) on real frames (data.frames): --calib-dir's, else the training data if here.

--int8 adds `<stem>.int8.onnx`, quantised (onnxruntime static, QDQ, per-channel weights) on --calib-n
frames, and compares fp32 and int8 pupil IoU on that folder's validation split, else on the
synthetic frames training validated on. The settings' flags are config.ExportConfig's fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from cli import add_checkpoint_argument, add_settings, build, given, one_line
from config import ExportConfig
from data import Frames, frames_for, synthetic_frames, unlabelled_frames
from data.folders import split_folder
from inference import PRETRAINED_DIR, PUPIL_THRESHOLD, Predictor, load_predictor, model_file, prepare_batch
from metrics import mask_counts, set_metrics
from models import fuse_model
from models.card import ModelCard
from models.checkpoint import load_checkpoint, model_from_checkpoint
from reports.export import ExportReport, FileFigures, Parity

PARITY_BATCHES = (1, 3)
CALIB_SEED = 7  # synthetic calibration frames: a seed of their own, neither training's nor validation's
INT8_SCHEME = {"format": "QDQ", "weights": "uint8 per-channel", "activations": "uint8"}  # quantize_int8's
Images = list[np.ndarray]  # (H, W) uint8 frames, or their {0, 1} pupil labels


class ExportError(ValueError):
    """The export failed verification; nothing was written under the output name."""


def frames_folder(calib_dir: str | Path | None, card: ModelCard) -> Path | None:
    """Where frames come from: `calib_dir`, else the model's training data if here, else None (synthetic)."""
    if calib_dir is None and card.train_data_dir and Path(card.train_data_dir).is_dir():
        calib_dir = card.train_data_dir  # the model's own data beats synthetic eyes for parity and int8
    return Path(calib_dir) if calib_dir is not None else None


def _read_spread(frames: Frames, n: int) -> tuple[list[tuple], str]:
    """Up to n of `frames`, evenly spread, read as (image, label) pairs; and what they are."""
    picked = frames.spread(n)
    where = frames.description + (f", {len(picked)} evenly spread" if len(picked) < len(frames) else "")
    return [picked.read(i) for i in range(len(picked))], where


def exporter_name(opset: int) -> str:  # what wrote a file, for its metadata
    return f"torch {torch.__version__} dynamo, onnx opset {opset}"


def calibration_frames(calib_dir: Path | None, n: int, size: tuple[int, int]) -> tuple[Images, str]:
    """Up to n uint8 frames for parity and calibration, and what they are: images of `calib_dir`
    (`data.unlabelled_frames`; repeated when fewer than the largest parity batch), else synthetic
    frames of CALIB_SEED at (H, W) `size`."""
    source = synthetic_frames(n, CALIB_SEED, size) if calib_dir is None else unlabelled_frames(calib_dir)
    pairs, where = _read_spread(source, n)
    frames, needed = [image for image, _ in pairs], max(PARITY_BATCHES)
    if len(frames) < needed:
        frames = [frames[i % len(frames)] for i in range(needed)]
        where += f", repeated to {needed} for the batch-{needed} parity check"
    return frames, where


def validation_set(calib_dir: Path | None, n: int, card: ModelCard) -> tuple[Images, Images, str]:
    """Up to n images, their {0, 1} pupil labels and what they are: the validation split of
    `calib_dir` when it has one, else the synthetic frames the card's training run validated on."""
    data_dir = calib_dir if calib_dir is not None and split_folder(calib_dir, "validation") else None
    seed, size, style = card.train_seed or 0, card.img_size, card.train_style
    frames = frames_for(data_dir, "validation", n=n, seed=seed, size=size, style=style)
    pairs, where = _read_spread(frames, n)
    return [image for image, _ in pairs], [label for _, label in pairs], where


def finish(proto: onnx.ModelProto, metadata: dict[str, str], path: Path) -> None:
    """Strip exporter debug info, set the metadata, check, and save as one self-contained file."""
    # per-node stack traces (with local paths) are over half the file; runtimes infer shapes again
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.graph.value_info[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, path, save_as_external_data=False)


def export_fp32(model: nn.Module, sample: torch.Tensor, path: Path, *, opset: int, metadata: dict) -> None:
    """Export the fused eval-mode model, traced at a (2, 1, H, W) `sample`, with a dynamic batch axis.

    A batch of 2, not 1: torch.export treats size-1 dimensions as constants and, for some input
    sizes, silently exports a fixed batch of 1. ExportErrors leave `path` (temporary) unnamed.
    """
    program = torch.onnx.export(
        model,
        (sample,),
        input_names=["image"],
        output_names=["logits"],
        opset_version=opset,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
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


class _FrameReader(CalibrationDataReader):
    """Feeds the quantiser one preprocessed (1, 1, H, W) frame at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._feeds = iter([{"image": frame} for frame in inputs[:, None]])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def shorten_names(graph: onnx.GraphProto) -> None:
    """Rename internal tensors to short ids and drop node names (`image` and `logits` stay): quantisation
    wraps every tensor in Q/DQ pairs named after its module path, a third of this small 8-bit file."""
    keep, names = {value.name for value in (*graph.input, *graph.output)}, {}

    def short(name: str) -> str:
        return name if not name or name in keep else names.setdefault(name, f"t{len(names):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]


def quantize_int8(fp32_path: Path, int8_path: Path, inputs: np.ndarray, *, metadata: dict) -> None:
    """Static 8-bit quantisation (INT8_SCHEME: QDQ, per-channel asymmetric uint8 weights, uint8
    activations) calibrated on (N, 1, H, W) `inputs`; `metadata`: the 8-bit file's card's.

    Signed int8 weights cost about 2 IoU points on x86 CPUs without VNNI, whose onnxruntime u8s8
    kernels saturate 16-bit sums; uint8 weights matched fp32 in our measurements and run everywhere.
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
        proto = onnx.load(quantized)
        shorten_names(proto.graph)
        finish(proto, metadata, int8_path)


def check_parity(predictor: Predictor, model: nn.Module, inputs: np.ndarray) -> Parity:
    """Compare onnxruntime with PyTorch on a (B, 1, H, W) batch; the output shapes must match too."""
    got = predictor.logits(inputs)
    with torch.no_grad():
        want = model(torch.from_numpy(inputs)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"onnxruntime output shape {got.shape}, PyTorch {want.shape}")
    return Parity(
        len(inputs), float(np.abs(got - want).max()), float((got.argmax(1) == want.argmax(1)).mean())
    )


def measure(predictor: Predictor, path: Path, frame: np.ndarray, *, runs: int = 20) -> FileFigures:
    """File and weight sizes, and the median latency of one (1, 1, H, W) frame after warm-up runs."""
    times = timeit.repeat(lambda: predictor.logits(frame), repeat=3 + runs, number=1)[3:]  # after warm-up
    weights = sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer)
    return FileFigures(path, path.stat().st_size / 1024, weights / 1024, 1000 * float(np.median(times)))


def pupil_iou(predictor: Predictor, images: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Pupil IoU of the whole set (`metrics.set_metrics`: pixels summed, then divided), pupil where the
    probability is above PUPIL_THRESHOLD."""
    probs = predictor.probabilities(images)
    counts = [mask_counts(p > PUPIL_THRESHOLD, y) for p, y in zip(probs, labels, strict=True)]
    return set_metrics(counts)["pupil_iou"]


def write_verified(
    model: nn.Module, inputs: np.ndarray, output: Path, *, opset: int, metadata: dict[str, str]
) -> list[Parity]:
    """Export `model` fused to `output` once onnxruntime matches the unfused model on (N, 1, H, W)
    `inputs` at each PARITY_BATCHES size; until then it is a temporary file, removed on failure."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.onnx")
    try:
        export_fp32(fuse_model(model), torch.from_numpy(inputs[:2]), tmp, opset=opset, metadata=metadata)
        exported = load_predictor(tmp)  # reads the metadata back, too
        # against the checkpoint's own unfused model, so the check covers BN folding too
        parity = [check_parity(exported, model, inputs[:batch]) for batch in PARITY_BATCHES]
        if not all(p.passed for p in parity):
            raise ExportError("onnxruntime does not match PyTorch: " + "; ".join(map(str, parity)))
        os.replace(tmp, output)
    except (ValueError, onnx.checker.ValidationError) as exc:  # one line naming the output, never `tmp`
        text = one_line(exc)
        text = text.replace(str(tmp), str(output)).replace(tmp.name, output.name)
        raise ExportError(text if text.startswith(str(output)) else f"{output}: {text}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return parity


def export_onnx(
    checkpoint: str | Path,
    output: str | Path | None = None,
    config: ExportConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> ExportReport:
    """Export `checkpoint` to `output` (default: beside it, `.onnx`), verify it, optionally quantise.

    `settings`: ExportConfig fields (opset, int8, calib_dir, calib_n, val_n) replacing `config`'s.
    Raises CheckpointError / DataError / ValueError for bad input, ExportError when verification
    fails; nothing is then written under the output name.
    """
    config = (config or ExportConfig()).replace(**settings)
    log = log or (lambda _: None)
    checkpoint = Path(checkpoint)
    output = Path(output) if output is not None else checkpoint.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"output must end in .onnx, got {output}")
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint)
    card = ModelCard.from_checkpoint(state, checkpoint).completed(model)  # older files lack some fields
    calib_dir = frames_folder(config.calib_dir, card)
    frames, where = calibration_frames(calib_dir, config.calib_n, card.img_size)
    inputs = prepare_batch(frames, card.img_size, card.preprocess)  # (N, 1, H, W)
    about = {"checkpoint": checkpoint.name, "exporter": exporter_name(config.opset)}
    log(f"exporting {card.model_name} at {card.img_size[0]}x{card.img_size[1]} (opset {config.opset})...")
    metadata = card.to_onnx_metadata(**about)
    parity = write_verified(model, inputs, output, opset=config.opset, metadata=metadata)
    fp32 = load_predictor(output)
    report = ExportReport(card.img_size, config.opset, where, parity, measure(fp32, output, inputs[:1]))
    if not config.int8:
        return report

    int8_path = output.with_name(f"{output.stem}.int8.onnx")
    log(f"quantising to 8 bits, calibrated on {where}...")
    int8_card = dataclasses.replace(card, quantization={**INT8_SCHEME, "frames": len(inputs)})
    quantize_int8(output, int8_path, inputs, metadata=int8_card.to_onnx_metadata(**about))
    int8 = load_predictor(int8_path)
    report.int8 = measure(int8, int8_path, inputs[:1])
    images, labels, report.validation = validation_set(calib_dir, config.val_n, card)
    log(f"comparing fp32 and int8 on {report.validation}...")
    report.fp32.pupil_iou = pupil_iou(fp32, images, labels)
    report.int8.pupil_iou = pupil_iou(int8, images, labels)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_argument(
        parser,
        convert=functools.partial(model_file, suffix=".pt"),
        help="a .pt checkpoint from training, or pretrained: the one in pretrained/",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="ONNX file to write (default: the checkpoint's, .onnx; for pretrained/ the current folder's)",
    )
    added = add_settings(parser, ExportConfig)
    args = parser.parse_args(argv)
    try:
        config = build(ExportConfig, given(args, added), added)
    except ValueError as exc:  # a setting out of its bounds, named by its flag
        parser.error(str(exc))
    output = args.output
    if output is None and args.checkpoint.resolve().parent == PRETRAINED_DIR:  # never over the shipped export
        output = Path(args.checkpoint.with_suffix(".onnx").name)
    try:
        report = export_onnx(args.checkpoint, output, config, log=print)
    except (ValueError, OSError) as exc:  # CheckpointError, DataError, ExportError; unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
