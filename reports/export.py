"""What `export_onnx.py` reports: ONNX Runtime's parity with PyTorch per batch size, each written
file's figures (size, nodes, CPU latency, pupil IoU, how mobile execution providers would split it)
and the summary it prints. Nothing is measured here; export_onnx fills these in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAX_ABS_DIFF, MIN_ARGMAX_AGREEMENT = 1e-4, 0.9999  # parity: logits; share of pixels, same argmax


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against PyTorch on one batch; it passes within MAX_ABS_DIFF and MIN_ARGMAX_AGREEMENT."""

    batch: int
    max_abs_diff: float
    argmax_agreement: float  # share of pixels, 0..1
    size: tuple[int, int] | None = None  # (H, W) where it is not the export's own

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.argmax_agreement >= MIN_ARGMAX_AGREEMENT

    def __str__(self) -> str:
        diff, agreement = self.max_abs_diff, 100 * self.argmax_agreement
        at = f" at {self.size[0]}x{self.size[1]}" if self.size else ""
        return f"batch {self.batch}{at}: max |diff| {diff:.2e}, argmax agrees on {agreement:.4f}%"


@dataclass(frozen=True)
class Partitions:
    """How one execution provider would split a file, by onnxruntime's mobile usability checker."""

    count: int
    supported: int  # nodes the provider takes
    nodes: int  # in the graph the checker sees (after basic optimisation)
    unsupported_ops: tuple[str, ...] = ()
    dynamic: int = 0  # nodes refused for an input of dynamic shape
    high_rank: int = 0  # nodes refused for a tensor of rank above 5 (CoreML)

    @property
    def whole(self) -> bool:
        """The provider runs the whole graph as one partition."""
        return self.count == 1 and self.supported == self.nodes

    def why(self) -> str:
        """What keeps nodes off the provider."""
        reasons = [f"unsupported {', '.join(self.unsupported_ops)}"] if self.unsupported_ops else []
        reasons += [f"{self.dynamic} nodes with dynamic shapes"] if self.dynamic else []
        reasons += [f"{self.high_rank} nodes of rank > 5"] if self.high_rank else []
        return "; ".join(reasons) or "every node supported"

    def __str__(self) -> str:
        return f"{self.count} ({self.supported}/{self.nodes} nodes)"


@dataclass
class FileFigures:
    """One written ONNX file: sizes, nodes, speed, partitions and, when compared, its pupil IoU."""

    path: Path
    size_kb: float
    weights_kb: float  # stored tensors: weights, constants, quantisation parameters
    nodes: int
    latency_ms: float  # onnxruntime CPU, one frame, median
    pupil_iou: float | None = None  # on the validation frames
    partitions: dict[str, Partitions] = field(default_factory=dict)  # by execution provider

    def lines(self, fp32: FileFigures | None = None) -> list[str]:
        """Its summary lines; `fp32`: the file an 8-bit one is compared with."""
        sizes = f"{self.size_kb:.1f} KB (weights {self.weights_kb:.1f} KB)"
        if fp32 is not None:
            size, weights = self.size_kb / fp32.size_kb, self.weights_kb / fp32.weights_kb
            sizes = (
                f"{self.size_kb:.1f} KB ({size:.2f}x fp32; weights {self.weights_kb:.1f} KB, {weights:.2f}x)"
            )
        lines = [f"{self.path}: {sizes}, {self.nodes} nodes, CPU latency {self.latency_ms:.1f} ms"]
        if self.partitions:
            found = ", ".join(f"{name} {p}" for name, p in self.partitions.items())
            lines.append(f"  partitions: {found}")
        return lines


@dataclass
class ExportReport:
    """One export: the profile's fp32 file, its parity checks and, if written, the 8-bit file beside it."""

    img_size: tuple[int, int]
    opset: int
    frames: str  # where the parity and calibration frames came from
    parity: list[Parity]
    fp32: FileFigures
    int8: FileFigures | None = None
    validation: str = ""  # the frames of the IoU comparison
    target: str = "cpu"
    batch: int | None = None  # the files' static batch size; None: dynamic
    any_size: bool = False  # height and width dynamic too

    def summary(self) -> str:
        h, w = ("height", "width") if self.any_size else self.img_size
        batch = "batch" if self.batch is None else self.batch
        lines = [
            f"--target {self.target}: image ({batch}, 1, {h}, {w}) -> logits ({batch}, 2, {h}, {w}), "
            f"opset {self.opset}",
            f"parity with PyTorch on {self.frames}: " + "; ".join(map(str, self.parity)),
            *self.fp32.lines(),
        ]
        if self.int8 is not None:
            lines += self.int8.lines(self.fp32)
        lines.append("CPU latency: onnxruntime, 1 frame, median; partitions: onnxruntime's mobile checker")
        if self.fp32.pupil_iou is not None:
            iou = f"pupil IoU on {self.validation}: fp32 {self.fp32.pupil_iou:.4f}"
            if self.int8 is not None and self.int8.pupil_iou is not None:
                change = 100 * (self.int8.pupil_iou - self.fp32.pupil_iou)
                iou += f", int8 {self.int8.pupil_iou:.4f} ({change:+.2f} points)"
            lines.append(iou)
        return "\n".join(lines)
