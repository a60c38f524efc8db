"""Export a checkpoint to verified, self-describing ONNX files for a CPU, mobile or TensorRT runtime.

    python export_onnx.py --checkpoint runs/<run>/best.pt            # -> runs/<run>/best.onnx
    python export_onnx.py --checkpoint best.pt --int8 --calib-dir /data/openeds
    python export_onnx.py --checkpoint pretrained --int8   # the shipped .pt -> ./tiny_efficientvit.onnx
    python export_onnx.py --checkpoint best.pt --target mobile     # -> best.mobile.onnx
    python export_onnx.py --checkpoint best.pt --target tensorrt   # -> best.onnx, best.trt.int8.onnx

The model is rebuilt from the checkpoint, its BatchNorms folded, and exported with torch's dynamo
exporter: input `image` (batch, 1, H, W) float32, preprocessed, at the checkpoint's size; output
`logits` (batch, 2, H, W); `metadata_props` the checkpoint's model card (models.card). The batch
axis is dynamic, except for --target mobile (static batch 1; export_profiles says what each target
writes). The file lands under the output name only once `onnx.checker` passes, onnxruntime matches
PyTorch at batch 1 and 3 (1 for a static batch; max |logit difference| <= 1e-4, the same argmax on
>= 99.99% of pixels) on real frames (data.frames): --calib-dir's, else the training data if here,
and, for mobile, NNAPI and CoreML ML Program would each run the whole graph as one partition.

--int8 (cpu) and --target tensorrt add an 8-bit file, quantised (onnxruntime static, QDQ) on
--calib-n frames. Except in a plain cpu export, each file's pupil IoU is measured on that folder's
validation split, else on the synthetic frames training validated on. The settings' flags are
config.ExportConfig's fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from config import ExportConfig
from config.flags import add_checkpoint_argument, add_settings, build, given
from core.errors import one_line
from data import Frames, frames_for, synthetic_frames, unlabelled_frames
from data.folders import split_folder
from evaluation.metrics import mask_counts, set_metrics
from export.profiles import (
    CPU_INT8,
    MOBILE_EPS,
    PARITY_BATCHES,
    PROFILES,
    Profile,
    QuantScheme,
    name_omitted_inputs,
    partitions,
    quantized,
)
from inference import (
    AUTO_MIN_SIDE,
    PRETRAINED_DIR,
    SIZE_MULTIPLE,
    Predictor,
    load_predictor,
    model_file,
    own_size,
    prepare_batch,
    pupil_mask,
)
from models import fuse_model
from models.card import ModelCard
from models.checkpoint import load_checkpoint, model_from_checkpoint
from reports.export import ExportReport, FileFigures, Parity

CALIB_SEED = 7  # synthetic calibration frames: a seed of their own, neither training's nor validation's
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


def export_fp32(
    model: nn.Module,
    sample: torch.Tensor,
    path: Path,
    *,
    opset: int,
    metadata: dict,
    dynamic_batch: bool = True,
    any_size: bool = False,
) -> None:
    """Export the fused eval-mode model traced at `sample`: (2, 1, H, W) for a dynamic batch axis,
    else the static (B, 1, H, W) of a mobile runtime, whose partitioners take no unnamed inputs.
    `any_size`: height and width dynamic too, multiples of SIZE_MULTIPLE from AUTO_MIN_SIDE up
    (the sample's among them), so each stage's map is wider than its attention window.

    A batch of 2, not 1: torch.export treats size-1 dimensions as constants and, for some input
    sizes, silently exports a fixed batch of 1. ExportErrors leave `path` (temporary) unnamed.
    """
    dims: dict[int, Any] = {0: torch.export.Dim("batch")} if dynamic_batch else {}
    if any_size:
        low, high = AUTO_MIN_SIDE // SIZE_MULTIPLE, 4096 // SIZE_MULTIPLE
        for axis, name in ((2, "height"), (3, "width")):
            dims[axis] = SIZE_MULTIPLE * torch.export.Dim(f"{name}_{SIZE_MULTIPLE}", min=low, max=high)
        for module in model.modules():
            if hasattr(module, "any_size"):  # squeeze-excite: a mean, where a pool's kernel is fixed
                module.any_size = True
    program = torch.onnx.export(
        model,
        (sample,),
        input_names=["image"],
        output_names=["logits"],
        opset_version=opset,
        dynamic_shapes=(dims,) if dims else None,
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if dynamic_batch and not batch_dim.dim_param:
        raise ExportError(f"the exporter fixed the batch axis at {batch_dim.dim_value}")
    if not dynamic_batch:
        name_omitted_inputs(proto.graph)
    # below its own opset 18 the exporter cannot convert this model and keeps 18, saying so only in a log
    written = {entry.domain: entry.version for entry in proto.opset_import}.get("")
    if written != opset:
        raise ExportError(f"opset {opset} requested, but the exporter wrote opset {written}")
    finish(proto, metadata, path)


def takes_any_size(profile: Profile, img_size: tuple[int, int]) -> bool:
    """Whether the profile's file takes any input size: a cpu export of a model trained at
    AUTO_MIN_SIDE or more a side. Below that, the smallest maps fit in one attention window and
    attend globally, which a graph of any size cannot follow: such a file keeps its own size."""
    return profile.any_size and min(img_size) >= AUTO_MIN_SIDE


def pad_to(inputs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, 1, H, W) model inputs cropped or edge-padded at the bottom and right to (h, w) `size`."""
    h, w = size
    cropped = inputs[:, :, :h, :w]
    pad = ((0, 0), (0, 0), (0, h - cropped.shape[2]), (0, w - cropped.shape[3]))
    return np.ascontiguousarray(np.pad(cropped, pad, mode="edge"))


def quantize_int8(
    fp32_path: Path, int8_path: Path, inputs: np.ndarray, *, metadata: dict, scheme: QuantScheme = CPU_INT8
) -> None:
    """Static 8-bit quantisation by `scheme` (export_profiles: CPU_INT8, --int8's, or TENSORRT_INT8)
    calibrated on (N, 1, H, W) `inputs`; `metadata`: the 8-bit file's card's."""
    finish(quantized(fp32_path, inputs, scheme), metadata, int8_path)


def check_parity(
    predictor: Predictor, model: nn.Module, inputs: np.ndarray, *, other_size: bool = False
) -> Parity:
    """Compare onnxruntime with PyTorch on a (B, 1, H, W) batch; the output shapes must match too.
    `other_size`: the batch is not at the export's own size (say which)."""
    got = predictor.logits(inputs)
    with torch.no_grad():
        want = model(torch.from_numpy(inputs)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"onnxruntime output shape {got.shape}, PyTorch {want.shape}")
    size = tuple(inputs.shape[2:]) if other_size else None
    return Parity(
        len(inputs), float(np.abs(got - want).max()), float((got.argmax(1) == want.argmax(1)).mean()), size
    )


def measure(predictor: Predictor, path: Path, frame: np.ndarray, *, runs: int = 20) -> FileFigures:
    """File and weight sizes, nodes, the median latency of one (1, 1, H, W) frame after warm-up runs,
    and how mobile execution providers would split the file."""
    times = timeit.repeat(lambda: predictor.logits(frame), repeat=3 + runs, number=1)[3:]  # after warm-up
    graph = onnx.load(path).graph
    weights = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    size, latency = path.stat().st_size / 1024, 1000 * float(np.median(times))
    return FileFigures(path, size, weights / 1024, len(graph.node), latency, partitions=partitions(path))


def pupil_iou(
    predictor: Predictor, images: list[np.ndarray], labels: list[np.ndarray], *, batch_size: int = 8
) -> float:
    """Pupil IoU of the whole set (`evaluation.metrics.set_metrics`: pixels summed, then divided);
    the predicted mask is the pupil's blob (`pupillometry.geometry.pupil_mask`); `batch_size`: 1 for
    a static batch of 1."""
    probs = predictor.probabilities(images, batch_size=batch_size)
    counts = [mask_counts(pupil_mask(p), y) for p, y in zip(probs, labels, strict=True)]
    return set_metrics(counts)["pupil_iou"]


def check_mobile(path: Path) -> None:
    """An ExportError unless NNAPI and CoreML ML Program would each run the whole file as one partition."""
    found = partitions(path)
    split = [f"{name} {found[name]}: {found[name].why()}" for name in MOBILE_EPS if not found[name].whole]
    if split:
        raise ExportError("a mobile runtime would split the graph (" + "; ".join(split) + ")")


def write_verified(
    model: nn.Module,
    inputs: np.ndarray,
    output: Path,
    *,
    profile: Profile,
    opset: int,
    metadata: dict[str, str],
) -> list[Parity]:
    """Export `model` fused to `output` once onnxruntime matches the unfused model on (N, 1, H, W)
    `inputs` at each of the profile's parity batch sizes (and, for mobile, `check_mobile` passes);
    until then it is a temporary file, removed on failure."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.onnx")
    sample = inputs[: profile.batch or 2]
    any_size = takes_any_size(profile, tuple(sample.shape[2:]))
    if any_size:  # traced at a size it takes: a multiple of SIZE_MULTIPLE
        sample = pad_to(sample, own_size(sample.shape[2:])[0])
    try:
        export_fp32(
            fuse_model(model),
            torch.from_numpy(sample),
            tmp,
            opset=opset,
            metadata=metadata,
            dynamic_batch=profile.batch is None,
            any_size=any_size,
        )
        exported = load_predictor(tmp)  # reads the metadata back, too
        # against the checkpoint's own unfused model, so the check covers BN folding too
        parity = [check_parity(exported, model, inputs[:batch]) for batch in profile.parity_batches]
        if any_size:  # and at a size of another shape than training's
            square = pad_to(inputs[:1], (AUTO_MIN_SIDE + 64,) * 2)
            parity.append(check_parity(exported, model, square, other_size=True))
        if not all(p.passed for p in parity):
            raise ExportError("onnxruntime does not match PyTorch: " + "; ".join(map(str, parity)))
        if profile.batch is not None:
            check_mobile(tmp)
        os.replace(tmp, output)
    except (ValueError, onnx.checker.ValidationError) as exc:  # one line naming the output, never `tmp`
        text = one_line(exc)
        text = text.replace(str(tmp), str(output)).replace(tmp.name, output.name)
        raise ExportError(text if text.startswith(str(output)) else f"{output}: {text}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return parity


def default_output(checkpoint: Path, target: str) -> Path:
    """The main file of `target`'s profile beside `checkpoint`: best.pt -> best.onnx, best.mobile.onnx."""
    return checkpoint.with_name(checkpoint.stem + PROFILES[target].suffix)


def export_onnx(
    checkpoint: str | Path,
    output: str | Path | None = None,
    config: ExportConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> ExportReport:
    """Export `checkpoint` for `config.target` to `output` (default: `default_output`), verify it,
    quantise it when the profile or --int8 says so, and compare the files' pupil IoUs.

    `settings`: ExportConfig fields (opset, target, int8, calib_dir, ...) replacing `config`'s.
    Raises CheckpointError / DataError / ValueError for bad input, ExportError when verification
    fails; nothing is then written under the output name.
    """
    config = (config or ExportConfig()).replace(**settings)
    log, profile = log or (lambda _: None), PROFILES[config.target]
    checkpoint = Path(checkpoint)
    output = Path(output) if output is not None else default_output(checkpoint, config.target)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"output must end in .onnx, got {output}")
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state, checkpoint)
    card = ModelCard.from_checkpoint(state, checkpoint).completed(model)  # older files lack some fields
    calib_dir = frames_folder(config.calib_dir, card)
    frames, where = calibration_frames(calib_dir, config.calib_n, card.img_size)
    inputs = prepare_batch(frames, card.img_size, card.preprocess)  # (N, 1, H, W)
    static = f", static batch {profile.batch}" if profile.batch is not None else ""
    about = {"checkpoint": checkpoint.name, "exporter": f"{exporter_name(config.opset)}{static}"}
    h, w = card.img_size
    log(f"exporting {card.model_name} at {h}x{w} for --target {profile.target} (opset {config.opset})...")
    metadata = card.to_onnx_metadata(**about)
    parity = write_verified(model, inputs, output, profile=profile, opset=config.opset, metadata=metadata)
    files = {output: load_predictor(output)}
    fp32 = measure(files[output], output, inputs[:1])
    report = ExportReport(
        card.img_size,
        config.opset,
        where,
        parity,
        fp32,
        target=profile.target,
        batch=profile.batch,
        any_size=takes_any_size(profile, card.img_size),
    )
    if profile.writes_int8(config.int8):
        scheme, int8_path = profile.int8, output.with_name(output.stem + profile.int8_suffix)
        log(f"quantising to 8 bits, calibrated on {where}...")
        int8_card = dataclasses.replace(card, quantization=scheme.card(len(inputs)))
        quantize_int8(output, int8_path, inputs, metadata=int8_card.to_onnx_metadata(**about), scheme=scheme)
        files[int8_path] = load_predictor(int8_path)
        report.int8 = measure(files[int8_path], int8_path, inputs[:1])
    if report.int8 is not None or profile.batch is not None:  # a plain cpu export stays quick
        images, labels, report.validation = validation_set(calib_dir, config.val_n, card)
        log(f"pupil IoU on {report.validation}...")
        for figures in filter(None, (report.fp32, report.int8)):
            figures.pupil_iou = pupil_iou(files[figures.path], images, labels, batch_size=profile.batch or 8)
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
        help="the target's main ONNX file (default: the checkpoint's, .onnx or, for mobile, .mobile.onnx; "
        "for pretrained/ in the current folder)",
    )
    added = add_settings(parser, ExportConfig)
    args = parser.parse_args(argv)
    try:
        config = build(ExportConfig, given(args, added), added)
    except ValueError as exc:  # a setting out of its bounds, named by its flag
        parser.error(str(exc))
    output = args.output
    if output is None and args.checkpoint.resolve().parent == PRETRAINED_DIR:  # never over the shipped export
        output = Path(default_output(args.checkpoint, config.target).name)
    try:
        report = export_onnx(args.checkpoint, output, config, log=print)
    except (ValueError, OSError) as exc:  # CheckpointError, DataError, ExportError; unwritable output
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
