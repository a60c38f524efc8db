"""What `export_onnx.py` reports: ONNX Runtime's parity with PyTorch per batch size, each written
file's figures, and the summary it prints. Nothing is measured here; export_onnx fills these in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_ABS_DIFF, MIN_ARGMAX_AGREEMENT = 1e-4, 0.9999  # parity: logits; share of pixels, same argmax


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime against PyTorch on one batch; it passes within MAX_ABS_DIFF and MIN_ARGMAX_AGREEMENT."""

    batch: int
    max_abs_diff: float
    argmax_agreement: float  # share of pixels, 0..1

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.argmax_agreement >= MIN_ARGMAX_AGREEMENT

    def __str__(self) -> str:
        diff, agreement = self.max_abs_diff, 100 * self.argmax_agreement
        return f"batch {self.batch}: max |diff| {diff:.2e}, argmax agrees on {agreement:.4f}%"


@dataclass
class FileFigures:
    """One written ONNX file: sizes, speed and, with --int8, its pupil IoU."""

    path: Path
    size_kb: float
    weights_kb: float  # stored tensors: weights, constants, quantisation parameters
    latency_ms: float  # onnxruntime CPU, one frame, median
    pupil_iou: float | None = None  # on the validation frames (--int8 only)


@dataclass
class ExportReport:
    """One export: the fp32 file, its parity checks and, with --int8, the 8-bit file beside it."""

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
        if (int8 := self.int8) is not None:
            size, weights = int8.size_kb / fp32.size_kb, int8.weights_kb / fp32.weights_kb
            lines += [
                f"{int8.path}: {int8.size_kb:.1f} KB ({size:.2f}x fp32; weights {int8.weights_kb:.1f} KB, "
                f"{weights:.2f}x), latency {int8.latency_ms:.1f} ms",
                f"pupil IoU on {self.validation}: fp32 {fp32.pupil_iou:.4f}, int8 {int8.pupil_iou:.4f} "
                f"({100 * (int8.pupil_iou - fp32.pupil_iou):+.2f} points)",
            ]
        return "\n".join(lines)
