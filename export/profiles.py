"""What each `--target` of export_onnx.py writes, and the ONNX tools behind it: the 8-bit schemes,
the graph a mobile runtime partitions whole, and what onnxruntime's mobile checker makes of a file.

    cpu       <stem>.onnx, dynamic batch, height and width (the default; frames run at their own
              size, a multiple of 16 from 128 up); --int8 adds <stem>.int8.onnx (CPU_INT8)
    mobile    <stem>.mobile.onnx, static batch 1 at the checkpoint's size, one partition for NNAPI
              and CoreML ML Program (no int8: CoreML runs no QuantizeLinear / DequantizeLinear)
    tensorrt  <stem>.onnx, dynamic batch at the checkpoint's size (TensorRT's fp32 / fp16
              engines), and <stem>.trt.int8.onnx, symmetric signed QDQ (TENSORRT_INT8), which
              TensorRT builds int8 engines from

An `--output` names the profile's main file; the 8-bit file sits beside it. The checker is
onnxruntime.tools.check_onnx_model_mobile_usability's: basic graph optimisation, shape inference,
then each execution provider's list of supported operators (their caveats are not checked).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.tools.mobile_helpers import usability_checker
from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

from reports.export import Partitions

PARITY_BATCHES = (1, 3)  # onnxruntime against PyTorch, for a dynamic batch axis
MOBILE_EPS = ("NNAPI", "CoreML MLProgram")  # the mobile profile's gate: one partition each
COREML_OPS = {  # the checker's supported-operator lists
    "CoreML NeuralNetwork": "coreml_supported_neuralnetwork_ops.md",
    "CoreML MLProgram": "coreml_supported_mlprogram_ops.md",
}


@dataclass(frozen=True)
class QuantScheme:
    """Static 8-bit quantisation (onnxruntime, QDQ): weights per channel, activations per tensor,
    calibrated by min / max over the frames; only `op_types` are quantised, the rest stays float."""

    activations: QuantType
    weights: QuantType
    symmetric: bool  # zero points 0 (activations and weights)
    op_types: tuple[str, ...]
    depthwise: bool  # quantise depthwise convs too

    def card(self, frames: int) -> dict[str, object]:
        """How a file was quantised, for its model card."""
        kind = " symmetric" if self.symmetric else ""
        ops = ", ".join(self.op_types) + ("" if self.depthwise else " (not depthwise)")
        return {
            "format": "QDQ",
            "weights": f"{_NAMES[self.weights]}{kind} per-channel",
            "activations": f"{_NAMES[self.activations]}{kind}",
            "ops": ops,
            "frames": frames,
        }

    def options(self, graph: onnx.GraphProto) -> dict[str, object]:
        """quantize_static's keyword arguments for `graph` (the model it quantises)."""
        symmetric = {"ActivationSymmetric": True, "WeightSymmetric": True} if self.symmetric else {}
        return {
            "quant_format": QuantFormat.QDQ,
            "per_channel": True,
            "activation_type": self.activations,
            "weight_type": self.weights,
            "op_types_to_quantize": list(self.op_types),
            "nodes_to_exclude": [] if self.depthwise else depthwise_convs(graph),
            "extra_options": symmetric,
        }


_NAMES = {QuantType.QInt8: "int8", QuantType.QUInt8: "uint8"}
# --int8 on CPU: uint8 activations x int8 weights is VNNI's kernel. Quantising more (the depthwise
# convs, the matmuls, every op) measured no faster and took the IoU further from fp32's (docs/export.md)
CPU_INT8 = QuantScheme(QuantType.QUInt8, QuantType.QInt8, False, ("Conv",), depthwise=False)
# TensorRT: signed int8, zero points 0, on the inputs of the convs and matmuls it runs in int8
TENSORRT_INT8 = QuantScheme(QuantType.QInt8, QuantType.QInt8, True, ("Conv", "MatMul"), depthwise=True)


@dataclass(frozen=True)
class Profile:
    """One `--target`: the main file's batch axis and default name, and its 8-bit file, if any."""

    target: str
    batch: int | None  # a static batch size; None: a dynamic batch axis
    suffix: str  # of the default main file, after the checkpoint's stem
    parity_batches: tuple[int, ...]
    int8: QuantScheme | None = None
    int8_suffix: str = ""
    int8_always: bool = False  # written without --int8
    any_size: bool = False  # a dynamic height and width: frames run in their own shape

    def writes_int8(self, asked: bool) -> bool:
        return self.int8 is not None and (asked or self.int8_always)


PROFILES = {
    "cpu": Profile("cpu", None, ".onnx", PARITY_BATCHES, CPU_INT8, ".int8.onnx", any_size=True),
    "mobile": Profile("mobile", 1, ".mobile.onnx", (1,)),
    "tensorrt": Profile(
        "tensorrt", None, ".onnx", PARITY_BATCHES, TENSORRT_INT8, ".trt.int8.onnx", int8_always=True
    ),
}


def depthwise_convs(graph: onnx.GraphProto) -> list[str]:
    """Names of the Conv nodes with one input channel per group (and more than one group)."""
    shapes = {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}
    names = []
    for node in graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and groups > 1 and shapes.get(node.input[1], (0, 0))[1] == 1:
            names.append(node.name)
    return names


def name_omitted_inputs(graph: onnx.GraphProto) -> None:
    """Give Resize's omitted roi and scales an empty tensor, as torch's TorchScript exporter did: the
    mobile checker takes an unnamed input for one of dynamic shape, and its node for unsupported."""
    empty = onnx.numpy_helper.from_array(np.zeros(0, np.float32), "resize_unused")
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    if resizes:
        graph.initializer.append(empty)
    for node in resizes:
        node.input[:] = [name or empty.name for name in node.input]


class _FrameReader(CalibrationDataReader):
    """Feeds the quantiser one preprocessed (1, 1, H, W) frame at a time."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._feeds = iter([{"image": frame} for frame in inputs[:, None]])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def shorten_names(graph: onnx.GraphProto) -> None:
    """Rename internal tensors to short ids and drop node names (`image` and `logits` stay): quantisation
    wraps tensors in Q/DQ pairs named after their module paths, a third of a small 8-bit file."""
    keep, names = {value.name for value in (*graph.input, *graph.output)}, {}

    def short(name: str) -> str:
        return name if not name or name in keep else names.setdefault(name, f"t{len(names):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]


def quantized(fp32_path: Path, inputs: np.ndarray, scheme: QuantScheme) -> onnx.ModelProto:
    """The fp32 file quantised by `scheme`, calibrated on (N, 1, H, W) `inputs`, names shortened."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared, int8 = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # shape inference and graph optimisation first; onnxruntime's symbolic shape inference
        # cannot follow a height and width of any size (16 * height_16): ONNX's own then
        dims = onnx.load(fp32_path).graph.input[0].type.tensor_type.shape.dim[2:]
        any_size = any(dim.dim_param for dim in dims)
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=any_size)
        options = scheme.options(onnx.load(prepared).graph)
        quantize_static(prepared, int8, _FrameReader(inputs), **options)
        proto = onnx.load(int8)
    shorten_names(proto.graph)
    return proto


def partitions(path: Path) -> dict[str, Partitions]:
    """How NNAPI, CoreML NeuralNetwork and CoreML MLProgram would split the file, by the mobile
    checker, as it stands (a dynamic shape counts against a node)."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / path.name
        optimize_model(path, optimized, use_external_initializers=True)  # the checker's first step
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    found = {"NNAPI": usability_checker.check_nnapi_partitions(model, require_fixed_input_sizes=True)}
    for name, ops in COREML_OPS.items():
        found[name] = usability_checker.check_coreml_partitions(model, True, ops)
    return {name: _partitions(info) for name, info in found.items()}


def _partitions(info: usability_checker.PartitioningInfo) -> Partitions:
    return Partitions(
        info.num_partitions,
        info.num_supported_nodes,
        info.num_nodes,
        unsupported_ops=tuple(sorted(op.removeprefix("ai.onnx:") for op in info.unsupported_ops)),
        dynamic=info.nodes_unsupported_due_to_dynamic_input,
        high_rank=info.num_unsupported_nodes_due_to_rank,
    )
