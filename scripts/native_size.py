"""Pupil IoU and CPU latency at each input size: a frame in its own shape at the model's scale
(--img-size auto), at its own pixels (native), or fitted into a fixed size, on labelled folders,
as the native-resolution table of docs/real-eyes.md reports it.

    python scripts/native_size.py MODEL.onnx ROOT [ROOT ...] [--sizes auto native 256x416]

ROOT is a dataset folder (its validation split is scored: `evaluate.evaluate`); MODEL an export
that takes any size (export_onnx.py's cpu profile) or a .pt checkpoint. Latency: the model alone
(onnxruntime or PyTorch), one frame, one thread, median of 20 runs after 3 of warm-up, at the input
size a frame of the folder's first image runs at.
"""

import argparse
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402

from config.flags import run_size_argument  # noqa: E402
from data import frames_for  # noqa: E402
from evaluate import evaluate  # noqa: E402
from inference import load_predictor  # noqa: E402


def latency_ms(model: Path, size, shape: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """The model's median time for one frame of `shape` run at `size` ("auto" or (H, W)), one thread."""
    predictor = load_predictor(model, threads=1).use_size(size)
    run = predictor.input_size(shape)
    batch = np.zeros((1, 1, *run), np.float32)
    times = timeit.repeat(lambda: predictor.logits(batch), repeat=23, number=1)[3:]
    return 1000 * float(np.median(times)), run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--sizes", type=run_size_argument, nargs="+", default=["auto", "native", (256, 416)])
    args = parser.parse_args()
    print("| frames | input | pupil IoU | within 5 px | median centre error | ms / frame, 1 thread |")
    print("|---|---|---:|---:|---:|---:|")
    for root in args.roots:
        shape = frames_for(root, "validation", n=1, seed=0, size=(256, 416)).read(0)[0].shape
        for size in args.sizes:
            plain = evaluate(args.model, root, "validation", img_size=size)["plain"]
            ms, run = latency_ms(args.model, size, shape)
            located = plain["located"]
            how = {"auto": "auto", "native": "native"}.get(size, "fitted") + f" ({run[0]}x{run[1]})"
            print(
                f"| {root.name} ({shape[1]}x{shape[0]}) | {how} | {plain['pupil_iou']:.4f} | "
                f"{located['share']:.1%} | {located['median_error_px']:.2f} px | {ms:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
